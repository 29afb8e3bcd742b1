"""Set-up: declared requirements, extras, a second `make demo`, and docstring references."""
import ast
import importlib
import re
import shutil
import subprocess

import pytest

from conftest import ROOT


def requirement_lines(name):
    lines = (ROOT / name).read_text().splitlines()
    return [line.split('#')[0].strip() for line in lines if line.split('#')[0].strip()]


def test_keras_is_bounded_and_the_benchmark_packages_are_an_extra():
    main = requirement_lines('requirements.txt')
    keras = [line for line in main if re.match(r'keras\b', line)]
    assert keras and re.search(r'>=\s*3\.(1\d|[2-9]\d)', keras[0])  # synchronization=: 3.10+
    assert not any(re.match(r'(bm3d|gdown)\b', line) for line in main)
    extra = requirement_lines('requirements-extra.txt')
    assert any(line.startswith('bm3d') for line in extra)
    assert any(line.startswith('gdown') for line in extra)
    assert '-r requirements-extra.txt' in requirement_lines('requirements-test.txt')


def test_a_missing_extra_is_one_line_saying_how_to_install_it():
    from utils.core.environment import import_extra
    with pytest.raises(OSError, match=r"pip install -r requirements-extra.txt"):
        import_extra('surely_not_installed_package', 'the BM3D baseline')


def make_demo(folder):
    """`make demo` in a copy of the Makefile whose commands only print themselves."""
    (folder / '.venv').mkdir(exist_ok=True)
    shutil.copy(ROOT / 'Makefile', folder / 'Makefile')
    (folder / 'requirements.txt').write_text('')
    (folder / '.venv' / '.installed').write_text('')
    return subprocess.run(['make', 'demo', 'PY=echo'], cwd=folder, capture_output=True,
                          text=True, timeout=60)


def test_a_second_make_demo_says_the_models_exist_and_succeeds(tmp_path):
    ran = lambda result: [line.split()[0] for line in result.stdout.splitlines() if line]
    first = make_demo(tmp_path)  # make shows each command, then echo prints what would run
    assert first.returncode == 0 and {'train.py', 'train_pro.py'} <= set(ran(first))
    for name in ('demo-N2S', 'demo-N2SP'):  # what the first run leaves when complete
        (tmp_path / 'trained_models' / name).mkdir(parents=True)
        (tmp_path / 'trained_models' / name / 'ckpt-600.index').write_text('')
    second = make_demo(tmp_path)
    assert second.returncode == 0
    assert 'make clean-demo' in second.stdout and 'report.py' in ran(second)
    assert not {'train.py', 'train_pro.py'} & set(ran(second))


def dotted_references():
    """(file, `module.attribute`) for every backticked dotted name in a docstring of the
    repository's modules whose first part is one of them."""
    modules = {p.stem for p in ROOT.glob('*.py')} | {'utils', 'benchmarks', 'n2s_app'}
    packages = [ROOT / 'utils', ROOT / 'n2s_app']
    for path in list(ROOT.glob('*.py')) + [p for d in packages for p in d.rglob('*.py')]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)):
                doc = ast.get_docstring(node) or ''
                for name in re.findall(r'`([A-Za-z_][\w.]*\.[A-Za-z_]\w*)`', doc):
                    if name.split('.')[0] in modules and not name.endswith('.py'):
                        yield path.name, name


def resolves(name):
    parts = name.split('.')
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_docstrings_cite_only_names_that_exist():
    references = list(dotted_references())
    assert len(references) >= 5  # the scan finds the references there are
    missing = [(f, n) for f, n in references if not resolves(n)]
    assert not missing


def test_a_missing_model_names_the_command_that_trains_it(tmp_path):
    import numpy as np
    import test_single
    from PIL import Image
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / 'in.png')
    with pytest.raises(ValueError, match=r"python train.py --name mine"):
        test_single.main([str(tmp_path / 'in.png'), '--model-dir',
                          str(tmp_path), '--name', 'mine', '--output', str(tmp_path / 'o.png'),
                          '--figure', str(tmp_path / 'f.png')])
