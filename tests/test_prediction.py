"""Prediction (utils/prediction/predictor.Predictor) and the test-time self-ensemble, against numpy
re-computations and a network whose output is known."""
import numpy as np
import pytest

from models import Noise2Same
from utils.prediction.predictor import (dihedral_transforms, PredictOptions, Predictor,
                                        self_ensemble)

TINY = {'first_output_filters': 4}


def test_the_eight_transforms_are_distinct_and_inverted():
    x = np.arange(6 * 6).reshape(6, 6, 1).astype(np.float32)
    outputs = set()
    for forward, inverse in dihedral_transforms(2):
        y = forward(x)
        outputs.add(y.tobytes())
        np.testing.assert_array_equal(inverse(y), x)
    assert len(outputs) == 8
    # 3D: the last two spatial axes turn, the first stays
    v = np.arange(2 * 4 * 4).reshape(2, 4, 4, 1)
    for forward, inverse in dihedral_transforms(3):
        np.testing.assert_array_equal(forward(v)[0].sum(), v[0].sum())
        np.testing.assert_array_equal(inverse(forward(v)), v)


def test_self_ensemble_of_a_position_dependent_denoiser():
    """denoise adds a ramp along the rows: the ensemble averages the ramp over the 8 poses."""
    x = np.random.default_rng(0).normal(size=(5, 7, 1))

    def denoise(z):
        return z + np.arange(z.shape[0])[:, None, None]
    out = self_ensemble(denoise, x, dim=2)
    ramps = [np.arange(5)[:, None] + 0 * np.arange(7)[None], np.arange(7)[None] + 0 * np.arange(5)[:, None]]
    ramps += [r[::-1, ::-1] for r in ramps]
    expected_ramp = (2 * ramps[0] + 2 * ramps[1] + 2 * ramps[2] + 2 * ramps[3]) / 8
    np.testing.assert_allclose(out[..., 0], x[..., 0] + expected_ramp, atol=1e-5)


def test_model_tta_is_the_mean_over_rotated_and_flipped_predictions(tmp_path):
    rng = np.random.default_rng(1)
    model = Noise2Same(str(tmp_path), 'm', net_config=TINY)
    model.train(rng.normal(size=(2, 16, 16, 1)).astype(np.float32), [16, 16], batch_size=2,
                steps=1, verbose=False, seed=0)
    image = rng.normal(50, 10, size=(21, 30)).astype(np.float32)
    manual = []
    for k in range(4):
        for flip in (False, True):
            t = np.rot90(image, k)
            t = t[:, ::-1] if flip else t
            p = model.predict(np.ascontiguousarray(t), im_mean=image.mean(), im_std=image.std())
            p = p[:, ::-1] if flip else p
            manual.append(np.rot90(p, -k))
    np.testing.assert_allclose(model.predict(image, tta=True), np.mean(manual, 0), rtol=1e-5,
                               atol=1e-4)
    tiled = model.crop_predict(image, 16, 2, tta=True)
    assert tiled.shape == image.shape and np.isfinite(tiled).all()


def test_predictor_normalises_pads_and_maps_back():
    """With an identity network the prediction is the input, whatever the size."""
    predictor = Predictor(lambda batch: batch, dim=2, in_channels=1, multiple=8)
    image = np.random.default_rng(2).uniform(0, 255, (13, 29)).astype(np.float32)
    np.testing.assert_allclose(predictor.predict(image), image, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(predictor.predict(image, PredictOptions(tta=True)), image, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(predictor.crop_predict(image, PredictOptions(tile_size=16, margin=4)), image, rtol=1e-5, atol=1e-3)
    doubled = Predictor(lambda batch: 2 * batch, dim=2, in_channels=1, multiple=8)
    mean = image.mean()
    np.testing.assert_allclose(doubled.predict(image), 2 * (image - mean) + mean, rtol=1e-4,
                               atol=1e-2)
    with pytest.raises(ValueError, match='at least 8'):
        predictor.predict(np.zeros((4, 20)))
    with pytest.raises(ValueError, match='NaN or Inf'):
        predictor.predict(np.full((8, 8), np.nan))
