"""Adapting a model to the image being denoised (`n2s_app.adapt`, `test_single.py --adapt`):
it trains in memory only, keeps batch-norm statistics, restores the weights afterwards, lowers
the image's own loss, and writes nothing into the model directory."""
import hashlib
import os

import numpy as np
import pytest

from conftest import ROOT
from test_scripts import run

MODELS = ROOT / 'trained_models'


def folder_digest(folder):
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        digest.update(name.encode() + (folder / name).read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope='module')
def image():
    from skimage import data
    rng = np.random.default_rng(11)
    clean = data.camera()[100:196, 120:248].astype(np.float64)
    return clean + rng.normal(0, 25, clean.shape)


def test_load_model_gives_the_saved_class_and_its_loss():
    from models import Noise2Same, Noise2SamePro, load_model
    pro = load_model(str(MODELS), 'bsd68-N2SP')
    assert type(pro) is Noise2SamePro and pro.sigma_floor is not None
    assert type(load_model(str(MODELS), 'bsd68-N2S')) is Noise2Same


@pytest.mark.slow
def test_adapting_trains_in_memory_then_restores_the_weights(image):
    from models import load_model
    from n2s_app.adapt import adapted, normalised
    from utils.data.pipeline import mask_box_size, validation_batches
    before_files = folder_digest(MODELS / 'demo32-N2S')
    model = load_model(str(MODELS), 'demo32-N2S')
    model._restore_latest()
    weights = [w.numpy() for w in model.model.trainable_weights]
    statistics = [w.numpy() for w in model.model.non_trainable_weights]
    # the image's own loss on fixed masks, BN in inference mode, before and while adapted
    x = normalised(model, image)[None]
    batch = next(validation_batches(x, mask_box_size(model.mask_perc), seed=3))
    loss_before = model._current_losses(*batch, training=False)['loss']
    seen = []
    with adapted(model, image, steps=30, lr=2e-4, progress=lambda d, n: seen.append((d, n))):
        assert seen[-1] == (30, 30) and len(seen) == 30
        assert any(not np.array_equal(a, w.numpy())
                   for a, w in zip(weights, model.model.trainable_weights))
        for a, w in zip(statistics, model.model.non_trainable_weights):
            np.testing.assert_array_equal(a, w.numpy())  # BN statistics untouched
        loss_adapted = model._current_losses(*batch, training=False)['loss']
        denoised = model.predict(image)
    assert loss_adapted < loss_before
    assert denoised.shape == image.shape and np.isfinite(denoised).all()
    for a, w in zip(weights, model.model.trainable_weights):
        np.testing.assert_array_equal(a, w.numpy())  # restored on exit
    assert folder_digest(MODELS / 'demo32-N2S') == before_files


def test_the_image_noise_level_loss_uses_twice_its_blind_noise_estimate(image):
    """lmbd='image': rec + 2 s sqrt(inv), s = the blind noise std of the normalised image over
    its std (`relative_noise`; near the known 25 / the noisy crop's std), whatever lmbd the
    model (or its N2SP guard) carries; 'model' is the model's own loss."""
    import tensorflow as tf

    from models import load_model
    from n2s_app.adapt import adaptation_loss, normalised
    from utils.core.noise import relative_noise
    terms = {'reconstruction': tf.constant(0.3), 'invariance': tf.constant(0.04)}
    for name in ('demo32-N2S', 'bsd68-N2SP'):
        model = load_model(str(MODELS), name)
        x = normalised(model, image)
        s = relative_noise(x[..., 0])
        assert s == pytest.approx(25 / image.std(), rel=0.1)  # the noise added: sigma 25
        np.testing.assert_allclose(float(adaptation_loss(model, x, 'image')(terms)),
                                   0.3 + 2 * s * 0.2, rtol=1e-5)
        np.testing.assert_allclose(float(adaptation_loss(model, x, 'model')(terms)),
                                   float(model.loss(terms)), rtol=1e-6)
    with pytest.raises(ValueError, match="lmbd must be one of"):
        adaptation_loss(model, x, 'other')


def test_adapting_refuses_images_too_small_and_bad_settings():
    from models import load_model
    from n2s_app.adapt import adapted
    model = load_model(str(MODELS), 'demo32-N2S')
    with pytest.raises(ValueError, match='too small to adapt'):
        with adapted(model, np.zeros((5, 40)), steps=1):
            pass
    with pytest.raises(ValueError, match='steps >= 1 and lr > 0'):
        with adapted(model, np.zeros((64, 64)), steps=1, lr=0):
            pass


@pytest.mark.slow
def test_test_single_adapt_writes_the_output_and_leaves_the_model_alone(tmp_path, image):
    """--adapt 3 writes an output that differs from the same run without --adapt (measured:
    0.99 grey levels on average, 70 % of the pixels; an ignored flag gives 0), and the model
    directory is left as it was."""
    from PIL import Image
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(tmp_path / 'in.png')
    before = folder_digest(MODELS / 'bsd68-N2SP')
    result = run(ROOT / 'test_single.py', tmp_path / 'in.png', '--name', 'bsd68-N2SP',
                 '--adapt', 3)
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.exists(tmp_path / 'in_denoised.png')
    assert folder_digest(MODELS / 'bsd68-N2SP') == before
    plain = run(ROOT / 'test_single.py', tmp_path / 'in.png', '--name', 'bsd68-N2SP',
                '--output', tmp_path / 'plain.png', '--figure', tmp_path / 'plain_figure.png')
    assert plain.returncode == 0, plain.stderr[-2000:]
    adapted_out, plain_out = (np.asarray(Image.open(tmp_path / name)).astype(np.float64)
                              for name in ('in_denoised.png', 'plain.png'))
    assert adapted_out.shape == plain_out.shape == image.shape
    change = np.abs(adapted_out - plain_out)
    assert change.mean() > 0.25 and np.mean(change > 0) > 0.2, (change.mean(),
                                                                np.mean(change > 0))
