"""Training: two-phase N2S -> N2SP, exact resume, 3D and RGB models, prediction helpers."""
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import Noise2Same, Noise2SamePro
from utils.core.errors import CheckpointError
from utils.data.pipeline import mask_box_size, training_dataset

TINY = {'first_output_filters': 4}
FIT = dict(batch_size=4, save_steps=2, log_steps=1, verbose=False, seed=3)


def weights(model):
    return [w.numpy() for w in model.model.weights]


def test_two_phase_training_continues_the_same_checkpoint_with_the_n2sp_loss(tmp_path, noisy_images):
    Noise2Same(str(tmp_path), 'a', net_config=TINY).train(noisy_images, [16, 16], steps=3, **FIT)
    shutil.copytree(tmp_path / 'a', tmp_path / 'b')

    pro = Noise2SamePro(str(tmp_path), 'a')
    pro.train(noisy_images, [16, 16], steps=5, **FIT)
    assert int(pro.global_step.numpy()) == 5
    assert sorted(p.name for p in (tmp_path / 'a').glob('ckpt-*.index')) == ['ckpt-4.index',
                                                                               'ckpt-5.index']

    # Independent re-computation of step 4 (the first N2SP step) from checkpoint 3.
    def manual_step(n2sp: bool):
        ref = Noise2SamePro(str(tmp_path), 'b')
        ref.restore(str(tmp_path / 'b' / 'ckpt-3'))
        x, noise, mask = next(iter(training_dataset(noisy_images, [16, 16], 4, mask_box_size(0.5),
                                                    int(ref.seed.numpy()), 3, 4)))
        variables = ref.model.trainable_weights
        with tf.GradientTape() as tape:
            masked_pred = ref.model((1 - mask) * x + mask * noise, training=True)
            raw = ref.model(x, training=True)
            rec = tf.reduce_mean((raw - x) ** 2)
            inv = tf.reduce_sum((raw - masked_pred) ** 2 * mask) / tf.reduce_sum(mask)
            loss = rec + (2 * tf.sqrt(rec) if n2sp else 2.0) * tf.sqrt(inv)
        grads = tape.gradient(loss, variables)
        b1p, b2p = ref.optimizer.beta1_power.numpy(), ref.optimizer.beta2_power.numpy()
        assert b1p == pytest.approx(0.9 ** 4, rel=1e-5)  # the optimizer state came along
        out = []
        for g, v, m, s in zip(grads, variables, ref.optimizer.m, ref.optimizer.v):
            m = 0.9 * m.numpy() + 0.1 * g.numpy()
            s = 0.999 * s.numpy() + 0.001 * g.numpy() ** 2
            lr = 4e-4 * np.sqrt(1 - b2p) / (1 - b1p)
            # A bias feeding batch norm has a zero gradient up to float noise, which Adam
            # amplifies to a full step: such variables are not comparable.
            informative = np.abs(g.numpy()).max() > 1e-6
            out.append(v.numpy() - lr * m / (np.sqrt(s) + 1e-8) if informative else None)
        return out

    step4 = Noise2SamePro(str(tmp_path), 'a')
    step4.restore(str(tmp_path / 'a' / 'ckpt-4'))
    got = [v.numpy() for v in step4.model.trainable_weights]
    expected = manual_step(n2sp=True)
    assert sum(e is not None for e in expected) > len(expected) * 0.9
    for a, b in zip(got, expected):
        if b is not None:
            np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-4)
    assert not all(np.allclose(a, b, atol=2e-6, rtol=1e-4)
                   for a, b in zip(got, manual_step(n2sp=False)) if b is not None)


def test_resumed_training_ends_with_the_same_weights(tmp_path, noisy_images):
    keras.utils.set_random_seed(0)  # the same initial weights for both runs
    full = Noise2Same(str(tmp_path), 'full', net_config=TINY)
    full.train(noisy_images, [16, 16], steps=6, **FIT)
    keras.utils.set_random_seed(0)
    Noise2Same(str(tmp_path), 'part', net_config=TINY).train(noisy_images, [16, 16], steps=4, **FIT)
    resumed = Noise2Same(str(tmp_path), 'part')
    resumed.train(noisy_images, [16, 16], steps=6, **FIT)
    for a, b in zip(weights(full), weights(resumed)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_steps_is_the_global_step_to_stop_at(tmp_path, noisy_images, capsys):
    model = Noise2Same(str(tmp_path), 'm', net_config=TINY)
    model.train(noisy_images, [16, 16], steps=2, validation=noisy_images[:4], **FIT)
    model.train(noisy_images, [16, 16], steps=2, **FIT)
    assert 'nothing to do' in capsys.readouterr().out
    assert int(model.global_step.numpy()) == 2
    assert (tmp_path / 'm' / 'eval').is_dir()


@pytest.mark.parametrize('dim,channels,patch', [(3, 1, [8, 16, 16]), (2, 3, [16, 16])])
def test_3d_and_rgb_models_train_and_predict(tmp_path, dim, channels, patch):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, *[s + 4 for s in patch], channels)).astype(np.float32)
    model = Noise2Same(str(tmp_path), 'm', dim=dim, in_channels=channels, masking='donut',
                       net_config=TINY)
    model.train(images, patch, steps=2, validation=images[:2, :8, :16, :16], **FIT)
    loaded = Noise2Same(str(tmp_path), 'm')
    assert (loaded.dim, loaded.in_channels, loaded.masking) == (dim, channels, 'donut')
    image = 50 + 10 * rng.normal(size=[s + 3 for s in patch] + ([channels] if channels > 1 else []))
    out = loaded.predict(image)
    assert out.shape == image.shape and np.all(np.isfinite(out))
    # a stack predicted together equals single predictions with the same normalisation
    stack = np.stack([image, image[::-1].copy()])
    mean, std = stack.mean(), stack.std()
    batch = loaded.batch_predict(stack, im_mean=mean, im_std=std)
    np.testing.assert_allclose(batch[1], loaded.predict(stack[1], im_mean=mean, im_std=std),
                               atol=1e-4)
    # one tile covering the whole image is plain prediction
    tiled = loaded.crop_predict(image, size=64, margin=8)
    np.testing.assert_allclose(tiled, out, atol=1e-4)
    tiled = loaded.crop_predict(image, size=16, margin=4)
    assert tiled.shape == image.shape and np.all(np.isfinite(tiled))


def test_prediction_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match='no checkpoint'):
        Noise2Same(str(tmp_path), 'empty', net_config=TINY).predict(np.zeros((8, 8)))


def test_wrong_image_rank_is_a_clear_error(tmp_path, noisy_images):
    model = Noise2Same(str(tmp_path), 'm', net_config=TINY)
    model.train(noisy_images, [16, 16], steps=1, **FIT)
    with pytest.raises(ValueError, match=r'expected an image \(2 spatial axes\)'):
        model.predict(np.zeros((4, 8, 8, 3)))
    with pytest.raises(ValueError, match='NaN or Inf'):
        model.predict(np.full((8, 8), np.nan))
    constant = model.predict(np.full((9, 9), 7.0))  # std 0: no division by zero
    assert np.all(np.isfinite(constant)) and np.allclose(constant, 7.0, atol=0.5)


def test_per_image_n2sp_trains_and_keeps_its_setting(tmp_path, noisy_images):
    """Phase two with per_image trains (every trainable weight changes, all finite; finite
    losses), saves per_image and no single floor, and a resume without the argument keeps
    it."""
    from models import Noise2Same, Noise2SamePro
    from utils.core.settings import read_settings
    tiny = {'first_output_filters': 4}
    first = Noise2Same(str(tmp_path), 'm', net_config=tiny)
    first.train(noisy_images, [16, 16], batch_size=4, steps=2, verbose=False, seed=3)
    before = [w.numpy() for w in first.model.trainable_weights]
    pro = Noise2SamePro(str(tmp_path), 'm', per_image=True)
    assert pro.train(noisy_images, [16, 16], batch_size=4, steps=4, verbose=False) == 2
    after = [w.numpy() for w in pro.model.trainable_weights]  # resumed from `before`
    assert int(pro.global_step.numpy()) == 4 and len(after) == len(before)
    assert all(np.isfinite(a).all() for a in after)
    changed = [not np.allclose(a, b, rtol=0, atol=1e-7) for a, b in zip(after, before)]
    assert all(changed), f'{changed.count(False)} of {len(changed)} weights unchanged'
    # the resumed Adam's momentum alone moves weights: one step with a fresh optimizer from
    # the same weights changes them only through the per-image loss's gradients
    fresh = Noise2SamePro(str(tmp_path), 'fresh', net_config=tiny, per_image=True)
    assert fresh.train(noisy_images, [16, 16], batch_size=4, steps=1, verbose=False,
                       init_from=str(tmp_path / 'm')) == 1
    moved = [not np.allclose(a, w.numpy(), rtol=0, atol=1e-7)
             for a, w in zip(after, fresh.model.trainable_weights)]
    assert all(moved), f'{moved.count(False)} of {len(moved)} weights without a gradient'
    saved = read_settings(str(tmp_path / 'm'))
    assert saved['per_image'] is True and saved['sigma_floor'] is None
    again = Noise2SamePro(str(tmp_path), 'm')
    assert again.per_image
    features = noisy_images[:2, :16, :16]
    losses = again.compute_losses(features, np.zeros_like(features), np.ones_like(features))
    assert np.isfinite(losses['loss']) and 'per_image' not in losses
