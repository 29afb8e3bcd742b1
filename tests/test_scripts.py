"""The scripts as a user runs them: --help, one-line errors, test_single's outputs."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, run_main as run
from utils.prediction.predictor import PredictOptions

SCRIPTS = ['train.py', 'train_pro.py', 'test.py', 'test_pro.py', 'test_single.py', 'report.py', 'demo.py',
           'download.py', 'export.py']


def run_process(*args, cwd=ROOT):
    """The script in a fresh Python process (for what only a new process shows)."""
    env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3', 'N2S_DEBUG': '0'}
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=300)


def error_lines(result):
    """stderr without TensorFlow's start-up chatter."""
    return [line for line in result.stderr.splitlines() if line.startswith('error:')
            or 'Traceback' in line]


@pytest.mark.parametrize('script', SCRIPTS)
def test_every_script_has_help(script):
    result = run_process(ROOT / script, '--help')
    assert result.returncode == 0 and 'usage:' in result.stdout


def test_missing_data_is_one_line_naming_the_file_and_the_command(tmp_path):
    result = run(ROOT / 'train.py', '--dataset', 'bsd68', '--data-dir', tmp_path,
                 '--model-dir', tmp_path)
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and 'Traceback' not in result.stderr
    assert 'DCNN400_train_gaussian25.npy' in lines[0]
    assert 'python download.py --dataset bsd68' in lines[0]
    assert not any(tmp_path.iterdir())  # nothing written


def test_testing_without_a_model_says_how_to_train_one(tmp_path):
    result = run(ROOT / 'test_pro.py', '--dataset', 'demo', '--model-dir', tmp_path)
    assert result.returncode == 2
    assert 'python train_pro.py' in error_lines(result)[0]



def test_noise_sigma_sets_lmbd_from_the_training_images(tmp_path):
    import json
    from utils.data.datasets import DATASETS
    data, models = tmp_path / 'data', tmp_path / 'models'
    stds = np.std(DATASETS['demo'].raw_training_images(str(data)), axis=(1, 2))
    result = run(ROOT / 'train.py', '--dataset', 'demo', '--data-dir', data, '--model-dir', models,
                 '--name', 'm', '--noise-sigma', 25, '--filters', 2, '--batch-size', 2,
                 '--patch-size', 16, '--steps', 1)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = 2 * np.sqrt(np.mean((25 / stds) ** 2))
    saved = json.loads((models / 'm' / 'settings.json').read_text())['lmbd']
    assert saved == pytest.approx(expected, rel=1e-9) and 1.0 < saved < 1.5
    both = run(ROOT / 'train.py', '--lmbd', 1, '--noise-sigma', 25, '--model-dir', models)
    assert both.returncode == 2 and 'not allowed with argument' in both.stderr

@pytest.mark.parametrize('mode,dtype', [('L', np.uint8), ('RGB', np.uint8), ('RGBA', np.uint8),
                                        ('P', np.uint8), ('I;16', np.uint16)])
def test_single_image_outputs_keep_dtype_and_never_touch_the_input(tmp_path, tiny,
                                                                   mode, dtype):
    rng = np.random.default_rng(1)
    if mode == 'I;16':
        pixels = rng.integers(0, 65535, (40, 30)).astype(np.uint16)
        image = Image.fromarray(pixels)
    else:
        pixels = rng.integers(0, 255, (40, 30, 4)).astype(np.uint8)
        image = Image.fromarray(pixels[..., :3]).convert(mode) if mode != 'RGBA' else \
            Image.fromarray(pixels)
    src = tmp_path / 'in.png'
    image.save(src)
    before = src.read_bytes()
    result = run(ROOT / 'test_single.py', src, '--model-dir', tiny, '--name', 'tiny')
    assert result.returncode == 0, result.stderr[-2000:]
    assert src.read_bytes() == before
    out = np.array(Image.open(tmp_path / 'in_denoised.png'))
    assert out.dtype == dtype and out.shape[:2] == (40, 30)
    if mode in ('RGB', 'RGBA', 'P'):  # a grey model keeps colour (and alpha)
        assert out.ndim == 3 and out.shape[-1] == (4 if mode == 'RGBA' else 3)
    if mode == 'RGBA':
        np.testing.assert_array_equal(out[..., -1], pixels[..., 3])
    assert (tmp_path / 'in_figure.png').stat().st_size > 0


def test_single_image_clips_instead_of_wrapping(tmp_path, tiny):
    # Bright and dark halves: a model's overshoot must saturate at 0 and 255, not wrap.
    pixels = np.zeros((32, 32), np.uint8)
    pixels[:, 16:] = 255
    src = tmp_path / 'edge.png'
    Image.fromarray(pixels).save(src)
    from models import Noise2Same
    raw = Noise2Same(str(tiny), 'tiny').predict(pixels.astype(np.float32))
    result = run(ROOT / 'test_single.py', src, '--model-dir', tiny, '--name', 'tiny',
                 '--no-refine')
    assert result.returncode == 0, result.stderr[-2000:]
    out = np.array(Image.open(tmp_path / 'edge_denoised.png'))
    np.testing.assert_array_equal(out, np.clip(np.round(raw), 0, 255).astype(np.uint8))


def test_single_image_refuses_to_overwrite_its_input(tmp_path, tiny):
    src = tmp_path / 'a.png'
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(src)
    before = src.read_bytes()
    result = run(ROOT / 'test_single.py', src, '--output', src, '--model-dir', tiny,
                 '--name', 'tiny')
    assert result.returncode == 2 and 'is the input image' in error_lines(result)[0]
    assert src.read_bytes() == before


def test_demo_set_is_built_offline_and_deterministically(tmp_path):
    from utils.data.datasets import build_demo
    build_demo(str(tmp_path / 'a'))
    build_demo(str(tmp_path / 'b'))
    for rel in ['train/DCNN400_train_gaussian25.npy', 'val/DCNN400_validation_gaussian25.npy']:
        a, b = np.load(tmp_path / 'a' / rel), np.load(tmp_path / 'b' / rel)
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.float32 and a.shape[1:] == (180, 180)
    noisy = np.load(tmp_path / 'a' / 'test/bsd68_gaussian25.npy', allow_pickle=True)
    clean = np.load(tmp_path / 'a' / 'test/bsd68_groundtruth.npy', allow_pickle=True)
    residual = np.concatenate([(n - c).ravel() for n, c in zip(noisy, clean)])
    assert residual.std() == pytest.approx(25, rel=0.02)  # unclipped Gaussian sigma 25


def test_single_large_image_is_tiled_and_matches_whole_image_prediction(tmp_path, tiny):
    from models import Noise2Same
    pixels = np.random.default_rng(5).integers(0, 255, (1030, 1030)).astype(np.uint8)  # > 1 MP
    src = tmp_path / 'large.png'
    Image.fromarray(pixels).save(src)
    result = run(ROOT / 'test_single.py', src, '--model-dir', tiny, '--name', 'tiny',
                 '--tile-size', '512', '--margin', '32', '--no-refine')
    assert result.returncode == 0, result.stderr[-2000:]
    out = np.array(Image.open(tmp_path / 'large_denoised.png'))
    assert out.shape == pixels.shape
    # tiles on the network's grid of the whole padded image: the whole-image prediction
    whole = Noise2Same(str(tiny), 'tiny').predict(pixels.astype(np.float64))
    expected = np.clip(np.round(whole), 0, 255).astype(np.uint8)
    assert np.mean(out == expected) > 0.99  # rounding of float ties aside


def test_single_with_defaults_uses_the_shipped_model_and_denoises(tmp_path):
    """`python test_single.py photo.png` right after install: the shipped demo32-N2S model."""
    from skimage import data
    from utils.evaluation.metrics import PSNR
    clean = data.camera()[256:384, 128:320].astype(np.float64)
    noisy = np.clip(np.round(clean + np.random.default_rng(7).normal(0, 25, clean.shape)), 0, 255)
    src = tmp_path / 'photo.png'
    Image.fromarray(noisy.astype(np.uint8)).save(src)
    result = run(ROOT / 'test_single.py', src)
    assert result.returncode == 0, result.stderr[-2000:]
    denoised = np.array(Image.open(tmp_path / 'photo_denoised.png')).astype(np.float64)
    assert (tmp_path / 'photo_figure.png').exists()
    assert PSNR(clean, denoised) > PSNR(clean, noisy) + 3  # a trained denoiser, not a copy


def test_single_refines_by_default_and_keeps_a_colour_photo_in_colour(tmp_path):
    """The default: the shipped model's output refined (utils/prediction/refine.py), in colour; at low
    noise the result beats the noisy input, which the bare network does not."""
    from skimage import data
    from utils.evaluation.metrics import PSNR
    clean = data.astronaut()[100:228, 150:310].astype(np.float64)
    noisy = np.clip(np.round(clean + np.random.default_rng(8).normal(0, 5, clean.shape)), 0, 255)
    src = tmp_path / 'colour.png'
    Image.fromarray(noisy.astype(np.uint8)).save(src)
    result = run(ROOT / 'test_single.py', src, '--colour', 'channels')
    assert result.returncode == 0, result.stderr[-2000:]
    refined = np.array(Image.open(tmp_path / 'colour_denoised.png')).astype(np.float64)
    assert refined.shape == clean.shape  # colour in, colour out
    # one line per image: each channel's noise model, the refinement chosen, its estimated gain
    line = next(l for l in result.stdout.splitlines() if l.startswith('colour.png: '))
    assert line.count('noise Gaussian') + line.count('noise Poisson-Gaussian') == 3, line
    assert 'refinement: ' in line
    assert np.abs(refined[..., 0] - refined[..., 2]).mean() > 5  # not grey
    from models import load_model
    from n2s_app.cli import DEFAULT_MODEL
    model = load_model(str(ROOT / 'trained_models'), DEFAULT_MODEL)
    plain = [model.predict(noisy[..., c]) for c in range(3)]
    bare = np.clip(np.round(np.stack(plain, -1)), 0, 255)  # what --no-refine writes
    want = np.stack([model.restored_predictor().refine(noisy[..., c], plain[c])[0]
                     for c in range(3)], -1)
    assert np.mean(np.abs(refined - np.clip(np.round(want), 0, 255)) <= 1) > 0.99
    assert PSNR(clean, refined) > PSNR(clean, noisy) > PSNR(clean, bare)


def test_single_denoises_a_very_noisy_image_with_the_model_trained_on_photon_noise(tmp_path):
    """Without --name an image at a few photons a pixel goes to cli.NOISY_MODEL (said in one
    line; its output is that model's, refined), one at low Gaussian noise to the default;
    --name keeps the model asked for."""
    from skimage import data

    from models import load_model
    from n2s_app import cli
    from utils.data.bsd68_build import poisson_gaussian
    clean = data.camera()[256:384, 128:320].astype(np.float64)
    dim = poisson_gaussian(clean, 3.0, 0.0, np.random.default_rng(4))  # peak 3 photons
    light = clean + np.random.default_rng(5).normal(0, 5, clean.shape)
    for name, pixels in (('dim.tif', dim), ('light.tif', light)):
        Image.fromarray(pixels.astype(np.float32)).save(tmp_path / name)
    result = run(ROOT / 'test_single.py', tmp_path / 'dim.tif', tmp_path / 'light.tif',
                 '--output-dir', tmp_path / 'out')
    assert result.returncode == 0, result.stderr[-2000:]
    said = [l for l in result.stdout.splitlines() if f'denoised with {cli.NOISY_MODEL}' in l]
    assert len(said) == 1 and said[0].startswith('dim.tif: '), result.stdout
    shipped = str(ROOT / 'trained_models')
    for name, pixels, model in (('dim', dim, cli.NOISY_MODEL), ('light', light, cli.DEFAULT_MODEL)):
        got = np.array(Image.open(tmp_path / 'out' / f'{name}_denoised.tif'))
        want = load_model(shipped, model).predict(pixels.astype(np.float32), refine=True)
        np.testing.assert_allclose(got, want, atol=1e-3)
    kept = run(ROOT / 'test_single.py', tmp_path / 'dim.tif', '--name', cli.DEFAULT_MODEL,
               '--output', tmp_path / 'kept.tif')
    assert kept.returncode == 0 and 'denoised with' not in kept.stdout, kept.stdout
    want = load_model(shipped, cli.DEFAULT_MODEL).predict(dim.astype(np.float32), refine=True)
    np.testing.assert_allclose(np.array(Image.open(tmp_path / 'kept.tif')), want, atol=1e-3)


def test_single_refine_bm3d_is_the_refined_output_through_bm3ds_wiener_stage(tmp_path):
    """--refine bm3d writes what predict(refine=True, bm3d=True) gives, above the refined
    output on a photo; --refine alone and --no-refine still parse."""
    from skimage import data

    from models import load_model
    from n2s_app import cli
    from utils.evaluation.metrics import PSNR
    clean = data.camera()[256:352, 128:256].astype(np.float64)
    noisy = (clean + np.random.default_rng(9).normal(0, 20, clean.shape)).astype(np.float32)
    Image.fromarray(noisy).save(tmp_path / 'photo.tif')
    for flags in (['--refine', 'bm3d'], ['--refine'], ['--no-refine']):
        result = run(ROOT / 'test_single.py', tmp_path / 'photo.tif', *flags,
                     '--output', tmp_path / f"out{len(flags)}{flags[-1]}.tif")
        assert result.returncode == 0, result.stderr[-2000:]
    # `--refine IMAGE` (or `--ref IMAGE`), as when --refine took no value: the image is not
    # a refinement's name
    for flag in ('--refine', '--ref'):
        result = run(ROOT / 'test_single.py', flag, tmp_path / 'photo.tif',
                     '--output', tmp_path / 'again.tif')
        assert result.returncode == 0, result.stderr[-2000:]
        np.testing.assert_array_equal(np.array(Image.open(tmp_path / 'again.tif')),
                                      np.array(Image.open(tmp_path / 'out1--refine.tif')))
    model = load_model(str(ROOT / 'trained_models'), cli.DEFAULT_MODEL)
    got = np.array(Image.open(tmp_path / 'out2bm3d.tif'))
    want = model.restored_predictor().predict(noisy, PredictOptions(refine=True, bm3d=True))
    # block matching may flip on the refined output's float rounding: nearly equal, not exactly
    assert np.mean(np.abs(got - want)) < 0.02 and np.max(np.abs(got - want)) < 1
    refined = np.array(Image.open(tmp_path / 'out1--refine.tif'))
    assert PSNR(clean, got) > PSNR(clean, refined) + 0.1


def test_the_default_model_for_an_image_follows_its_noise_and_the_models_there(tmp_path):
    """model_source.default_model_for: NOISY_MODEL above NOISY_ABOVE relative noise when the
    folder has it, DEFAULT_MODEL otherwise and where the noise cannot be measured
    (`measured_noise`: constant, NaN or too small images)."""
    from n2s_app import cli
    from n2s_app.model_source import default_model_for
    from utils.core.noise import measured_noise
    shipped = str(ROOT / 'trained_models')
    above, below = cli.NOISY_ABOVE * 1.01, cli.NOISY_ABOVE * 0.99
    assert default_model_for(above, shipped) == cli.NOISY_MODEL
    assert default_model_for(below, shipped) == cli.DEFAULT_MODEL
    assert default_model_for(above, str(tmp_path)) == cli.DEFAULT_MODEL  # no NOISY_MODEL there
    assert default_model_for(None, shipped) == cli.DEFAULT_MODEL
    rng = np.random.default_rng(0)
    scene = np.add.outer(np.linspace(0, 100, 96), np.linspace(0, 60, 128))  # std ~ 33
    assert measured_noise(scene + rng.normal(0, 120, scene.shape)) > cli.NOISY_ABOVE
    assert measured_noise(scene + rng.normal(0, 5, scene.shape)) < cli.NOISY_ABOVE
    for bad in (np.zeros((32, 32)), np.full((32, 32), np.nan), scene[:2]):
        assert measured_noise(bad) is None


@pytest.mark.parametrize('script', SCRIPTS)
def test_help_reads_cleanly(script):
    """Whole description, each default said once, no '(default: None)'."""
    text = run(ROOT / script, '--help').stdout
    assert '(default: None)' not in text and '(default: False)' not in text
    for block in text.split('\n  -'):
        assert block.count('(default') <= 1, block
    description = text.split('\n\n')[1]
    assert description.rstrip().endswith(('.', ')')), description


def test_scripts_start_without_tensorflow_log_lines(tmp_path):
    """TensorFlow's C++ start-up lines (cuInit, oneDNN notices) are hidden; N2S_TF_LOGS=1
    shows them again."""
    env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
    cmd = [sys.executable, str(ROOT / 'test.py'), '--model-dir', str(tmp_path), '--name', 'none',
           '--dataset', 'demo']
    quiet = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 2 and quiet.stderr.strip().startswith('error: no checkpoint'), \
        quiet.stderr
    loud = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**env, 'N2S_TF_LOGS': '1'})
    assert len(loud.stderr.strip().splitlines()) > 1


def test_denoising_a_photo_prints_no_tensorflow_lines_and_writes_readable_files(tmp_path):
    """A whole test_single.py run (not only the start): no CUDA or other C++ log lines, and
    outputs with the mode of a plain write."""
    env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(tmp_path / 'p.jpg')
    cmd = [sys.executable, '-c', 'import os, runpy, sys; os.umask(0o022); '
           'sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name="__main__")',
           str(ROOT / 'test_single.py'), str(tmp_path / 'p.jpg'), '--model-dir',
           str(ROOT / 'trained_models')]
    quiet = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr.strip() == '', quiet.stderr
    for name in ('p_denoised.jpg', 'p_figure.png'):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
    loud = subprocess.run(cmd + ['--output', str(tmp_path / 'q.jpg')], cwd=ROOT,
                          capture_output=True, text=True, env={**env, 'N2S_TF_LOGS': '1'},
                          timeout=300)
    assert 'cuda' in loud.stderr.lower()  # the lines exist, and are shown when asked for
