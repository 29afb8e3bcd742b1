"""The port against artifacts of the ORIGINAL TF1.15 code (../shared/reference/tf1)."""
import json
import shutil

import numpy as np
import pytest

from conftest import REFERENCE, REFERENCE_DIRS, require_reference
from models import Noise2Same, Noise2SamePro
from network import DenoisingNetwork
from network_configure import merged_net_config
from utils.core.errors import CheckpointError


def load(ref_dir):
    return np.load(ref_dir / 'reference.npz'), json.loads((ref_dir / 'reference.json').read_text())


@pytest.fixture(params=REFERENCE_DIRS or [None], ids=lambda p: p.name if p else 'missing')
def ref_dir(request):
    require_reference()
    return request.param


def test_tf1_checkpoint_reproduces_original_prediction(ref_dir):
    arrays, _ = load(ref_dir)
    model = Noise2Same(str(ref_dir), 'model')
    prediction = model.predict(arrays['image'])
    expected = arrays['prediction']
    assert prediction.shape == expected.shape
    value_range = expected.max() - expected.min()
    assert np.max(np.abs(prediction - expected)) <= 1e-4 * value_range


@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_tf1_checkpoint_reproduces_original_losses(ref_dir, mode):
    arrays, info = load(ref_dir)
    model = Noise2Same(str(ref_dir), 'model')
    batch = arrays['features'], arrays['noise'], arrays['mask']
    losses = model.compute_losses(*batch, training=(mode == 'train'))
    for key, expected in info['losses'][mode].items():
        assert losses[key] == pytest.approx(expected, rel=1e-4), key
    # training=True uses batch statistics but must update nothing
    before = [w.numpy().copy() for w in model.model.weights]
    assert model.compute_losses(*batch, training=(mode == 'train')) == losses
    for w, b in zip(model.model.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)


def test_settings_are_inferred_from_the_tf1_variables(ref_dir):
    _, info = load(ref_dir)
    model = Noise2Same(str(ref_dir), 'model')
    assert (model.dim, model.in_channels) == (info['dim'], info['in_channels'])
    assert model.net_config['first_output_filters'] == info['first_output_filters']
    # every variable of the original checkpoint has a counterpart of the same shape
    ours = {name: tuple(v.shape) for name, v in model.state.items()}
    for name, shape in info['variables']:
        assert ours.get(name) == tuple(shape), name
    assert len(ours) == len(info['variables']) + 1  # + the input pipeline's seed


def test_mismatched_constructor_argument_names_both_values(ref_dir):
    _, info = load(ref_dir)
    other = 3 if info['dim'] == 2 else 2
    with pytest.raises(CheckpointError, match=rf"dim={other}.*dim={info['dim']}"):
        Noise2Same(str(ref_dir), 'model', dim=other)
    with pytest.raises(CheckpointError, match='first_output_filters'):
        Noise2Same(str(ref_dir), 'model', net_config={'first_output_filters': 7})


def test_training_continues_a_tf1_checkpoint(ref_dir, tmp_path):
    arrays, info = load(ref_dir)
    shutil.copytree(ref_dir / 'model', tmp_path / 'model')
    model = Noise2SamePro(str(tmp_path), 'model')
    step0 = info['steps']
    patch = [8] * (info['dim'] - 2) + [16, 16] if info['dim'] == 3 else [16, 16]
    images = arrays['features'][..., :]
    model.train(images, patch, batch_size=2, steps=step0 + 2, save_steps=1, verbose=False)
    assert int(model.global_step.numpy()) == step0 + 2
    # the TF1 Adam state was loaded: its beta powers went on from the checkpoint's
    assert model.optimizer.beta1_power.numpy() == pytest.approx(0.9 ** (step0 + 3), rel=1e-5)
    files = {p.name for p in (tmp_path / 'model').iterdir()}
    assert f'model.ckpt-{step0}.index' in files and 'checkpoint.tf1' in files
    assert f'ckpt-{step0 + 2}.index' in files and 'settings.json' in files
    # a new object picks up the TF2 checkpoint and the settings
    again = Noise2Same(str(tmp_path), 'model')
    assert again.net_config == model.net_config
    again.predict(arrays['image'])
    assert again.loaded.endswith(f'ckpt-{step0 + 2}')


def test_variable_counts_match_the_original(tmp_path):
    require_reference()
    counts = json.loads((REFERENCE / 'tf1' / 'param_counts.json').read_text())
    for key, expected in counts.items():
        net = DenoisingNetwork(expected['dim'], expected['in_channels'],
                               merged_net_config(expected['overrides']))
        trainable = sum(int(np.prod(v.shape)) for v in net.trainable_weights)
        total = sum(int(np.prod(v.shape)) for v in net.weights)
        assert (trainable, total) == (expected['trainable'], expected['all_vars']), key
