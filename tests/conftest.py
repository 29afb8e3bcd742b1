"""Shared fixtures and helpers: the repository on sys.path, quiet TensorFlow, the TF1 reference
artifacts, the demo data set built once, one tiny trained model for the session, and `run_main`
(a script run in this process)."""
import io
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.core.tf_setup import import_tensorflow, use_onednn  # noqa: E402

use_onednn(True)  # as the training scripts (the suite trains)
import_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

REFERENCE = Path(os.environ.get('N2S_REFERENCE', ROOT.parent / 'shared' / 'reference'))
REFERENCE_DIRS = sorted(p for p in (REFERENCE / 'tf1').glob('*') if (p / 'model').is_dir()) \
    if (REFERENCE / 'tf1').is_dir() else []


def pytest_configure(config):
    """Build the offline demo data set in Denoising_data/ (the scripts' default data folder,
    which many tests use) once, before any test runs; under pytest-xdist the workers take
    turns, so none reads it while another writes it."""
    import fcntl

    from utils.data.datasets import DATASETS
    folder = ROOT / 'Denoising_data'
    folder.mkdir(exist_ok=True)
    with open(folder / '.demo-build.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        DATASETS['demo'].training_data(str(folder))  # builds it when missing


def require_reference():
    """Skip (or fail, when N2S_REQUIRE_REFERENCE=1 as in CI) without the reference artifacts."""
    if not REFERENCE_DIRS:
        message = f"TF1 reference artifacts not found under {REFERENCE}"
        if os.environ.get('N2S_REQUIRE_REFERENCE') == '1':
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture
def noisy_images():
    """Ten 40x40 single-channel training images: smooth structure plus noise, normalised."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:40, :40] / 40.0
    images = [np.sin(6 * yy + k) * np.cos(4 * xx - k) + 0.3 * rng.normal(size=(40, 40))
              for k in range(10)]
    images = np.stack([(im - im.mean()) / im.std() for im in images])
    return images[..., None].astype(np.float32)


def run_main(script, *args) -> subprocess.CompletedProcess:
    """`python SCRIPT ARGS` (or `python -m MODULE ARGS`) in this process: the script's
    main(argv) through n2s_app.cli.run (one-line errors, exit statuses), in the repository's
    folder, stdout and stderr captured. For tests of arguments,
    errors and outputs; tests of signals, of what a fresh process prints or imports, and of
    fresh-process export run the script in a subprocess instead."""
    import importlib
    import signal
    from contextlib import redirect_stderr, redirect_stdout

    from n2s_app import cli
    path = Path(script)  # a script's path, or a module as `python -m` takes it
    module = importlib.import_module(
        '.'.join(path.resolve().relative_to(ROOT).with_suffix('').parts)
        if path.suffix == '.py' else str(script))
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    handler, cwd = signal.getsignal(signal.SIGTERM), os.getcwd()
    code = 0
    try:
        os.chdir(ROOT)  # as the subprocesses ran: relative defaults such as trained_models/
        with redirect_stdout(out), redirect_stderr(err):
            cli.run(lambda _: module.main(argv))
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        signal.signal(signal.SIGTERM, handler)
        os.chdir(cwd)
    return subprocess.CompletedProcess([str(script), *argv], code, out.getvalue(),
                                       err.getvalue())


TINY_TRAIN = ['--dataset', 'demo', '--filters', '4', '--batch-size', '2', '--patch-size', '16',
              '--log-steps', '1']


@pytest.fixture(scope='session')
def tiny(tmp_path_factory) -> Path:
    """A model folder holding 'tiny': width 4, 2 steps of train.py on the demo set, trained once
    for the session. Tests read it; one that trains further copies it first."""
    base = tmp_path_factory.mktemp('models')
    result = run_main(ROOT / 'train.py', *TINY_TRAIN, '--steps', '2', '--model-dir', base,
                      '--name', 'tiny')
    assert result.returncode == 0, result.stderr[-3000:]
    return base
