"""Every network option, original checkpoints of other configurations, BN updates, logging."""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from models import Noise2Same
from network import DenoisingNetwork
from network_configure import merged_net_config
from utils.checkpoint_utils import infer_settings, read_checkpoint, tf1_variable_names

CONFIGS = [
    {'first_output_filters': 4},
    {'first_output_filters': 4, 'relu_type': 'relu6', 'skip_method': 'add'},
    {'first_output_filters': 3, 'downsampling': ['down_res_block', 'convolution']},
    {'first_output_filters': 2, 'depth': 4, 'encoding_block_sizes': [2, 1, 1, 0],
     'decoding_block_sizes': [1, 0, 2], 'downsampling': ['down_res_block'] * 3,
     'skip_method': 'add'},
    {'first_output_filters': 2, 'decoding_block_sizes': [0, 0]},
]


def write_tf1_checkpoint(network, path):
    """Save `network` as the original TF1 code did: a V2 bundle keyed by the scope names."""
    names = dict(tf1_variable_names(network))
    names['global_step'] = tf.constant(7, dtype=tf.int64)
    tf.raw_ops.SaveV2(prefix=path, tensor_names=list(names),
                      shape_and_slices=[''] * len(names),
                      tensors=[tf.convert_to_tensor(v) for v in names.values()])


@pytest.mark.parametrize('overrides', CONFIGS, ids=lambda c: '-'.join(f'{k}' for k in c))
@pytest.mark.parametrize('dim,channels', [(2, 1), (3, 2)])
def test_every_option_builds_runs_and_is_recognised_in_an_original_checkpoint(
        tmp_path, overrides, dim, channels):
    conf = merged_net_config(overrides)
    net = DenoisingNetwork(dim, channels, conf)
    size = [2 ** conf['depth']] * dim
    x = np.random.default_rng(0).normal(size=[2, *size, channels]).astype(np.float32)
    assert net(x, training=True).shape == x.shape
    names = [name for name, _ in tf1_variable_names(net)]
    assert len(names) == len(set(names)) == len(net.weights)
    # an original-style checkpoint of this configuration: settings inferred, outputs equal
    model_dir = tmp_path / 'model'
    model_dir.mkdir()
    write_tf1_checkpoint(net, str(model_dir / 'model.ckpt-7'))
    (model_dir / 'checkpoint').write_text('model_checkpoint_path: "model.ckpt-7"\n')
    inferred = infer_settings(read_checkpoint(str(model_dir / 'model.ckpt-7')))
    assert (inferred['dim'], inferred['in_channels']) == (dim, channels)
    for key, value in inferred['net_config'].items():
        assert value == conf[key], key
    model = Noise2Same(str(tmp_path), 'model', net_config={'relu_type': conf['relu_type']})
    image = x[0] if channels > 1 else x[0, ..., 0]
    expected = net(((image - image.mean()) / image.std()).reshape(x[:1].shape)).numpy()[0]
    got = (model.predict(image) - image.mean()) / image.std()
    np.testing.assert_allclose(got.reshape(expected.shape), expected, atol=1e-4)


def test_both_forward_passes_update_the_batch_norm_averages(tmp_path, noisy_images):
    model = Noise2Same(str(tmp_path), 'm', net_config={'first_output_filters': 4})
    x = tf.constant(noisy_images[:4, :16, :16])
    noise = 0.2 * tf.random.stateless_normal(x.shape, [1, 2])
    mask = tf.cast(tf.random.stateless_uniform(x.shape, [3, 4]) < 0.05, tf.float32)
    masked = (1 - mask) * x + mask * noise
    # inputs of the head's batch norm in each pass (batch statistics, weights before the step)
    head_inputs = [model.net(v, training=True).numpy() for v in (masked, x)]
    m0 = model.model.unet_out.moving_mean.numpy()
    v0 = model.model.unet_out.moving_variance.numpy()
    model._train_step(x, noise, mask)
    m, v = m0, v0
    for h in head_inputs:  # masked pass first, then raw; TF1 momentum and Bessel correction
        flat = h.reshape(-1, h.shape[-1])
        m = m - (m - flat.mean(0)) * (1 - 0.997)
        v = v - (v - flat.var(0, ddof=1)) * (1 - 0.997)
    np.testing.assert_allclose(model.model.unet_out.moving_mean.numpy(), m, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.model.unet_out.moving_variance.numpy(), v, rtol=1e-5)


def test_tensorboard_gets_the_terms_learning_rate_images_and_validation(tmp_path, noisy_images):
    model = Noise2Same(str(tmp_path), 'm', net_config={'first_output_filters': 4})
    model.train(noisy_images, [16, 16], validation=noisy_images[:4], batch_size=2, steps=2,
                save_steps=2, log_steps=1, verbose=False, seed=0)

    def tags(folder):
        found = set()
        for path in glob.glob(os.path.join(folder, 'events.out.tfevents.*')):
            for event in tf.compat.v1.train.summary_iterator(path):
                found |= {value.tag for value in event.summary.value}
        return found

    train_tags = tags(str(tmp_path / 'm'))
    assert {'loss_metric/reconstruction', 'loss_metric/invariance', 'loss_metric/blind_spot',
            'learning_rate', 'loss'} <= train_tags
    assert {'1_inputs', '2_raw_predictions', '3_mask', '4_masked_predictions', '5_difference',
            '6_rec_error'} <= train_tags
    assert {'loss_metric/reconstruction', 'loss_metric/invariance',
            'loss_metric/blind_spot'} <= tags(str(tmp_path / 'm' / 'eval'))
