"""Loss terms and masking against numpy re-computations."""
import numpy as np
import pytest
import tensorflow as tf

from models import Noise2Same, Noise2SamePro

TINY = {'first_output_filters': 4}


def batch(shape=(2, 16, 16, 1), seed=0, masked=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(np.float32)
    noise = (0.2 * rng.normal(size=shape)).astype(np.float32)
    mask = (rng.random(shape) < 0.05).astype(np.float32) if masked else np.zeros(shape, np.float32)
    return x, noise, mask


def numpy_terms(x, raw, masked, mask):
    return {'reconstruction': np.mean((raw - x) ** 2),
            'invariance': np.sum((raw - masked) ** 2 * mask) / np.sum(mask),
            'blind_spot': np.sum((x - masked) ** 2 * mask) / np.sum(mask)}


@pytest.mark.parametrize('masking', ['gaussian', 'donut'])
def test_terms_and_losses_match_numpy(tmp_path, masking):
    x, noise, mask = batch()
    model = Noise2Same(str(tmp_path), 'm', masking=masking, lmbd=1.5, net_config=TINY)
    terms, raw, masked = model.loss_terms(tf.constant(x), tf.constant(noise), tf.constant(mask),
                                          training=False)
    if masking == 'gaussian':
        replacement = noise
    else:
        from scipy import ndimage
        kernel = np.array([[0.5, 1, 0.5], [1, 0, 1], [0.5, 1, 0.5]]) / 6
        replacement = np.stack([ndimage.correlate(x[b, ..., 0], kernel, mode='constant')
                                for b in range(2)])[..., None]
    masked_input = (1 - mask) * x + mask * replacement
    np.testing.assert_allclose(masked.numpy(), model.model(masked_input).numpy(), atol=1e-5)
    np.testing.assert_allclose(raw.numpy(), model.model(x).numpy(), atol=1e-6)
    expected = numpy_terms(x, raw.numpy(), masked.numpy(), mask)
    for key, value in expected.items():
        assert float(terms[key]) == pytest.approx(value, rel=1e-5)
    rec, inv = expected['reconstruction'], expected['invariance']
    assert float(model.loss(terms)) == pytest.approx(rec + 1.5 * np.sqrt(inv), rel=1e-5)
    pro = Noise2SamePro(str(tmp_path), 'p', net_config=TINY)
    assert float(pro.loss(terms)) == pytest.approx(rec + 2 * np.sqrt(rec) * np.sqrt(inv), rel=1e-5)


def test_default_lambda_is_two(tmp_path):
    model = Noise2Same(str(tmp_path), 'm', net_config=TINY)
    terms = {'reconstruction': tf.constant(0.5), 'invariance': tf.constant(0.04)}
    assert float(model.loss(terms)) == pytest.approx(0.5 + 2 * 0.2)


@pytest.mark.parametrize('cls', [Noise2Same, Noise2SamePro])
def test_a_batch_without_masked_pixels_gives_finite_loss_and_gradients(tmp_path, cls):
    x, noise, mask = batch(masked=False)
    model = cls(str(tmp_path), 'm', net_config=TINY)
    with tf.GradientTape() as tape:
        terms, _, _ = model.loss_terms(tf.constant(x), tf.constant(noise), tf.constant(mask),
                                       training=True)
        loss = model.loss(terms)
    grads = tape.gradient(loss, model.model.trainable_weights)
    assert np.isfinite(float(loss)) and float(terms['invariance']) == 0.0
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)


def test_sigma_gradient_can_be_stopped(tmp_path):
    x, noise, mask = batch()
    grads = {}
    for flag in (True, False):
        model = Noise2SamePro(str(tmp_path), 'p', sigma_grad=flag, net_config=TINY)
        model.model.set_weights(Noise2SamePro(str(tmp_path), 'q', net_config=TINY)
                                .model.get_weights() if not grads else grads['weights'])
        with tf.GradientTape() as tape:
            terms, _, _ = model.loss_terms(x, noise, mask, training=False)
            loss = model.loss(terms)
        grads[flag] = tape.gradient(loss, model.model.trainable_weights)[0].numpy()
        grads['weights'] = model.model.get_weights()
    assert not np.allclose(grads[True], grads[False])


def test_n2sp_guard_floors_the_sigma_estimate(tmp_path):
    """loss = rec + 2 * max(sqrt(rec), floor) * sqrt(inv); the original has no floor."""
    import tensorflow as tf
    terms = {'reconstruction': tf.constant(0.04), 'invariance': tf.constant(0.09)}
    floored = Noise2SamePro(str(tmp_path), 'a', net_config=TINY, sigma_floor=0.5)
    assert float(floored.loss(terms)) == pytest.approx(0.04 + 2 * 0.5 * 0.3, rel=1e-6)
    above = Noise2SamePro(str(tmp_path), 'b', net_config=TINY, sigma_floor=0.1)
    assert float(above.loss(terms)) == pytest.approx(0.04 + 2 * 0.2 * 0.3, rel=1e-6)
    original = Noise2SamePro(str(tmp_path), 'c', net_config=TINY, guard=False, sigma_floor=0.5)
    assert original.sigma_floor is None
    assert float(original.loss(terms)) == pytest.approx(0.04 + 2 * 0.2 * 0.3, rel=1e-6)


def test_n2sp_guard_is_measured_at_the_switch_and_kept_on_resume(tmp_path, noisy_images):
    """The floor is sqrt(mean rec) of the phase-one weights over the next training batches
    (recomputed here through compute_losses on the same batches), saved, and reused."""
    from utils.core.settings import read_settings
    from utils.data.pipeline import mask_box_size, training_dataset
    Noise2Same(str(tmp_path), 'm', net_config=TINY).train(
        noisy_images, [16, 16], batch_size=4, steps=2, verbose=False, seed=3)
    phase_one = Noise2Same(str(tmp_path), 'm')
    recs = [phase_one.compute_losses(f, n, m, training=True)['reconstruction'] for f, n, m in
            training_dataset(noisy_images, [16, 16], 4, mask_box_size(0.5), 3, 2,
                             2 + Noise2SamePro.GUARD_BATCHES)]
    pro = Noise2SamePro(str(tmp_path), 'm')
    pro.train(noisy_images, [16, 16], batch_size=4, steps=3, verbose=False)
    floor = read_settings(str(tmp_path / 'm'))['sigma_floor']
    assert floor == pytest.approx(np.sqrt(np.mean(recs)), rel=1e-4)
    again = Noise2SamePro(str(tmp_path), 'm')
    assert again.sigma_floor == floor
    again.train(noisy_images, [16, 16], batch_size=4, steps=4, verbose=False)
    assert read_settings(str(tmp_path / 'm'))['sigma_floor'] == floor


def test_per_image_n2sp_loss_matches_numpy(tmp_path):
    """per_image: mean_i(rec_i + 2 max(sqrt(rec_i), 0.5 n_i) sqrt(inv_i)) with each image's own
    terms, n_i the median |finest diagonal Haar coefficient| / 0.6745, recomputed in numpy; the
    batch terms stay those of the whole batch."""
    x, noise, mask = batch(shape=(3, 16, 16, 1), seed=4)
    x[1] *= 0.05  # a low-noise image: its own sigma, not the batch's
    model = Noise2SamePro(str(tmp_path), 'p', net_config=TINY, per_image=True)
    terms, raw, masked = model.loss_terms(tf.constant(x), tf.constant(noise), tf.constant(mask),
                                          training=False)
    raw, masked = raw.numpy(), masked.numpy()
    expected = numpy_terms(x, raw, masked, mask)
    for key, value in expected.items():
        assert float(terms[key]) == pytest.approx(value, rel=1e-5)
    losses = []
    for i in range(3):
        each = numpy_terms(x[i], raw[i], masked[i], mask[i])
        d = (x[i, 0::2, 0::2] - x[i, 0::2, 1::2] - x[i, 1::2, 0::2] + x[i, 1::2, 1::2]) / 2
        n = np.sort(np.abs(d).ravel())[d.size // 2] / 0.6745
        sigma = max(np.sqrt(each['reconstruction']), 0.5 * n)
        losses.append(each['reconstruction'] + 2 * sigma * np.sqrt(each['invariance']))
    assert float(model.loss(terms)) == pytest.approx(np.mean(losses), rel=1e-5)
    unguarded = Noise2SamePro(str(tmp_path), 'q', net_config=TINY, per_image=True, guard=False)
    each = terms['per_image']
    assert float(unguarded.loss(terms)) == pytest.approx(np.mean(
        each['reconstruction'] + 2 * np.sqrt(each['reconstruction'] * each['invariance'])), rel=1e-5)


def test_haar_noise_estimate_finds_white_noise_of_each_image():
    from models import haar_noise_std
    rng = np.random.default_rng(1)
    flat = np.stack([s * rng.normal(size=(64, 64, 1)) for s in (0.1, 1.0, 3.0)]).astype(np.float32)
    np.testing.assert_allclose(haar_noise_std(tf.constant(flat)).numpy(), [0.1, 1.0, 3.0], rtol=0.1)
