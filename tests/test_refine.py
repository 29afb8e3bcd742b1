"""The noise model (utils/core/noise.py), the noise-aware refinement and its guard
(utils/prediction/refine.py), colour images with grey models
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
from utils.core.noise import NoiseModel, clipping, estimate_noise_model
from utils.data import bsd68_build
from utils.prediction import gate as gate_module
from utils.prediction import refine as refine_module
from utils.prediction.refine import refine, refine_with_report, wiener

MODEL = 'demo32-N2S'


def box_mean(a: np.ndarray, w: int) -> np.ndarray:
    """Mean over w x w windows, the border mirrored (edge pixel repeated), by summed areas."""
    p = np.pad(a, w // 2, mode='symmetric')
    c = np.pad(p.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, v = a.shape
    return (c[w:w + h, w:w + v] - c[:h, w:w + v] - c[w:w + h, :v] + c[:h, :v]) / w ** 2


def gate(x, f, var, w, t=1.0):
    r = x - f
    return f + np.clip(1 - t * box_mean(np.broadcast_to(var, x.shape), w) / box_mean(r * r, w),
                       0, 1) * r


def scene(shape=(96, 128), sigma=5.0, seed=0):
    """A textured scene on 0..255, its noisy version, and an over-smoothed 'denoised' one."""
    from scipy.ndimage import gaussian_filter
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    clean = 128 + 60 * np.sin(xx / 3.0) * np.cos(yy / 5.0) + 30 * (xx > shape[1] // 2)
    noisy = clean + rng.normal(0, sigma, shape)
    return clean, noisy, gaussian_filter(noisy, 2.0)


def smooth_scene(shape=(192, 256)):
    """A clean image of ramps and soft blobs on -20..223, little texture: the estimator's
    ground truth is the noise alone."""
    yy, xx = np.mgrid[:shape[0], :shape[1]] / np.array(shape)[:, None, None]
    return 10 + 200 * xx + 30 * np.sin(6 * yy) * np.cos(4 * xx) ** 2


def test_the_gate_is_the_wiener_formula_with_a_given_variance_window_and_strength():
    clean, noisy, smooth = scene()
    for w, t in ((1, 1.0), (5, 1.0), (13, 2.0)):
        np.testing.assert_allclose(wiener(noisy, smooth, 25.0, w, t),
                                   gate(noisy, smooth, 25.0, w, t), atol=1e-6)
    local = 4.0 + 0.2 * np.clip(smooth, 0, None)  # a Poisson-like variance per pixel
    np.testing.assert_allclose(wiener(noisy, smooth, local, 9), gate(noisy, smooth, local, 9),
                               atol=1e-6)
    with pytest.raises(ValueError, match='differ in shape'):
        refine(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(ValueError, match='at least 1'):
        wiener(np.zeros((8, 8)), np.zeros((8, 8)), 1.0, 0)


@pytest.mark.parametrize('sigma', [2.0, 10.0, 40.0])
def test_the_noise_model_of_gaussian_noise_is_its_sigma(sigma):
    clean = smooth_scene()
    noisy = clean + np.random.default_rng(int(sigma)).normal(0, sigma, clean.shape)
    model = estimate_noise_model(noisy)
    assert model.std(clean) == pytest.approx(sigma, rel=0.08)
    assert model.a[0] * clean.mean() < 0.2 * model.b[0]  # read as (nearly) signal-independent


@pytest.mark.parametrize('peak, read', [(3.0, 0.0), (30.0, 0.0), (100.0, 0.0), (10.0, 2.0)])
def test_the_noise_model_of_poisson_gaussian_noise_follows_the_signal(peak, read):
    """x = (Poisson(c / 255 * peak) + N(0, read^2)) / peak * 255: variance 255/peak * c +
    (255 read / peak)^2; the estimate matches it at dark and bright levels alike."""
    clean = smooth_scene()
    rng = np.random.default_rng(int(peak * 10 + read))
    noisy = bsd68_build.poisson_gaussian(clean, peak, read, rng)
    model = estimate_noise_model(noisy)
    truth = lambda y: 255 / peak * y + (255 * read / peak) ** 2
    for level in (60.0, 120.0, 220.0):
        assert model.variance(np.array([level]))[0] == pytest.approx(truth(level), rel=0.2)
    assert model.std(clean) == pytest.approx(np.sqrt(truth(clean).mean()), rel=0.06)
    assert 'Poisson-Gaussian' in model.describe()


def test_the_noise_model_reads_less_texture_as_noise_than_one_wavelet_sigma():
    """BSD68's textured test001 at sigma 5 (the issue's example): scikit-image's wavelet
    estimate (the refinement's noise level before) reads 9.9; the block-quantile model reads
    less of the texture as noise (7.9; the guard takes the rest as uncertainty)."""
    from PIL import Image
    from skimage.restoration import estimate_sigma
    from test_bsd68 import PNGS, require_pngs
    require_pngs()
    photo = np.asarray(Image.open(PNGS / 'test68' / 'test001.png'), np.float64)
    noisy = photo + np.random.default_rng(3).normal(0, 5, photo.shape)
    ours, wavelet = estimate_noise_model(noisy).std(photo), float(estimate_sigma(noisy))
    assert abs(ours - 5) < 0.75 * abs(wavelet - 5)
    assert estimate_noise_model(noisy).spread[0] > 0.1  # and knows it is unsure


@pytest.mark.parametrize('sigma', [5.0, 10.0])
def test_the_kurtosis_estimate_is_not_inflated_by_texture(sigma):
    """scikit-image's gravel, a texture the high-pass model reads as 40 % more noise at sigma
    5: the kurtosis estimate (Zoran & Weiss) reads the noise within 8 %, and on the smooth
    moon within 5 % at any level."""
    from utils.core.noise import kurtosis_std
    gravel, moon = (getattr(data, n)().astype(np.float64) for n in ('gravel', 'moon'))
    rng = np.random.default_rng(int(sigma))
    noisy = gravel + rng.normal(0, sigma, gravel.shape)
    assert estimate_noise_model(noisy).std(gravel) > 1.12 * sigma
    assert kurtosis_std(noisy) == pytest.approx(sigma, rel=0.08)
    for level in (sigma, 4 * sigma):
        noisy_moon = moon + rng.normal(0, level, moon.shape)
        assert kurtosis_std(noisy_moon) == pytest.approx(level, rel=0.05)
    assert np.isnan(kurtosis_std(np.full((50, 50), 7.0)))  # no filter has a kurtosis
    assert np.isnan(kurtosis_std(np.zeros((7, 100))))  # under one 8 x 8 patch


@pytest.mark.parametrize('peak, read', [(30.0, 0.0), (10.0, 1.0)])
def test_the_kurtosis_scale_of_a_poisson_model_is_its_error(peak, read):
    """Poisson-Gaussian noise through the variance-stabilising transform of its true model:
    the scale is 1; of a model twice too noisy: 1 / 2."""
    from utils.core.noise import kurtosis_scale
    clean = 20 + 0.8 * data.camera().astype(np.float64)
    noisy = bsd68_build.poisson_gaussian(clean, peak, read, np.random.default_rng(1))
    a = 255 / peak
    true = NoiseModel(np.array([a]), np.array([(read * a) ** 2]), np.zeros(1))
    double = NoiseModel(2 * true.a, 2 * true.b, np.zeros(1))
    assert kurtosis_scale(noisy, true) == pytest.approx(1.0, abs=0.05)
    assert kurtosis_scale(noisy, double) == pytest.approx(0.5, abs=0.05)


def test_the_guard_keeps_a_texture_read_as_noise_above_its_input():
    """scikit-image's grass at sigma 5, which the high-pass model reads as sigma 10, and an
    over-smoothing denoiser: refined, the image is not below its noisy input, because the
    kurtosis estimate widens the noise model's lower end; without it, it is."""
    from scipy.ndimage import gaussian_filter
    grass = data.grass().astype(np.float64)
    delta = np.zeros((21, 21))
    delta[10, 10] = 1
    divergence = float(gaussian_filter(delta, 1.5)[10, 10])  # the blur's own weight
    for seed in range(2):
        noisy = grass + np.random.default_rng(seed).normal(0, 5, grass.shape)
        smooth = gaussian_filter(noisy, 1.5)
        assert estimate_noise_model(noisy, smooth).std(smooth) > 9
        out = refine(noisy, smooth, divergence=divergence)
        assert PSNR(grass, out) > PSNR(grass, noisy) + 0.1
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(refine_module, 'KURTOSIS_BELOW', 0.0)  # the kurtosis never consulted
        assert PSNR(grass, refine(noisy, smooth, divergence=divergence)) < PSNR(grass, noisy)


def clipped_8bit(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Gaussian noise as an 8-bit photo keeps it: rounded and clipped to 0..255."""
    noise = np.random.default_rng(seed).normal(0, sigma, clean.shape)
    return np.clip(np.round(clean + noise), 0, 255)


def photo_scene() -> np.ndarray:
    """`smooth_scene` on 20..214, inside an 8-bit photo's range."""
    return 20 + 0.8 * (smooth_scene() + 20)


def test_clipping_is_found_where_noise_was_cut_off_and_nowhere_else():
    clean = photo_scene()
    assert clipping(clipped_8bit(clean, 25.0, 1)) == (0.0, 255.0)
    assert clipping(clipped_8bit(clean, 2.0, 1)) == (-np.inf, np.inf)  # no pixel reaches an end
    assert clipping(np.clip(clean + 50.0, None, 255)) == (-np.inf, 255.0)  # saturated, no noise
    assert clipping(clean + np.random.default_rng(1).normal(0, 25, clean.shape)) == \
        (-np.inf, np.inf)
    # photon counts: many zeros at 1 photon a pixel, but as many ones: not a clipped end
    counts = bsd68_build.poisson_gaussian(clean, 30.0, 0.0, np.random.default_rng(1))
    assert clipping(counts) == (-np.inf, np.inf)


@pytest.mark.parametrize('sigma', [25.0, 40.0])
def test_the_noise_model_of_clipped_noise_is_the_noise_before_clipping(sigma):
    """A scene whose dark end lies below 0 (an under-exposed photo): noise cut off at 0 shrinks
    there, and fitted through all levels it reads as Poisson-like (variance 3.45 y + 155 at
    sigma 25: 0.4 x the truth at level 30); without the levels near the ends the model is the
    Gaussian sigma at every level, and says the data are clipped."""
    clean = smooth_scene()
    model = estimate_noise_model(clipped_8bit(clean, sigma, int(sigma)))
    for level in (30.0, 128.0, 200.0):
        assert model.variance(np.array([level]))[0] == pytest.approx(sigma ** 2, rel=0.2)
    assert model.describe().endswith('clipped at 0 and 255')
    near = model.near_clipping(clean)
    assert near[clean < 2 * sigma * 0.9].all() and not near[(clean > 2.2 * sigma)
                                                            & (clean < 255 - 2.2 * sigma)].any()


def test_the_guard_keeps_clipped_noise_from_being_put_back():
    """A held-out BSD68 validation image (test_398, never trained on) as an 8-bit photo at
    sigma 50, denoised by the default model: judged with the clipped pixels, the risk estimate
    took a gate that put noise back (2.1 dB below the network alone); judged without them, the
    refinement is not below the network, and above the input."""
    from PIL import Image
    from models import load_model
    from test_bsd68 import PNGS, require_pngs
    require_pngs()
    clean = np.asarray(Image.open(PNGS / 'train400' / 'test_398.png'), np.float64)
    noisy = clipped_8bit(clean, 50.0, 398)
    predictor = load_model(str(ROOT / 'trained_models'), DEFAULT_MODEL).restored_predictor()
    network = predictor.predict(noisy)
    refined, (report,) = predictor.refine(noisy, network)
    assert 'clipped at 0 and 255' in report.describe()
    assert PSNR(clean, refined) >= PSNR(clean, network) - 0.05
    assert PSNR(clean, refined) > PSNR(clean, noisy) + 5


def test_refine_gives_back_what_an_over_smoothing_denoiser_took_and_keeps_a_good_one():
    clean, noisy, smooth = scene(sigma=5.0)
    refined, (report,) = refine_with_report(noisy, smooth)  # noise model estimated blindly
    assert PSNR(clean, refined) > PSNR(clean, smooth) + 3
    assert PSNR(clean, refined) > PSNR(clean, noisy)
    assert report.choice.startswith('window')
    # the estimated gain over the input is near the true one
    assert report.gain_db == pytest.approx(PSNR(clean, refined) - PSNR(clean, noisy), abs=1.0)
    # a denoiser that removed exactly the noise: kept (nothing better among the candidates)
    exact = refine(noisy, clean)
    assert PSNR(clean, exact) > PSNR(clean, noisy) + 5


@pytest.mark.parametrize('alpha', [0.0, 0.3])
def test_each_candidates_risk_is_steins_estimate_with_the_divergence_by_finite_differences(alpha):
    """SURE(y) = |y - x|^2 - sum v + 2 sum v dy_i/dx_i for Gaussian noise of variance v per
    pixel, here with dy_i/dx_i measured by finite differences of the gate as a function of x
    (a lattice of pixels further apart than the window perturbed at once), for a 'denoiser'
    f = alpha x + (1 - alpha) c whose divergence is alpha; also over a part of the pixels."""
    rng = np.random.default_rng(7)
    clean = scene((40, 44), sigma=5.0)[0]
    v = 20.0 + 0.3 * clean  # Poisson-Gaussian-like variance per pixel
    x = clean + rng.normal(0, 1, clean.shape) * np.sqrt(v)
    c = clean + rng.normal(0, 2, clean.shape)  # a fixed 'estimate' not made from x
    denoise = lambda z: alpha * z + (1 - alpha) * c
    scored = np.ones(x.shape, bool)
    scored[:, :9] = False
    windows, strengths = (3, 7), (0.5, 1.0, 2.0)
    terms = gate_module.risk_terms(x, denoise(x), v, alpha, scored, windows, strengths)
    assert [t[0] for t in terms[:2]] == ['input', 'network']
    assert terms[0][2] == pytest.approx(v[scored].sum())
    for name, fit_, lin, gate_ in terms[2:]:
        w, t = gate_
        y = lambda z: wiener(z, denoise(z), v, w, t)
        div, step, base = np.zeros(x.shape), 1e-4, y(x)
        for i in range(w + 1):
            for j in range(w + 1):
                probe = np.zeros(x.shape)
                probe[i::w + 1, j::w + 1] = step
                div += (y(x + probe) - base) / step * (probe > 0)
        sure = ((base - x) ** 2 - v + 2 * v * div)[scored].sum()
        assert fit_ + lin == pytest.approx(sure, rel=1e-4), name


def test_a_pixels_weight_in_its_own_window_is_the_filters_at_edges_and_for_any_window():
    """`_self_weight`: the diagonal of scipy's reflecting box filter, found by filtering one
    pixel at a time, for odd and even windows and windows longer than the axis; and the
    risk sums are the same whatever the strengths' order and number type."""
    from scipy.ndimage import uniform_filter
    for shape, w in (((7, 9), 3), ((5, 30), 21), ((6, 5), 4), ((1, 2), 2), ((3, 4, 5), 5)):
        diagonal = np.zeros(shape)
        for k in range(diagonal.size):
            one = np.zeros(diagonal.size)
            one[k] = 1
            diagonal.flat[k] = uniform_filter(one.reshape(shape), w, mode='reflect').flat[k]
        np.testing.assert_allclose(gate_module._self_weight(shape, w), diagonal, atol=1e-15)
    clean, noisy, smooth = scene((40, 44), sigma=5.0)
    v = np.full(noisy.shape, 25.0)
    terms = lambda s: {f'{t[0]}: {i}': value for t in gate_module.risk_terms(
        noisy, smooth, v, 0.04, strengths=s) for i, value in enumerate(t[1:3])}
    plain = terms((0.5, 1.0, 3.0))
    assert terms(np.array([3.0, 0.5, 1.0], np.float32)) == pytest.approx(plain, rel=1e-9)
    with pytest.raises(ValueError, match='strengths must be positive'):
        terms((0.0, 1.0))


def test_the_guard_returns_the_input_when_the_denoiser_destroys_the_image():
    """A 'denoiser' that returns a flat grey image: every gated candidate is worse than the
    noisy input, and the risk estimate says so."""
    clean, noisy, _ = scene(sigma=5.0)
    flat = np.full_like(noisy, noisy.mean())
    out, (report,) = refine_with_report(noisy, flat)
    assert PSNR(clean, out) >= PSNR(clean, noisy) - 0.1
    assert report.gain_db == pytest.approx(PSNR(clean, out) - PSNR(clean, noisy), abs=1.0)


def test_refine_follows_a_poisson_noise_model_where_one_sigma_puts_noise_back():
    """Poisson noise (peak 30) and an over-smoothing denoiser: the per-pixel variance gate
    beats the same risk-chosen gate under one Gaussian sigma of the same mean variance, and
    both beat the input and the denoiser."""
    from scipy.ndimage import gaussian_filter
    clean = 20 + 0.8 * data.camera().astype(np.float64)[::2, ::2]
    noisy = bsd68_build.poisson_gaussian(clean, 30.0, 0.0, np.random.default_rng(30))
    smooth = gaussian_filter(noisy, 1.5)
    model = estimate_noise_model(noisy, smooth)
    one_sigma = NoiseModel(np.zeros(1), np.array([model.std(smooth) ** 2]), model.spread)
    local, gaussian = refine(noisy, smooth, model), refine(noisy, smooth, one_sigma)
    assert PSNR(clean, local) > PSNR(clean, gaussian) + 0.2
    assert PSNR(clean, local) > max(PSNR(clean, noisy), PSNR(clean, smooth))


def test_at_low_photon_counts_the_network_output_is_kept():
    clean = smooth_scene((96, 128))
    noisy = bsd68_build.poisson_gaussian(clean, 3.0, 0.0, np.random.default_rng(1))
    smooth = np.full_like(noisy, noisy.mean())
    out, (report,) = refine_with_report(noisy, smooth)
    np.testing.assert_array_equal(out, smooth.astype(np.float32))
    assert report.choice.startswith('network (under') and report.gain_db is None


def mean_network(b: np.ndarray) -> np.ndarray:
    """A toy network: each pixel's 5 x 5 mean (on a batch (B, H, W, 1))."""
    from scipy.ndimage import uniform_filter
    return np.stack([uniform_filter(x[..., 0], 5)[..., None] for x in b]).astype(np.float32)


def test_under_half_a_photon_a_pixel_the_network_denoises_the_2x2_sums_transform():
    """A smooth scene at 0.3 photons a pixel: `predict` with refine hands back the network's
    output on the generalised Anscombe transform of the 2 x 2 sums under the image's estimated
    model, inverted, divided by 4 and interpolated back (formulas written out here), and says
    so; with read noise of 2 photons, or with a caller's normalisation (a colour channel), not."""
    from scipy.ndimage import zoom
    from utils.prediction.predictor import Predictor
    from utils.prediction.refine import summarise
    predictor = Predictor(mean_network, 2, 1, 8)
    clean = smooth_scene((96, 130)) + 30  # 10..253; 130: a ragged edge
    noisy = bsd68_build.poisson_gaussian(clean, 0.6, 0.0, np.random.default_rng(4))
    reports = []
    out = predictor.predict(noisy, PredictOptions(refine=True), reports=reports)
    (report,) = reports
    assert report.choice.startswith('the network at 1/2 resolution on the Anscombe transform')
    a, b = float(report.noise.a[0]), float(report.noise.b[0])
    assert a == pytest.approx(255 / 0.6, rel=0.2)
    sums = noisy.reshape(48, 2, 65, 2).sum(axis=(1, 3))
    z = 2 * np.sqrt(np.maximum(sums / a + 3 / 8 + 4 * b / a ** 2, 0))
    d = np.maximum(predictor.predict(z), 0.8)
    counts = np.maximum(d ** 2 / 4 + np.sqrt(1.5) / 4 / d - 11 / 8 / d ** 2
                        + 5 * np.sqrt(1.5) / 8 / d ** 3 - 1 / 8 - 4 * b / a ** 2, 0)
    want = zoom(a * counts / 4, 2, order=1, grid_mode=True, mode='nearest')
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-3)
    assert PSNR(clean, out) > PSNR(clean, predictor.predict(noisy)) + 1
    assert summarise(reports).startswith("refinement of 1 frames: 1 the network at a coarser")
    assert summarise([refine_with_report(noisy, noisy)[1][0]]).startswith(
        "refinement of 1 frames: 1 the network's output")  # (under 8 photons: kept)
    read = bsd68_build.poisson_gaussian(clean, 0.6, 2.0, np.random.default_rng(4))
    reports = []
    predictor.predict(read, PredictOptions(refine=True), reports=reports)
    assert 'Anscombe' not in reports[0].choice
    reports = []
    predictor.predict(noisy, PredictOptions(refine=True), float(noisy.mean()),
                      float(noisy.std()), reports=reports)
    assert 'Anscombe' not in reports[0].choice


@pytest.mark.parametrize('sigma', [90.0, 150.0])
def test_a_very_noisy_image_is_denoised_at_the_coarser_scale_its_risk_estimate_picks(sigma):
    """A smooth scene under Gaussian noise above its own std and a 5 x 5 mean 'network':
    each coarse candidate's risk estimate (Stein's, divergence probed through binning, network
    and interpolation) is its true mean squared error to within 3 % of the noise variance, and
    `choose` takes the 4 x 4 sums over the refined output, at a quarter of its error or less;
    at sigma 10 it is not tried."""
    from scipy.ndimage import uniform_filter
    from utils.prediction import coarse
    network = lambda z: uniform_filter(z, 5)
    clean = smooth_scene((96, 128))
    model = NoiseModel(np.zeros(1), np.array([sigma ** 2]), np.zeros(1))
    for seed in range(2):
        noisy = clean + np.random.default_rng(seed).normal(0, sigma, clean.shape)
        for k in coarse.FACTORS:
            y, report = coarse.candidate('k', noisy, k, model, network, stabilise=False)
            assert report.risk == pytest.approx(np.mean((y - clean) ** 2), abs=0.03 * sigma ** 2)
        refined, (report,) = refine_with_report(noisy, network(noisy), model, divergence=1 / 25)
        out, chosen = coarse.choose(noisy, refined, report, network)
        assert chosen.choice == 'the network at 1/4 resolution (4 x 4 sums)'
        assert np.mean((out - clean) ** 2) < 0.25 * np.mean((refined - clean) ** 2)
    quiet = clean + np.random.default_rng(0).normal(0, 10, clean.shape)
    low = NoiseModel(np.zeros(1), np.array([100.0]), np.zeros(1))
    refined, (report,) = refine_with_report(quiet, network(quiet), low, divergence=1 / 25)
    assert coarse.choose(quiet, refined, report, network) == (refined, report)


def test_the_divergence_probe_measures_known_linear_networks():
    """Predictor.divergence: identity 1, a 3x3 mean 1/9, a blind-spot mean (centre left out) 0."""
    from scipy.ndimage import convolve
    from utils.prediction.predictor import Predictor
    z = np.random.default_rng(0).normal(size=(200, 150, 1)).astype(np.float32)
    kernels = {1.0: np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]]), 1 / 9: np.ones((3, 3)) / 9,
               0.0: (np.ones((3, 3)) - np.eye(3)[1] * np.eye(3)[:, 1:2].T) / 8}
    for want, kernel in kernels.items():
        net = lambda b, k=kernel: np.stack([convolve(x[..., 0], k)[..., None] for x in b])
        got = Predictor(net, 2, 1, 8).divergence(z)
        assert got == pytest.approx(want, abs=0.01)


def test_the_divergence_probe_reuses_the_whole_images_output_on_the_networks_grid():
    """With the whole image's output given (one network pass instead of two) the probe
    measures the same as with its own unperturbed pass, also for a network whose output
    depends on its downsampling grid (8 x 8 block means), on images padded on both sides."""
    from utils.prediction.predictor import Predictor
    from utils.prediction.tiling import PadAndCropResizer

    def net(b):  # a pixel's 8 x 8 block mean (after the padding) plus a third of the pixel
        n, h, w, c = b.shape
        blocks = b.reshape(n, h // 8, 8, w // 8, 8, c).mean(axis=(2, 4), keepdims=True)
        return (np.broadcast_to(blocks, (n, h // 8, 8, w // 8, 8, c)).reshape(b.shape)
                + b / 3).astype(np.float32)
    predictor = Predictor(net, 2, 1, 8)
    for shape in [(203, 177), (330, 250), (100, 90), (161, 175), (168, 169), (176, 320)]:
        z = np.random.default_rng(1).normal(size=shape + (1,)).astype(np.float32)
        resizer = PadAndCropResizer()
        whole = resizer.after(net(resizer.before(z, 8, exclude=-1)[None])[0], exclude=-1)
        two, one = predictor.divergence(z), predictor.divergence(z, output=whole)
        assert one == pytest.approx(two, abs=1e-5)
        assert two == pytest.approx(1 / 3 + 1 / 64, abs=0.01)


@pytest.fixture(scope='module')
def model():
    from models import load_model
    return load_model(str(ROOT / 'trained_models'), MODEL)


def test_predict_with_refine_refines_the_network_output_whole_and_tiled(model):
    """predict(refine=True) is `refine` of the network's output with the network's probe
    (its divergence and its response, which the DCT Wiener candidates use), whole and
    tiled."""
    from utils.prediction.refine import Probe
    clean, noisy, _ = scene((64, 96), sigma=10.0)
    plain = model.predict(noisy)
    probe = model.restored_predictor().probe(((noisy - noisy.mean()) / noisy.std())[..., None]
                                             .astype(np.float32))
    d = probe.divergence
    assert 0 < d < 0.5  # a Noise2Same network: nearly, not exactly, blind to the pixel itself
    grey = Probe(probe.crop, probe.direction[..., 0], probe.response[..., 0])
    np.testing.assert_allclose(model.predict(noisy, refine=True),
                               refine(noisy, plain, divergence=d, probe=grey), atol=1e-3)
    tiled = model.crop_predict(noisy, 48, 8)
    np.testing.assert_allclose(model.crop_predict(noisy, 48, 8, refine=True),
                               refine(noisy, tiled, divergence=d, probe=grey), atol=1e-3)


def test_a_shipped_networks_divergence_probe_needs_one_pass(model):
    """The shipped network's receptive field ends within the probe's margin: the probe with
    the whole image's output (one pass) measures what it measures with two, on an image
    larger than the crop (padded on both sides to the network's multiple)."""
    from utils.prediction.tiling import PadAndCropResizer
    _, noisy, _ = scene((203, 250), sigma=20.0)
    z = ((noisy - noisy.mean()) / noisy.std())[..., None].astype(np.float32)
    predictor = model.restored_predictor()
    resizer = PadAndCropResizer()
    whole = resizer.after(predictor.run(resizer.before(z, predictor.multiple,
                                                       exclude=-1)[None])[0], exclude=-1)
    assert predictor.divergence(z, output=whole) == pytest.approx(predictor.divergence(z),
                                                                  abs=1e-5)


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
    for name, bounds in (('low', [0.05, 0.15]), ('mid', [0.3, 0.7]), ('unrecorded', None),
                         ('earlier', [0.3, 0.7])):
        shutil.copytree(ROOT / 'trained_models' / MODEL, base / name)
        settings = json.loads((base / name / 'settings.json').read_text())
        settings['training'].pop('relative_noise', None)
        settings['training'].pop('relative_noise_estimator', None)
        if bounds:
            settings['training']['relative_noise'] = bounds
        if name in ('low', 'mid'):
            settings['training']['relative_noise_estimator'] = fit.ESTIMATOR
        (base / name / 'settings.json').write_text(json.dumps(settings))
    clean, noisy, _ = scene((128, 128), sigma=3.0)
    rel = relative_noise(noisy)
    assert rel == pytest.approx(3.0 / noisy.std(), rel=0.2)  # the noise added over the std
    # and so in any units: a normalised image (mean 0) measures as its raw values do
    assert relative_noise((noisy - noisy.mean()) / noisy.std()) == pytest.approx(rel, rel=0.02)
    # colour: the noise over the std of the whole image, channel means apart included
    rgb = np.stack([noisy + 100, noisy, noisy - 60], -1)
    assert relative_noise(rgb) == pytest.approx(3.0 / rgb.std(), rel=0.2)
    read = lambda name: json.loads((base / name / 'settings.json').read_text())
    assert fit.unfit_message('mid', read('mid'), noisy[:2], 2, str(base), 'x') is None  # tiny
    message = fit.unfit_message('mid', read('mid'), noisy, 2, str(base), 'x.png')
    assert message.startswith('note: x.png:') and 'below the 0.30-0.70' in message
    assert 'models that fit: low' in message
    assert fit.unfit_message('low', read('low'), noisy, 2, str(base), 'x.png') is None
    assert fit.unfit_message('unrecorded', read('unrecorded'), noisy, 2, str(base), 'x') is None
    # a range measured by the estimator before (no relative_noise_estimator): not compared
    assert fit.unfit_message('earlier', read('earlier'), noisy, 2, str(base), 'x') == (
        "note: earlier's training noise range was measured by an earlier estimator and is not "
        f"used; record it again: python -m n2s_app.fit {base / 'earlier'}")
    assert 'models that fit: low' in fit.unfit_message('mid', read('mid'), noisy, 2, str(base),
                                                       'x')  # not 'earlier'
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
            PSNR(image.clean, model.predictor.refine(image.noisy, plain)[0]), abs=1e-3)


def test_the_bm3d_stage_is_bm3ds_wiener_stage_under_the_noise_model():
    """--refine bm3d (utils/prediction/bm3d_stage.py): for Gaussian noise the bm3d package's
    Wiener stage at std sqrt(b) with the pilot; for Poisson-Gaussian noise the same on the
    generalised Anscombe transform with the known peak and read noise (`baselines.on_anscombe`,
    an independent route); above its pilot on a known scene either way."""
    import bm3d
    from scipy.ndimage import gaussian_filter

    from utils.core.noise import anscombe
    from utils.evaluation.baselines import on_anscombe
    from utils.prediction.bm3d_stage import bm3d_wiener
    clean = data.camera()[160:256, 160:288].astype(np.float64)
    rng = np.random.default_rng(3)
    noisy = clean + rng.normal(0, 10, clean.shape)
    pilot = gaussian_filter(noisy, 1.5)
    got = bm3d_wiener(noisy, pilot, NoiseModel(np.zeros(1), np.array([100.0]), np.zeros(1)))
    np.testing.assert_allclose(got, bm3d.bm3d(noisy, sigma_psd=10.0, stage_arg=pilot), atol=1e-3)
    assert PSNR(clean, got) > PSNR(clean, pilot) + 0.5
    peak, read = 40.0, 1.0  # 16 photons a pixel on average
    noisy = bsd68_build.poisson_gaussian(clean, peak, read, rng)
    pilot = gaussian_filter(noisy, 1.5)
    scale = 255 / peak  # var = scale * y + (read * scale)^2 on 0..255
    model = NoiseModel(np.array([scale]), np.array([(read * scale) ** 2]), np.zeros(1))
    want = on_anscombe(lambda z: bm3d.bm3d(z, sigma_psd=1.0, stage_arg=anscombe(
        np.clip(pilot, 0, None) / scale, read)), noisy, peak, read)
    got = bm3d_wiener(noisy, pilot, model)  # centred on the transform (not exactly equal)
    assert np.mean(np.abs(got - want)) < 0.5 and abs(PSNR(clean, got) - PSNR(clean, want)) < 0.1
    assert PSNR(clean, got) > PSNR(clean, pilot) + 0.5
    # a model that is Gaussian but for a tiny Poisson part (as fitted on Gaussian noise):
    # the transform's values are ~1e6, yet the output is the Gaussian path's
    noisy = clean + rng.normal(0, 50, clean.shape)
    pilot = gaussian_filter(noisy, 2.0)
    nearly = NoiseModel(np.array([1e-4]), np.array([2500.0]), np.zeros(1))
    gaussian = NoiseModel(np.zeros(1), np.array([2500.0]), np.zeros(1))
    assert abs(PSNR(clean, bm3d_wiener(noisy, pilot, nearly)) -
               PSNR(clean, bm3d_wiener(noisy, pilot, gaussian))) < 0.2
    # values below 0 (a colour-difference channel, an offset image) stay: filtered as Gaussian
    shifted = bm3d_wiener(noisy - 128, pilot - 128, nearly)
    assert shifted.min() < -100 and PSNR(clean - 128, shifted) > PSNR(clean - 128, pilot - 128)
    with pytest.raises(ValueError, match='2D images of one channel'):
        bm3d_wiener(noisy[None], pilot[None], model)
