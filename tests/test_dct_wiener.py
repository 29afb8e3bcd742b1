"""The DCT Wiener filter with a pilot (utils/prediction/dct_wiener.py) and the refinement's
DCT Wiener candidates (utils/prediction/refine.py), against numpy re-computations: finite
differences, BM3D's Wiener formula on one patch, and Stein's risk with the divergence of the
whole chain by finite differences."""
import numpy as np
import pytest
from scipy.fft import dctn, idctn

from utils.prediction import refine as refine_module
from utils.prediction.dct_wiener import dct_wiener
from utils.prediction.refine import Probe, refine_with_report


def textured(shape=(40, 44), seed=0) -> np.ndarray:
    """A clean test scene on ~0..255: ramps, a disc and a grating."""
    yy, xx = np.mgrid[:shape[0], :shape[1]].astype(np.float64)
    disc = ((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2 < (shape[0] / 4) ** 2)
    return 60 + 2 * xx + 60 * disc + 30 * np.sin(xx / 2.0) * (yy > shape[0] / 2)


def test_one_patch_is_the_wiener_formula_of_its_dct_coefficients():
    """An 8 x 8 image is one patch: its output is idct(dct(x) * p^2 / (p^2 + v)) with the
    patch's mean kept, and its derivative the diagonal of that linear map."""
    rng = np.random.default_rng(1)
    clean = textured((8, 8))
    x = clean + rng.normal(0, 10, clean.shape)
    pilot = clean + rng.normal(0, 2, clean.shape)
    p = dctn(pilot - pilot.mean(), norm='ortho')
    gain = p * p / (p * p + 100.0)
    gain[0, 0] = 1
    want = idctn(dctn(x - pilot.mean(), norm='ortho') * gain, norm='ortho') + pilot.mean()
    got, derivative = dct_wiener(x, pilot, 100.0)
    np.testing.assert_allclose(got, want, atol=1e-3)
    diagonal = np.array([idctn(dctn(np.eye(64)[k].reshape(8, 8), norm='ortho') * gain,
                               norm='ortho').flat[k] for k in range(64)]).reshape(8, 8)
    np.testing.assert_allclose(derivative, diagonal, atol=1e-5)


@pytest.mark.parametrize('shape', [(40, 44), (23, 31), (2, 17, 20)])
def test_with_a_fixed_pilot_the_derivative_is_exact(shape):
    """The output is linear in x where the pilot is fixed: dy_i/dx_i by finite differences
    (a step at every pixel in turn) equals the derivative returned, also at the far edges,
    where the patch grid is padded, for any size and for a stack of planes; the noise
    variance may vary per pixel."""
    rng = np.random.default_rng(2)
    clean = np.broadcast_to(textured(shape[-2:]), shape)
    v = 20 + 0.3 * clean
    x = clean + rng.normal(0, 1, shape) * np.sqrt(v)
    pilot = clean + rng.normal(0, 2, shape)
    base, derivative = dct_wiener(x, pilot, v)
    numeric = np.zeros(shape)
    step = 0.5
    for i in range(x.size):
        moved = x.copy()
        moved.flat[i] += step
        numeric.flat[i] = (dct_wiener(moved, pilot, v)[0].flat[i] - base.flat[i]) / step
    np.testing.assert_allclose(derivative, numeric, atol=2e-3)
    assert 0 < derivative.min() and derivative.max() <= 1


def test_the_filter_removes_noise_given_a_good_pilot_at_any_offset_and_scale():
    """Given the clean image as pilot the filter removes most of white noise; an offset and a
    scale of the data change nothing else (float32 inside does not lose the noise)."""
    rng = np.random.default_rng(3)
    clean = textured((64, 72))
    x = clean + rng.normal(0, 20, clean.shape)
    out, _ = dct_wiener(x, clean, 400.0)
    assert np.mean((out - clean) ** 2) < 0.25 * np.mean((x - clean) ** 2)
    shifted, _ = dct_wiener(1e-3 * x + 5e4, 1e-3 * clean + 5e4, 400e-6)
    np.testing.assert_allclose((shifted - 5e4) / 1e-3, out, atol=0.05)
    with pytest.raises(ValueError, match='at least 8 x 8'):
        dct_wiener(np.zeros((6, 30)), np.zeros((6, 30)), 1.0)
    # no noise anywhere, or in part of the image: the input comes back there, finite
    np.testing.assert_allclose(dct_wiener(x, clean, 0.0)[0], x, atol=1e-3)
    half = np.full(x.shape, 400.0)
    half[:32] = 0
    out, derivative = dct_wiener(x, clean, half)
    assert np.isfinite(out).all() and np.isfinite(derivative).all()
    np.testing.assert_allclose(out[:24], x[:24], atol=1e-3)


@pytest.mark.parametrize('alpha', [0.0, 0.3])
def test_the_dct_candidates_risk_is_steins_with_the_whole_chains_divergence(alpha):
    """For a 'denoiser' f = alpha x + (1 - alpha) c (its probe response is alpha b, exactly),
    each DCT Wiener candidate's risk terms (fit + lin) estimate Stein's unbiased risk with
    the divergence of the whole chain (gate, pilot, filter) by finite differences: over 12
    probes within 3 % of the squared error (one probe's estimate scatters by ~5 % here; the
    refinement adds a safety margin, left out here); also where only some pixels are
    scored."""
    rng = np.random.default_rng(4)
    clean = textured((40, 44))
    v = np.full(clean.shape, 100.0)
    x = clean + rng.normal(0, 10, clean.shape)
    c = clean + rng.normal(0, 4, clean.shape)
    denoise = lambda z: alpha * z + (1 - alpha) * c
    f = denoise(x)
    scored = np.ones(x.shape, bool)
    scored[:, :6] = False
    best = ('window 5, strength 1', 0.0, 0.0, (5, 1.0))
    y, own = refine_module._output_derivative(best, x, f, v, alpha)
    probes = [rng.choice([-1.0, 1.0], x.shape) for _ in range(12)]
    runs = [refine_module._dct_candidates(x, f, v, best, y, own, alpha,
                                          Probe((slice(None), slice(None)), b, alpha * b),
                                          scored, safety=0.0) for b in probes]
    assert [name for name, *_ in runs[0]] == [
        'the DCT Wiener filter with pilot window 5, strength 1',
        'the mean of window 5, strength 1 and its DCT Wiener filter']

    def chain(z, which):
        pilot = refine_module.wiener(z, denoise(z), v, 5, 1.0)
        filtered = dct_wiener(z, pilot, v)[0]
        return filtered if which == 0 else (filtered + pilot) / 2
    for which in range(2):
        output = runs[0][which][4]
        np.testing.assert_allclose(output, chain(x, which), atol=1e-9)
        div, step = np.zeros(x.shape), 1e-2
        for i in range(x.size):
            moved = x.copy()
            moved.flat[i] += step
            div.flat[i] = (chain(moved, which).flat[i] - output.flat[i]) / step
        sure = ((output - x) ** 2 - v + 2 * v * div)[scored].sum()
        mse = ((output - clean) ** 2)[scored].sum()
        estimates = [run[which][1] + run[which][2] for run in runs]
        assert np.mean(estimates) == pytest.approx(sure, abs=0.03 * mse), runs[0][which][0]


def test_the_probes_estimate_is_taken_at_its_pessimistic_end():
    """`_upper_mean`: the mean of the probed terms plus PROBE_SAFETY standard errors, the
    error from block means: for independent terms of std 3 on a 30 x 30 lattice of a crop,
    within a third of 3 / sqrt(900); all terms equal: the mean itself."""
    rng = np.random.default_rng(6)
    terms = np.zeros((96, 96))
    probed = np.zeros((96, 96), bool)
    probed[3:93:3, 3:93:3] = True
    terms[probed] = 0.5 + rng.normal(0, 3, probed.sum())
    margin = refine_module._upper_mean(terms, probed) - terms[probed].mean()
    assert margin == pytest.approx(refine_module.PROBE_SAFETY * 3 / 30, rel=1 / 3)
    terms[probed] = 0.5
    assert refine_module._upper_mean(terms, probed) == pytest.approx(0.5)


def test_refine_offers_the_dct_wiener_candidates_only_with_a_probe():
    """Without a probe the refinement is the gate's; with one, on a smooth textured scene
    where the gate leaves noise, a DCT Wiener candidate is chosen and is better; a grey
    image's probe is taken without a channel axis."""
    rng = np.random.default_rng(5)
    clean = textured((96, 104))
    x = clean + rng.normal(0, 15, clean.shape)
    from scipy.ndimage import gaussian_filter
    f = gaussian_filter(x, 1.2)
    delta = np.zeros((9, 9))
    delta[4, 4] = 1
    d = float(gaussian_filter(delta, 1.2)[4, 4])
    b = rng.choice([-1.0, 1.0], x.shape)
    response = gaussian_filter(b, 1.2)  # a linear denoiser's exact response
    gate_only, (plain,) = refine_with_report(x, f, divergence=d)
    assert 'DCT' not in plain.choice
    out, (report,) = refine_with_report(x, f, divergence=d,
                                        probe=Probe((slice(None), slice(None)), b, response))
    assert 'DCT Wiener' in report.choice
    assert np.mean((out - clean) ** 2) < np.mean((gate_only - clean) ** 2)
    # a probe in another layout than the image's is refused, not broadcast
    with pytest.raises(ValueError, match="do not fit the image"):
        refine_with_report(x, f, divergence=d, probe=Probe((slice(None), slice(None)),
                                                           b[..., None], response[..., None]))
