"""The napari plugin's tests (tests/napari_widgets.py) in a fresh process: with Qt, OpenGL and
napari loaded, a later TensorFlow SavedModel call in the same process (test_bioimageio.py's
bioimage.io check, on the same xdist worker) crashed with a segmentation fault, so the widgets
are tested apart from the rest (and that process skips the interpreter's teardown, where the
two libraries abort: tests/exit_at_once.py). The plugin is also found as installed (its entry
point)."""
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator

import pytest

from conftest import ROOT


@contextmanager
def x_display() -> Iterator[str]:
    """An X display for napari's OpenGL canvas (Qt's offscreen platform draws through it): the
    current one, else a virtual screen of Debian's Xvfb (.ci/run installs it) for the block."""
    if os.environ.get('DISPLAY'):
        yield os.environ['DISPLAY']
        return
    if not shutil.which('Xvfb'):
        if os.environ.get('N2S_REQUIRE_EXTRAS') == '1':
            raise RuntimeError('the napari tests need Xvfb: apt-get install xvfb')
        pytest.skip('no display and no Xvfb (apt-get install xvfb)')
    read, write = os.pipe()
    server = subprocess.Popen(['Xvfb', '-displayfd', str(write), '-screen', '0', '1024x768x24',
                               '-nolisten', 'tcp'], pass_fds=(write,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            yield ':' + pipe.readline().strip()
    finally:
        server.terminate()
        server.wait(10)


def test_napari_widgets_in_their_own_process():
    if os.environ.get('N2S_REQUIRE_EXTRAS') != '1':
        pytest.importorskip('napari')
        pytest.importorskip('pytestqt')
    with x_display() as display:
        run = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                              '-p', 'no:xdist', '-p', 'exit_at_once',
                              str(ROOT / 'tests' / 'napari_widgets.py')],
                             cwd=ROOT, capture_output=True, text=True, timeout=1200,
                             env={**os.environ, 'DISPLAY': display,
                                  'QT_QPA_PLATFORM': 'offscreen',
                                  'PYTHONPATH': os.pathsep.join(
                                      [str(ROOT / 'tests'), os.environ.get('PYTHONPATH', '')])})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert ' passed' in run.stdout and 'skipped' not in run.stdout.splitlines()[-1]


def test_the_installed_plugin_is_found_by_napari():
    """`pip install -e .` (make test does it) registers the manifest under napari.manifest."""
    if os.environ.get('N2S_REQUIRE_EXTRAS') != '1':
        pytest.importorskip('npe2')
    from importlib.metadata import entry_points
    found = [e for e in entry_points(group='napari.manifest') if e.name == 'noise2same-tf2']
    assert found, "not installed: pip install -e '.[napari]'"
    import npe2
    manager = npe2.PluginManager()
    manager.discover()
    assert 'noise2same-tf2' in manager._manifests
    widgets = {w.display_name for w in manager.get_manifest('noise2same-tf2')
               .contributions.widgets}
    assert widgets == {'Denoise', 'Train'}


SCRIPT = """
import sys
import numpy as np
import napari
from qtpy.QtWidgets import QApplication
from n2s_napari.widgets import DenoiseWidget
viewer = napari.Viewer(show=False)  # its OpenGL canvas exists before any TensorFlow
rng = np.random.default_rng(0)
yy, xx = np.mgrid[:64, :80]
clean = 120 + 60 * np.sin(yy / 7.0) * np.cos(xx / 11.0)
viewer.add_image((clean + rng.normal(0, 20, clean.shape)).astype(np.float32), name='noisy')
widget = DenoiseWidget(viewer)
widget.denoise()
import time
deadline = time.time() + 300
while len(viewer.layers) < 2 and time.time() < deadline:
    QApplication.processEvents()
    time.sleep(0.05)
out = viewer.layers[-1].data
error = np.sqrt(np.mean((out - clean) ** 2))
print('layers', len(viewer.layers), 'rmse', round(float(error), 2),
      'tensorflow', 'tensorflow' in sys.modules, flush=True)
import os
os._exit(0)  # Qt's teardown beside the worker thread's libraries is not what is tested
"""


def test_denoising_in_napari_never_imports_tensorflow():
    """The real order in napari: the viewer (and its OpenGL canvas) first, then Denoise. The
    job runs in a process of its own, so napari's process never imports TensorFlow (which,
    imported after the canvas, crashed it) and the denoised layer arrives."""
    if os.environ.get('N2S_REQUIRE_EXTRAS') != '1':
        pytest.importorskip('napari')
    with x_display() as display:
        run = subprocess.run([sys.executable, '-c', SCRIPT], cwd=ROOT, capture_output=True,
                             text=True, timeout=600,
                             env={**os.environ, 'DISPLAY': display,
                                  'QT_QPA_PLATFORM': 'offscreen'})
    line = [s for s in run.stdout.splitlines() if s.startswith('layers')]
    assert run.returncode == 0 and line, run.stdout[-2000:] + run.stderr[-2000:]
    _, layers, _, rmse, _, imported = line[0].split()
    assert layers == '2' and float(rmse) < 12 and imported == 'False', line[0]


def test_jobs_run_in_their_own_process_with_progress_errors_and_cancel():
    """n2s_napari/jobs.py's plumbing with its probe job (no napari needed): the result and the
    progress come back, an error keeps its kind and one line, Cancel ends the job."""
    import time

    from n2s_napari import jobs
    seen = []
    assert jobs.run('probe', {'seconds': 0.3}, lambda *p: seen.append(p), lambda: False) == 'done'
    assert seen[-1] == (6, 6) and len(seen) == 6
    with pytest.raises(ValueError, match='^a bad setting$'):
        jobs.run('probe', {'fail': 'a bad setting'}, lambda *p: None, lambda: False)
    start = time.monotonic()
    with pytest.raises(jobs.JobCancelled):
        jobs.run('probe', {'seconds': 60}, lambda *p: None, lambda: True)
    assert time.monotonic() - start < 30


@pytest.mark.slow
def test_a_wheel_builds_with_the_plugin_and_the_commands(tmp_path):
    """`pip wheel . --no-deps` (setuptools from the package index, in pip's build isolation)
    holds the modules of the original layout, the plugin's manifest, the licence and the
    console commands."""
    import zipfile
    run = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
                          '--wheel-dir', str(tmp_path), str(ROOT)], capture_output=True,
                         text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    wheel, = tmp_path.glob('noise2same_tf2-*.whl')
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ('models.py', 'train.py', 'test_single.py', 'n2s_commands.py',
                   'n2s_napari/napari.yaml', 'n2s_napari/widgets.py', 'utils/prediction/stack.py',
                   'n2s_app/cli.py'):
        assert needed in names, needed
    info = next(n for n in names if n.endswith('.dist-info/entry_points.txt'))
    entry_points = zipfile.ZipFile(wheel).read(info).decode()
    assert 'noise2same-tf2 = n2s_napari:napari.yaml' in entry_points
    assert 'n2s-denoise = n2s_commands:test_single' in entry_points
    assert any(n.endswith('LICENSE') for n in names)
