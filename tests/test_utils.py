"""Prediction and evaluation helpers against numpy and scikit-image."""
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from utils.evaluation.metrics import get_scores, norm_minmse, PSNR, SSIM
from utils.prediction.tiling import get_coord, PadAndCropResizer
from utils.core.normalisation import PercentileNormaliser


@pytest.mark.parametrize('shape,exclude', [((45, 37), None), ((13, 30, 27), None),
                                           ((45, 37, 3), -1), ((4, 21, 19, 1), [0, -1])])
def test_resizer_pads_evenly_with_the_extra_pixel_at_the_end(shape, exclude):
    x = np.random.default_rng(0).normal(size=shape)
    resizer = PadAndCropResizer()
    padded = resizer.before(x, 8, exclude=exclude)
    excluded = [] if exclude is None else [e % x.ndim for e in np.atleast_1d(exclude)]
    for axis, size in enumerate(shape):
        if axis in excluded:
            assert padded.shape[axis] == size
            continue
        total = -size % 8
        assert padded.shape[axis] == size + total
    pads = [(0, 0) if a in excluded else ((-s % 8) // 2, -s % 8 - (-s % 8) // 2)
            for a, s in enumerate(shape)]
    np.testing.assert_array_equal(padded, np.pad(x, pads, mode='reflect'))
    np.testing.assert_array_equal(resizer.after(padded, exclude=exclude), x)


@pytest.mark.parametrize('shape,size,margin', [((3, 100, 90), 32, 4), ((50, 70), 64, 8),
                                               ((20, 20), 32, 4), ((2, 256, 300), 128, 16)])
def test_tiles_cover_every_pixel_exactly_once(shape, size, margin):
    covered = np.zeros(shape, int)
    for src, trg, mrg in get_coord(shape, size, margin):
        tile = np.zeros(shape)[src]
        assert tile.shape[-1] <= size and tile.shape[-2] <= size
        assert tile[mrg].shape == covered[trg].shape
        covered[trg] += 1
    assert np.all(covered == 1)


def test_psnr_is_the_0_255_formula():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 255, (20, 30))
    noisy = gt + rng.normal(0, 25, gt.shape)
    mse = np.mean((gt - noisy) ** 2)
    assert PSNR(gt, noisy) == pytest.approx(10 * np.log10(255 ** 2 / mse))
    assert SSIM(gt, noisy) == pytest.approx(structural_similarity(gt, noisy, data_range=255))


def test_care_scores_fit_the_prediction_affinely():
    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 1000, (40, 40)).astype(np.float32)
    x = gt + rng.normal(0, 50, gt.shape).astype(np.float32)
    # the fit makes the scores invariant to an affine change of the prediction
    np.testing.assert_allclose(get_scores(gt, x), get_scores(gt, 3 * x - 7), rtol=1e-4)
    g, fitted = norm_minmse(gt, x)
    xc = x - x.mean()
    scale = np.sum(xc * g) / np.sum(xc * xc)  # least squares through the origin
    np.testing.assert_allclose(fitted, scale * xc, rtol=1e-3, atol=1e-5)


def test_percentile_normaliser_round_trips():
    img = np.random.default_rng(2).uniform(0, 100, (16, 16, 2)).astype(np.float32)
    norm = PercentileNormaliser(2, 99.8)
    y = norm.before(img, 'YXC')
    assert np.percentile(y[..., 0], 2) == pytest.approx(0, abs=1e-5)
    np.testing.assert_allclose(norm.after(y), img, rtol=1e-5)


def test_atomic_folder_appears_whole_with_mkdirs_mode_or_not_at_all(tmp_path):
    import os

    from utils.core.files import atomic_folder
    with atomic_folder(str(tmp_path / 'new')) as tmp:
        (tmp_path / os.path.basename(tmp) / 'a.txt').write_text('x')
        assert not (tmp_path / 'new').exists()
    os.mkdir(tmp_path / 'plain')
    mode = lambda name: os.stat(tmp_path / name).st_mode & 0o777
    assert mode('new') == mode('plain') and (tmp_path / 'new' / 'a.txt').read_text() == 'x'
    with pytest.raises(RuntimeError):
        with atomic_folder(str(tmp_path / 'failed')):
            raise RuntimeError('interrupted')
    (tmp_path / 'taken').mkdir()
    (tmp_path / 'taken' / 'b.txt').write_text('keep')
    with pytest.raises(OSError):
        with atomic_folder(str(tmp_path / 'taken')) as tmp:
            (tmp_path / os.path.basename(tmp) / 'c.txt').write_text('y')
    assert (tmp_path / 'taken' / 'b.txt').read_text() == 'keep'
    assert sorted(os.listdir(tmp_path)) == ['new', 'plain', 'taken']  # no temporary left
