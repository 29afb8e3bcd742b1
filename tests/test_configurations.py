"""Every network option, original checkpoints of other configurations, BN updates, logging."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import REFERENCE_DIRS
from models import Noise2Same
from network import DenoisingNetwork
from network_configure import merged_net_config
from utils.model_io.checkpoints import infer_settings, read_checkpoint, tf1_variable_names

CONFIGS = [
    {'first_output_filters': 4},
    {'first_output_filters': 4, 'relu_type': 'relu6', 'skip_method': 'add'},
    {'first_output_filters': 3, 'downsampling': ['down_res_block', 'convolution']},
    {'first_output_filters': 2, 'depth': 4, 'encoding_block_sizes': [2, 1, 1, 0],
     'decoding_block_sizes': [1, 0, 2], 'downsampling': ['down_res_block'] * 3,
     'skip_method': 'add'},
    {'first_output_filters': 2, 'decoding_block_sizes': [0, 0]},
]


def original_variables(dim, channels, conf):
    """{name: shape} of the weights the original TF1 code (network.py, resnet_module.py and
    models.py of divelab/Noise2Same; ../shared/REFERENCE.md sections 3-4) creates for a
    configuration, written here from that description, not from the port's layers."""
    k = lambda size: [size] * dim  # a kernel's spatial axes
    found = {}

    def batch_norm(scope, width):
        for name in ('beta', 'gamma', 'moving_mean', 'moving_variance'):
            found[f'{scope}/{name}'] = [width]

    def res_block(scope, width, out, down=False):  # pre-activation; down: down_res_block
        batch_norm(f'{scope}/batch_norm_1', width)
        if down or width != out:
            found[f'{scope}/projection_shortcut/kernel'] = k(1) + [width, out]
        found[f'{scope}/convolution_1/kernel'] = k(2 if down else 3) + [width, out]
        batch_norm(f'{scope}/batch_norm_2', out)
        found[f'{scope}/convolution_2/kernel'] = k(3) + [out, out]
        return out

    F, depth, top = conf['first_output_filters'], conf['depth'], 'main_unet'
    found[f'{top}/first_convolution/kernel'] = k(3) + [channels, F]
    width, skips = F, []
    for block in range(conf['encoding_block_sizes'][0]):
        width = res_block(f'{top}/encoding_block_1/res_{block}', width, F)
    for i in range(2, depth + 1):
        skips.append(width)
        scope, out = f'{top}/encoding_block_{i}', F * 2 ** (i - 1)
        if conf['downsampling'][i - 2] == 'down_res_block':
            width = res_block(f'{scope}/downsampling', width, out, down=True)
        else:
            found[f'{scope}/downsampling/convolution/kernel'] = k(2) + [width, out]
            found[f'{scope}/downsampling/convolution/bias'] = [out]
            width = out
        for block in range(conf['encoding_block_sizes'][i - 1]):
            width = res_block(f'{scope}/res_{block}', width, out)
    width = res_block(f'{top}/bottom_block/block_0', width, F * 2 ** (depth - 1))
    for j in range(depth - 1, 0, -1):
        scope, out = f'{top}/decoding_block_{j}', F * 2 ** (j - 1)
        found[f'{scope}/upsampling/transposed_convolution/kernel'] = k(2) + [out, width]
        found[f'{scope}/upsampling/transposed_convolution/bias'] = [out]
        width = out + (skips[j - 1] if conf['skip_method'] == 'concat' else 0)
        for block in range(conf['decoding_block_sizes'][depth - 1 - j]):
            width = res_block(f'{scope}/res_{block}', width, out)
    batch_norm(f'{top}/unet_out', width)
    found[f'{top}/out_conv/kernel'] = k(1) + [width, channels]
    return found


def write_tf1_checkpoint(network, path, names):
    """Save `network` as the original TF1 code did: a V2 bundle keyed by the scope names
    `names` (those of `original_variables`), each holding the port's weight of that name."""
    port = dict(tf1_variable_names(network))
    tensors = {name: port[name] for name in names}
    tensors['global_step'] = tf.constant(7, dtype=tf.int64)
    tf.raw_ops.SaveV2(prefix=path, tensor_names=list(tensors),
                      shape_and_slices=[''] * len(tensors),
                      tensors=[tf.convert_to_tensor(v) for v in tensors.values()])


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
    # the port names and shapes its weights as the original code does
    original = original_variables(dim, channels, conf)
    assert {name: list(v.shape) for name, v in tf1_variable_names(net)} == original
    for ref in REFERENCE_DIRS if overrides == CONFIGS[0] else []:  # the description above,
        info = json.loads((ref / 'reference.json').read_text())    # against the original's
        if (info['dim'], info['in_channels']) == (dim, channels):  # TF1 checkpoints
            saved = {n: s for n, s in tf.train.list_variables(str(ref / 'model'))
                     if n.startswith('main_unet/') and not n.endswith(('/Adam', '/Adam_1'))}
            assert original_variables(dim, channels, merged_net_config(
                {'first_output_filters': info['first_output_filters']})) == saved, ref.name
    # an original-style checkpoint of this configuration: settings inferred, outputs equal
    model_dir = tmp_path / 'model'
    model_dir.mkdir()
    write_tf1_checkpoint(net, str(model_dir / 'model.ckpt-7'), original)
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
