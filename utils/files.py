"""Writing files atomically: through a temporary file in the target's folder and a rename, so
a reader never sees a partial file and an interrupted write leaves the old file (or none)."""
import os
import tempfile
from contextlib import contextmanager
from typing import Iterator


def check_writable(path: str) -> None:
    """Raise OSError unless a file can be created beside `path` (probes with a temporary file:
    permission bits alone do not tell, e.g. for root or read-only mounts)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OSError(f"cannot write {path}: folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix='.probe-', dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        raise OSError(f"cannot write {path}: folder {folder} is not writable "
                      f"({error.strerror}); choose another output path") from None


def plain_file_mode() -> int:
    """The mode open() gives a new file: 0o666 without the process's umask bits."""
    return 0o666 & ~_umask()


def plain_folder_mode() -> int:
    """The mode os.mkdir gives a new folder (tempfile.mkdtemp's is 0o700): 0o777 less umask."""
    return 0o777 & ~_umask()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextmanager
def atomic_write(path: str) -> Iterator[str]:
    """Yield a temporary path beside `path` (same suffix) to write to; on success it becomes
    `path` with the mode a plain write would give; on an exception it is removed."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OSError(f"cannot write {path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.tmp-',
                               suffix=os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, plain_file_mode())  # mkstemp makes it 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
