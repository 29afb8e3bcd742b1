"""Bad input, interruptions and faults: one-line errors, non-zero exits, no lost work."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import ROOT, TINY_TRAIN, run_main as run
from models import Noise2Same
from utils.core.errors import CheckpointError
from utils.model_io.checkpoints import latest_checkpoint, read_checkpoint

def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


def assert_one_line_error(result, *fragments, status=2):
    """Exit status, exactly one 'error:' line containing the fragments, no traceback."""
    assert result.returncode == status, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and 'Traceback' not in result.stderr, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture
def bsd68_like(tmp_path):
    """A writable data folder in the BSD68 layout with small random images."""
    rng = np.random.default_rng(0)
    for sub in ('train', 'val', 'test'):
        (tmp_path / 'data' / sub).mkdir(parents=True)
    np.save(tmp_path / 'data/train/DCNN400_train_gaussian25.npy',
            rng.uniform(0, 255, (4, 40, 40)).astype(np.float32))
    np.save(tmp_path / 'data/val/DCNN400_validation_gaussian25.npy',
            rng.uniform(0, 255, (2, 40, 40)).astype(np.float32))
    return tmp_path / 'data'


def write_png(path, pixels):
    Image.fromarray(pixels).save(path)
    return path


# -- bad input --------------------------------------------------------------------------

def test_missing_data_folder(tmp_path):
    result = run(ROOT / 'test.py', '--dataset', 'bsd68', '--data-dir', tmp_path / 'nowhere',
                 '--model-dir', tmp_path)
    assert_one_line_error(result, 'bsd68_gaussian25.npy', 'download.py')
    assert not (tmp_path / 'nowhere').exists()


def test_training_data_of_the_wrong_rank(bsd68_like, tmp_path):
    np.save(bsd68_like / 'train/DCNN400_train_gaussian25.npy', np.zeros((4, 40, 40, 2), np.float32))
    result = run(ROOT / 'train.py', '--dataset', 'bsd68', '--data-dir', bsd68_like,
                 '--model-dir', tmp_path / 'm', '--steps', '1', '--filters', '4')
    assert_one_line_error(result, 'training image 0 has shape')
    assert not (tmp_path / 'm').exists()


def test_channel_count_that_does_not_match_the_model(tiny):
    model = Noise2Same(str(tiny), 'tiny')
    with pytest.raises(ValueError, match=r'got shape \(20, 20, 3\)'):
        model.predict(np.zeros((20, 20, 3)))


def test_nan_in_training_data_says_how_many(bsd68_like, tmp_path):
    data = np.load(bsd68_like / 'train/DCNN400_train_gaussian25.npy')
    data[2, :3, :2] = np.nan
    data[2, 5, 5] = np.inf
    np.save(bsd68_like / 'train/DCNN400_train_gaussian25.npy', data)
    result = run(ROOT / 'train.py', '--dataset', 'bsd68', '--data-dir', bsd68_like,
                 '--model-dir', tmp_path / 'm', '--steps', '1', '--filters', '4')
    assert_one_line_error(result, 'training image 2 holds 7 NaN or Inf values')


def test_nan_in_an_image_says_how_many(tiny, tmp_path):
    import tifffile
    pixels = np.ones((32, 32), np.float32)
    pixels[3, 4] = np.nan
    tifffile.imwrite(tmp_path / 'nan.tif', pixels)
    result = run(ROOT / 'test_single.py', tmp_path / 'nan.tif', '--model-dir', tiny,
                 '--name', 'tiny')
    assert_one_line_error(result, '1 NaN or Inf')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['nan.tif']


def test_constant_image_is_denoised_without_dividing_by_zero(tiny, tmp_path):
    """The float output, before any cast (uint8 would turn NaN into 0), is finite and about
    the constant, with and without refinement; the script's PNG is the constant too."""
    from utils.core.image_io import read_image
    from utils.prediction.photo import denoise
    from utils.prediction.predictor import PredictOptions
    src = write_png(tmp_path / 'flat.png', np.full((32, 32), 77, np.uint8))
    model = Noise2Same(str(tiny), 'tiny')
    for refine in (True, False):  # test_single.py's path: read, denoise, then cast
        _, denoised = denoise(model.restored_predictor(), read_image(str(src)),
                               PredictOptions(refine=refine))
        assert denoised.shape == (32, 32) and np.all(np.isfinite(denoised)), refine
        assert np.max(np.abs(denoised - 77.0)) < 1.0, (refine, denoised.min(), denoised.max())
    result = run(ROOT / 'test_single.py', src, '--model-dir', tiny, '--name', 'tiny')
    assert result.returncode == 0, result.stderr[-2000:]
    out = np.array(Image.open(tmp_path / 'flat_denoised.png'))
    assert out.shape == (32, 32) and np.all(out == 77), np.unique(out)


def test_image_smaller_than_eight_pixels(tiny, tmp_path):
    src = write_png(tmp_path / 'tiny.png', np.zeros((5, 30), np.uint8))
    result = run(ROOT / 'test_single.py', src, '--model-dir', tiny, '--name', 'tiny')
    assert_one_line_error(result, '5 pixels along spatial axis 0', 'at least 8')


def test_training_image_smaller_than_the_patch(bsd68_like, tmp_path):
    result = run(ROOT / 'train.py', '--dataset', 'bsd68', '--data-dir', bsd68_like,
                 '--model-dir', tmp_path / 'm', '--steps', '1', '--filters', '4',
                 '--patch-size', '48')
    assert_one_line_error(result, 'smaller than the patch', '--patch-size')


def test_unreadable_image_file(tiny, tmp_path):
    (tmp_path / 'notes.png').write_text('not an image')
    result = run(ROOT / 'test_single.py', tmp_path / 'notes.png', '--model-dir', tiny,
                 '--name', 'tiny')
    assert_one_line_error(result, 'cannot read', 'PNG, JPEG or TIFF')


def test_model_directory_without_checkpoint(tmp_path):
    (tmp_path / 'empty').mkdir()
    src = write_png(tmp_path / 'a.png', np.zeros((16, 16), np.uint8))
    result = run(ROOT / 'test_single.py', src, '--model-dir', tmp_path, '--name', 'empty')
    assert_one_line_error(result, 'no checkpoint in', 'python train.py --name empty')


def test_truncated_checkpoint(tiny, tmp_path):
    shutil.copytree(tiny / 'tiny', tmp_path / 'm' / 'broken')
    data = next((tmp_path / 'm' / 'broken').glob('ckpt-2.data-*'))
    data.write_bytes(data.read_bytes()[:1000])
    src = write_png(tmp_path / 'a.png', np.zeros((16, 16), np.uint8))
    result = run(ROOT / 'test_single.py', src, '--model-dir', tmp_path / 'm', '--name', 'broken')
    assert_one_line_error(result, 'cannot read checkpoint', 'truncated or corrupted')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.png', 'm']


def test_garbled_checkpoint_index_falls_back_to_the_newest_file(tiny, tmp_path):
    shutil.copytree(tiny / 'tiny', tmp_path / 'm')
    (tmp_path / 'm' / 'checkpoint').write_text('model_checkpoint_path: "ckpt-2" garbage {{{')
    assert latest_checkpoint(str(tmp_path / 'm')).endswith('ckpt-2')


def test_checkpoint_of_another_width(tiny):
    before = snapshot(tiny)
    result = run(ROOT / 'train.py', *TINY_TRAIN[:2], '--filters', '8', '--steps', '4',
                 '--model-dir', tiny, '--name', 'tiny')
    assert_one_line_error(result, 'first_output_filters=8', 'first_output_filters=4')
    assert snapshot(tiny) == before


def test_checkpoint_of_another_dim_or_channel_count(tiny):
    with pytest.raises(CheckpointError, match='dim=3 was given.*dim=2'):
        Noise2Same(str(tiny), 'tiny', dim=3)
    with pytest.raises(CheckpointError, match='in_channels=3 was given.*in_channels=1'):
        Noise2Same(str(tiny), 'tiny', in_channels=3)


def test_steps_at_or_below_the_saved_step(tiny):
    before = snapshot(tiny)
    result = run(ROOT / 'train.py', *TINY_TRAIN, '--steps', '2', '--model-dir', tiny,
                 '--name', 'tiny')
    assert result.returncode == 1 and 'nothing to do' in result.stdout
    assert 'already at step 2' in result.stdout
    assert snapshot(tiny) == before


@pytest.mark.parametrize('flag', ['--batch-size', '--patch-size', '--steps'])
def test_zero_or_negative_sizes(tmp_path, flag):
    for value in ('0', '-3'):
        result = run(ROOT / 'train.py', '--dataset', 'demo', flag, value, '--model-dir', tmp_path)
        assert result.returncode == 2 and 'must be a positive integer' in result.stderr
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match='batch_size must be a positive integer'):
        Noise2Same(str(tmp_path), 'm', net_config={'first_output_filters': 4}).train(
            np.zeros((2, 16, 16, 1), np.float32), [16, 16], batch_size=0)


@pytest.mark.parametrize('where', ['missing', 'read_only'])
def test_output_in_a_missing_or_read_only_folder(tiny, tmp_path, where):
    src = write_png(tmp_path / 'a.png', np.zeros((16, 16), np.uint8))
    target = tmp_path / 'nowhere' / 'out.png' if where == 'missing' else Path('/sys/out.png')
    result = run(ROOT / 'test_single.py', src, '--output', target, '--model-dir', tiny,
                 '--name', 'tiny')
    assert_one_line_error(result, 'cannot write')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.png']


# -- interruptions and faults ---------------------------------------------------------

def default_sigint():
    """Undo an inherited 'ignore SIGINT' (a shell starts background jobs so, e.g. a CI runner
    under `cmd &`), so the child sees Ctrl-C as a terminal user's process would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_interrupted_training_saves_a_checkpoint_and_exits_cleanly(tmp_path, sig):
    env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'}
    proc = subprocess.Popen([sys.executable, str(ROOT / 'train.py'), *TINY_TRAIN, '--steps',
                             '100000', '--save-steps', '100000', '--log-steps', '1',
                             '--model-dir', str(tmp_path), '--name', 'm'], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    deadline = time.time() + 180
    while time.time() < deadline and not list((tmp_path / 'm').glob('events.out.tfevents.*')):
        time.sleep(0.2)
    events = next((tmp_path / 'm').glob('events.out.tfevents.*'))
    empty = events.stat().st_size
    while time.time() < deadline and events.stat().st_size <= empty:
        time.sleep(0.2)  # grows once step 1 is logged (flushed by TensorBoard's writer)
    time.sleep(1)  # a few more steps
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert 'Traceback' not in err and 'interrupted at step' in err
    path = latest_checkpoint(str(tmp_path / 'm'))
    step = int(read_checkpoint(path)['global_step'])
    assert path.endswith(f'ckpt-{step}') and 0 < step < 100000


@pytest.mark.slow
def test_kill_9_loses_at_most_save_steps_and_the_rerun_ends_identically(tmp_path):
    args = [*TINY_TRAIN, '--steps', '12', '--save-steps', '3']
    env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'}
    proc = subprocess.Popen([sys.executable, str(ROOT / 'train.py'), *args, '--model-dir',
                             str(tmp_path), '--name', 'killed'], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / 'killed').glob('ckpt-3.index')):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run(ROOT / 'train.py', *args, '--model-dir', tmp_path, '--name', 'killed').returncode == 0
    assert run(ROOT / 'train.py', *args, '--model-dir', tmp_path, '--name', 'whole').returncode == 0
    killed = read_checkpoint(str(tmp_path / 'killed' / 'ckpt-12'))
    whole = read_checkpoint(str(tmp_path / 'whole' / 'ckpt-12'))
    assert set(killed) == set(whole)
    for name in whole:
        np.testing.assert_allclose(killed[name], whole[name], atol=1e-5, err_msg=name)


def test_a_failed_checkpoint_write_leaves_the_previous_one_usable(tmp_path, monkeypatch,
                                                                  noisy_images):
    model = Noise2Same(str(tmp_path), 'm', net_config={'first_output_filters': 4})
    model.train(noisy_images, [16, 16], batch_size=2, steps=2, save_steps=2, verbose=False, seed=1)
    real_write = tf.train.Checkpoint._write  # what CheckpointManager.save calls

    def disk_full(self, prefix, *args, **kwargs):
        Path(f'{prefix}.data-00000-of-00001').write_bytes(b'partial')
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(tf.train.Checkpoint, '_write', disk_full)
    with pytest.raises(CheckpointError, match=r'step 4 .*No space left.*ckpt-2 is intact'):
        model.train(noisy_images, [16, 16], batch_size=2, steps=4, save_steps=2, verbose=False)
    monkeypatch.setattr(tf.train.Checkpoint, '_write', real_write)
    assert latest_checkpoint(str(tmp_path / 'm')).endswith('ckpt-2')
    assert not list((tmp_path / 'm').glob('ckpt-4*'))
    again = Noise2Same(str(tmp_path), 'm')
    assert again.predict(np.random.default_rng(0).normal(size=(16, 16))).shape == (16, 16)


def test_an_interrupted_write_leaves_no_partial_output(tmp_path, monkeypatch):
    from PIL import Image as PILImage
    from utils.core import image_io

    def cut_off(path):  # a writer interrupted half-way through its file
        Path(path).write_bytes(b'partial')
        raise KeyboardInterrupt

    monkeypatch.setattr(PILImage.Image, 'save', lambda self, fp, **params: cut_off(fp))  # JPEG
    monkeypatch.setattr(image_io, '_write_png', lambda path, pixels: cut_off(path))  # PNG
    for name in ('out.png', 'out.jpg'):
        with pytest.raises(KeyboardInterrupt):
            image_io.write_image_atomic(str(tmp_path / name), np.zeros((8, 8), np.uint8))
        assert list(tmp_path.iterdir()) == []
    from utils.core.files import write_csv_atomic
    monkeypatch.setattr('csv.DictWriter.writerows', lambda self, rows: (_ for _ in ()).throw(
        KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        write_csv_atomic(str(tmp_path / 'scores.csv'), [{'image': 'a', 'psnr': 1.0}])
    assert list(tmp_path.iterdir()) == []


def test_a_signal_during_a_step_waits_for_the_end_of_the_step():
    """The cause of the rare segmentation fault on SIGTERM: a KeyboardInterrupt raised by the
    handler inside TensorFlow's Python code that its C++ called back. The loop defers the
    handlers to the end of a step; a second signal runs its handler at once."""
    from utils.training.interrupts import deferred_signals
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with deferred_signals() as stop_if_asked:
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))  # Python runs pending handlers between bytecodes
            assert seen == []  # deferred, not run inside the 'step'
            stop_if_asked()
            assert seen == [signal.SIGTERM]
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # a user who insists: runs at once
            sum(range(1000))
            assert seen == [signal.SIGTERM] * 2
        assert seen == [signal.SIGTERM] * 3  # the one still waiting ran on leaving the block
        assert signal.getsignal(signal.SIGTERM) is not None and seen
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(1000))
        assert seen == [signal.SIGTERM] * 4  # the handler is back in place
    finally:
        signal.signal(signal.SIGTERM, previous)
