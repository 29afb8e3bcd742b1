"""The machine and optional packages: extras imported with a one-line error, the CPU label of
measured figures."""
import os


def import_extra(module: str, purpose: str, requirements: str = 'requirements-extra.txt'):
    """Import a package of an extra requirements file, or fail with one line saying how to get
    it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        make = " (or 'make extras')" if requirements == 'requirements-extra.txt' else ''
        raise OSError(f"{purpose} needs the package {module}, an extra: install it with 'pip "
                      f"install -r {requirements}'{make}") from None


def machine_label() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else `platform`) and core count, for labelling
    measured figures."""
    import platform
    name = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            name = next(line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return f'{name}, {os.cpu_count()} cores'
