"""Mixed precision: 16-bit convolutions, float32 weights, outputs close to the TF1 reference,
and float16 loss scaling that skips overflowing steps."""
import numpy as np
import pytest

from conftest import REFERENCE_DIRS, require_reference
from models import Noise2Same
from utils.model_io.checkpoints import latest_checkpoint


@pytest.fixture(params=REFERENCE_DIRS or [None], ids=lambda p: p.name if p else 'missing')
def ref_dir(request):
    require_reference()
    return request.param


@pytest.mark.parametrize('precision,tolerance', [('mixed_bfloat16', 0.02), ('mixed_float16', 0.005)])
def test_mixed_precision_prediction_stays_close_to_the_original(ref_dir, precision, tolerance):
    arrays = np.load(ref_dir / 'reference.npz')
    model = Noise2Same(str(ref_dir), 'model', precision=precision)
    assert model.net.first_convolution.compute_dtype == precision.split('_')[1]
    assert all(w.dtype == 'float32' for w in model.model.weights)
    prediction = model.predict(arrays['image'])
    expected = arrays['prediction']
    assert prediction.dtype == np.float32
    error = np.max(np.abs(prediction - expected)) / (expected.max() - expected.min())
    assert 1e-6 < error <= tolerance  # 16-bit arithmetic: close, but not float32-exact


def test_float16_training_skips_an_overflowing_step_and_halves_the_scale(tmp_path):
    images = np.random.default_rng(0).normal(size=(4, 32, 32, 1)).astype(np.float32)
    model = Noise2Same(str(tmp_path), 'm', net_config={'first_output_filters': 4},
                       precision='mixed_float16')
    model.loss_scale.assign(1e30)  # float16 gradients overflow to Inf
    before = [w.numpy().copy() for w in model.model.trainable_weights]
    model.train(images, [16, 16], batch_size=2, steps=1, verbose=False, seed=0)
    assert int(model.global_step.numpy()) == 1
    assert float(model.loss_scale.numpy()) == pytest.approx(5e29)
    for w, b in zip(model.model.trainable_weights, before):
        np.testing.assert_array_equal(w.numpy(), b)
    # the scale is part of the checkpoint; with a finite scale the step updates the weights
    model = Noise2Same(str(tmp_path), 'm', precision='mixed_float16')
    model.restore(latest_checkpoint(str(tmp_path / 'm')))
    assert float(model.loss_scale.numpy()) == pytest.approx(5e29)
    fresh = Noise2Same(str(tmp_path), 'fresh', net_config={'first_output_filters': 4},
                       precision='mixed_float16')
    fresh.loss_scale.assign(1.0)
    start = [w.numpy().copy() for w in fresh.model.trainable_weights]
    fresh.train(images, [16, 16], batch_size=2, steps=1, verbose=False, seed=0)
    assert any(np.any(w.numpy() != b) for w, b in zip(fresh.model.trainable_weights, start))
    assert all(np.all(np.isfinite(w.numpy())) for w in fresh.model.trainable_weights)
