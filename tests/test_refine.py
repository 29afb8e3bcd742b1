"""The noise-aware refinement (utils/prediction/refine.py), colour images with grey models
(denoise_array) and the model-fit note (utils/evaluation/fit.py), against numpy
re-computations and images whose answer is known."""
import numpy as np
import pytest
from skimage import data

from conftest import ROOT
from utils.core.noise import relative_noise
from utils.prediction.photo import denoise_array, OPPONENT
from utils.prediction.predictor import PredictOptions
from utils.evaluation import fit
from n2s_app.cli import DEFAULT_MODEL
from utils.evaluation.metrics import PSNR
from utils.prediction.refine import refine, window_for, WINDOWS

MODEL = 'demo32-N2S'


def box_mean(a: np.ndarray, w: int) -> np.ndarray:
    """Mean over w x w windows, the border mirrored (edge pixel repeated), by summed areas."""
    p = np.pad(a, w // 2, mode='symmetric')
    c = np.pad(p.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, v = a.shape
    return (c[w:w + h, w:w + v] - c[:h, w:w + v] - c[w:w + h, :v] + c[:h, :v]) / w ** 2


def wiener(x, f, sigma, w):
    r = x - f
    return f + np.maximum(0, 1 - sigma ** 2 / box_mean(r * r, w)) * r


def scene(shape=(96, 128), sigma=5.0, seed=0):
    """A textured scene on 0..255, its noisy version, and an over-smoothed 'denoised' one."""
    from scipy.ndimage import gaussian_filter
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    clean = 128 + 60 * np.sin(xx / 3.0) * np.cos(yy / 5.0) + 30 * (xx > shape[1] // 2)
    noisy = clean + rng.normal(0, sigma, shape)
    return clean, noisy, gaussian_filter(noisy, 2.0)


def test_refine_is_the_wiener_formula_with_a_given_sigma_and_window():
    clean, noisy, smooth = scene()
    for w in (1, 5, 13):
        np.testing.assert_allclose(refine(noisy, smooth, sigma=5.0, window=w),
                                   wiener(noisy, smooth, 5.0, w), atol=1e-3)
    # colour: each channel with its own sigma
    rgb = np.stack([noisy, noisy[::-1], noisy[:, ::-1]], -1)
    den = np.stack([smooth, smooth[::-1], smooth[:, ::-1]], -1)
    out = refine(rgb, den, sigma=[2.0, 5.0, 9.0], window=7, channel_axis=-1)
    for c, s in enumerate((2.0, 5.0, 9.0)):
        np.testing.assert_allclose(out[..., c], wiener(rgb[..., c], den[..., c], s, 7), atol=1e-3)


def test_refine_gives_back_what_an_over_smoothing_denoiser_took_and_keeps_a_good_one():
    clean, noisy, smooth = scene(sigma=5.0)
    refined = refine(noisy, smooth)  # sigma and window estimated blindly
    assert PSNR(clean, refined) > PSNR(clean, smooth) + 3
    assert PSNR(clean, refined) > PSNR(clean, noisy)
    # a denoiser that removed exactly the noise: refinement changes it little
    exact = refine(noisy, clean)
    assert PSNR(clean, exact) > PSNR(clean, noisy) + 5
    # nothing removed: nothing to put back
    np.testing.assert_allclose(refine(noisy, noisy), noisy, atol=1e-3)


def test_the_window_grows_with_the_noise_and_bad_calls_are_refused():
    levels = [0.01, 0.2, 0.4, 0.5, 0.65, 0.9, 5.0]
    windows = [window_for(r) for r in levels]
    assert windows == sorted(windows)
    assert windows[0] == WINDOWS[0][1] and windows[-1] == WINDOWS[-1][1]
    with pytest.raises(ValueError, match='differ in shape'):
        refine(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(ValueError, match='at least 1'):
        refine(np.zeros((8, 8)), np.zeros((8, 8)), sigma=1.0, window=0)


@pytest.fixture(scope='module')
def model():
    from models import load_model
    return load_model(str(ROOT / 'trained_models'), MODEL)


def test_predict_with_refine_refines_the_network_output_whole_and_tiled(model):
    clean, noisy, _ = scene((64, 96), sigma=10.0)
    plain = model.predict(noisy)
    np.testing.assert_allclose(model.predict(noisy, refine=True), refine(noisy, plain), atol=1e-3)
    tiled = model.crop_predict(noisy, 48, 8)
    np.testing.assert_allclose(model.crop_predict(noisy, 48, 8, refine=True),
                               refine(noisy, tiled), atol=1e-3)


def test_a_grey_model_keeps_a_colour_image_in_colour(model):
    clean, noisy, _ = scene((64, 80), sigma=15.0)
    rgb = np.stack([noisy, 0.8 * noisy[::-1] + 20, 0.5 * noisy[:, ::-1] + 60], -1)
    by_channel = denoise_array(model.restored_predictor(), rgb, PredictOptions(colour='channels'))
    assert by_channel.shape == rgb.shape
    for c in range(3):
        np.testing.assert_allclose(by_channel[..., c], model.predict(rgb[..., c]), atol=1e-3)
    opponent = denoise_array(model.restored_predictor(), rgb, PredictOptions(colour='opponent'))
    o = rgb @ OPPONENT.T
    contrast = rgb.mean(-1).std()
    want = np.stack([model.predict(o[..., c], im_mean=o[..., c].mean(), im_std=contrast)
                     for c in range(3)], -1) @ OPPONENT
    np.testing.assert_allclose(opponent, want, atol=1e-3)
    # a grey picture stored as RGB comes back grey, as the grey picture would
    grey = np.repeat(noisy[..., None], 3, -1)
    out = denoise_array(model.restored_predictor(), grey)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_allclose(out[..., 1], model.predict(noisy), atol=1e-4)
    with pytest.raises(ValueError, match='unknown colour mode'):
        denoise_array(model.restored_predictor(), rgb, PredictOptions(colour='lab'))


def test_a_model_says_when_an_image_is_outside_its_noise_range(tmp_path):
    import json
    import shutil
    base = tmp_path / 'models'
    for name, bounds in (('low', [0.05, 0.15]), ('mid', [0.3, 0.7]), ('unrecorded', None)):
        shutil.copytree(ROOT / 'trained_models' / MODEL, base / name)
        settings = json.loads((base / name / 'settings.json').read_text())
        settings['training'].pop('relative_noise', None)
        if bounds:
            settings['training']['relative_noise'] = bounds
        (base / name / 'settings.json').write_text(json.dumps(settings))
    clean, noisy, _ = scene((128, 128), sigma=3.0)  # relative noise ~ 3 / 50
    rel = relative_noise(noisy)
    assert 0.03 < rel < 0.12
    read = lambda name: json.loads((base / name / 'settings.json').read_text())
    message = fit.unfit_message('mid', read('mid'), noisy, 2, str(base), 'x.png')
    assert message.startswith('note: x.png:') and 'below the 0.30-0.70' in message
    assert 'models that fit: low' in message
    assert fit.unfit_message('low', read('low'), noisy, 2, str(base), 'x.png') is None
    assert fit.unfit_message('unrecorded', read('unrecorded'), noisy, 2, str(base), 'x') is None
    loud = scene((128, 128), sigma=80.0)[1]
    assert 'above' in fit.unfit_message('low', read('low'), loud, 2, str(base), 'y.png')
    # the shipped models: a photograph at sigma 5 is below the sigma-25 models' range, and
    # the note names the blind models, the shipped ones trained on such noise (the default too)
    photo = data.camera()[::2, ::2].astype(np.float64)
    quiet = photo + np.random.default_rng(5).normal(0, 5, photo.shape)
    shipped = ROOT / 'trained_models'
    settings = lambda name: json.loads((shipped / name / 'settings.json').read_text())
    note = fit.unfit_message('bsd68-N2SP', settings('bsd68-N2SP'), quiet, 2, str(shipped), 'p')
    assert 'below' in note and note.endswith('models that fit: blind-N2S, blind32-N2S (--name)')
    assert fit.unfit_message(DEFAULT_MODEL, settings(DEFAULT_MODEL), quiet, 2, str(shipped),
                             'p') is None
    # the training range: percentiles 5 and 95 of the images' relative noise
    images = [scene((64, 64), sigma=s, seed=i)[1] for i, s in enumerate((2, 4, 8, 16, 32))]
    values = [relative_noise(x) for x in images]
    np.testing.assert_allclose(fit.noise_range([x[..., None] for x in images]),
                               np.percentile(values, [5, 95]), atol=1e-4)


def test_test_py_reports_refined_figures_beside_the_original_protocol(tmp_path, model):
    import csv

    from conftest import run_main
    from utils.data.datasets import DATASETS
    result = run_main(ROOT / 'test.py', '--dataset', 'demo', '--name', MODEL, '--refine',
                      '--csv', tmp_path / 'rows.csv')
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-2].startswith('demo: mean PSNR') and 'refined' not in lines[-2]
    assert lines[-1].startswith('demo --refine: mean PSNR') and 'not the original' in lines[-1]
    with open(tmp_path / 'rows.csv') as f:
        rows = list(csv.DictReader(f))
    for row, image in zip(rows, DATASETS['demo'].test_images(str(ROOT / 'Denoising_data'))):
        plain = model.predict(image.noisy)
        assert float(row['psnr']) == pytest.approx(PSNR(image.clean, plain), abs=1e-3)
        assert float(row['psnr_refined']) == pytest.approx(
            PSNR(image.clean, refine(image.noisy, plain)), abs=1e-3)
