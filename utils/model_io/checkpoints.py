"""Checkpoints: original TF1 Estimator checkpoints and this port's TF2 ones (settings.json:
utils/core/settings.py; settings inferred from a TF1 checkpoint: `infer_settings`).

Every variable of a model is known by its ORIGINAL TF1 name ('main_unet/first_convolution/kernel',
'<weight>/Adam', 'beta1_power', 'global_step', ...). A TF1 checkpoint is read by those names; a
TF2 checkpoint (tf.train.Checkpoint) stores the same dict, so both load through one mapping.
"""
import os
import re
import sys
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf

from utils.core.errors import CheckpointError
from utils.core.settings import read_settings

TF1_MARKER = 'main_unet/first_convolution/kernel'
TF1_STATE_BACKUP = 'checkpoint.tf1'


def tf1_variable_names(network) -> Iterator[Tuple[str, object]]:
    """(original TF1 name, Keras variable) for every weight of a `network.DenoisingNetwork`."""
    def walk(prefix, layer):
        if hasattr(layer, 'named_ops'):
            for name, op in layer.named_ops:
                yield from walk(f'{prefix}/{name}', op)
        else:
            for variable in layer.weights:
                yield f'{prefix}/{variable.name}', variable
    for scope, block in network.named_blocks():
        yield from walk(f'main_unet/{scope}', block)


def _unreadable(path: str, error: Exception) -> CheckpointError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CheckpointError(f"cannot read checkpoint {path} ({first}); it is truncated or "
                           f"corrupted: restore it from a copy or delete it to use an older one")


def latest_checkpoint(model_dir: str) -> Optional[str]:
    """Prefix of the newest checkpoint in `model_dir` (TF2 or TF1), or None."""
    if not os.path.isdir(model_dir):
        return None
    try:
        path = tf.train.latest_checkpoint(model_dir)
        if path is None and os.path.exists(os.path.join(model_dir, TF1_STATE_BACKUP)):
            path = tf.train.latest_checkpoint(model_dir, latest_filename=TF1_STATE_BACKUP)
    except Exception:  # a garbled 'checkpoint' index file: fall back to the files
        path = None
    if path is None:
        path = _newest_by_number(model_dir)
        if path is not None:
            print(f"warning: the index file {os.path.join(model_dir, 'checkpoint')} is missing or "
                  f"unreadable; using the newest checkpoint file {path}", file=sys.stderr)
    return path


def _newest_by_number(model_dir: str) -> Optional[str]:
    """The checkpoint prefix with the highest step number among ckpt-N / model.ckpt-N files."""
    steps = {}
    for name in os.listdir(model_dir):
        match = re.fullmatch(r'((?:model\.)?ckpt-(\d+))\.index', name)
        if match:
            steps[int(match.group(2))] = os.path.join(model_dir, match.group(1))
    return steps[max(steps)] if steps else None


def read_checkpoint(path: str) -> Dict[str, np.ndarray]:
    """All variables of a checkpoint as {original name: array}; TF1 and TF2 alike."""
    try:
        reader = tf.train.load_checkpoint(path)
        names = reader.get_variable_to_shape_map()
        if TF1_MARKER in names:
            return {name: reader.get_tensor(name) for name in names}
        prefix, suffix = 'state/', '/.ATTRIBUTES/VARIABLE_VALUE'
        values = {_unescape(key[len(prefix):-len(suffix)]): reader.get_tensor(key)
                  for key in names if key.startswith(prefix) and key.endswith(suffix)}
    except Exception as error:  # TensorFlow raises several types for damaged files
        raise _unreadable(path, error) from None
    if not values:
        raise CheckpointError(f"{path} is not a Noise2Same checkpoint (no 'main_unet' variables)")
    return values


def has_optimizer_state(path: str) -> bool:
    """False for a weights-only checkpoint (`Noise2Same.export_checkpoint`): no Adam slots."""
    try:  # names only: TF1 '<weight>/Adam', TF2 the same escaped ('.SAdam')
        return any('Adam' in name for name, _ in tf.train.list_variables(path))
    except Exception as error:
        raise _unreadable(path, error) from None


def is_tf1_checkpoint(path: str) -> bool:
    """True when the checkpoint at `path` was written by the original TF1 code."""
    try:
        return any(name == TF1_MARKER for name, _ in tf.train.list_variables(path))
    except Exception as error:
        raise _unreadable(path, error) from None


def _unescape(key: str) -> str:
    # tf.train.Checkpoint escapes '/' in dict keys as '.S' and '.' as '..'
    return re.sub(r'\.(.)', lambda m: {'S': '/', '.': '.'}[m.group(1)], key)


def infer_settings(variables: Dict[str, np.ndarray]) -> dict:
    """Model settings (dim, in_channels, net config) read off an original checkpoint's shapes."""
    first = variables[TF1_MARKER]
    dim = first.ndim - 2
    filters = int(first.shape[-1])
    has = lambda name: f'main_unet/{name}' in variables
    depth = 1
    while has(f'encoding_block_{depth + 1}/downsampling/convolution/kernel') or \
            has(f'encoding_block_{depth + 1}/downsampling/convolution_1/kernel'):
        depth += 1
    count = lambda scope: sum(1 for k in range(100) if has(f'{scope}/res_{k}/convolution_1/kernel'))
    downsampling = ['convolution' if has(f'encoding_block_{i}/downsampling/convolution/kernel')
                    else 'down_res_block' for i in range(2, depth + 1)]
    decoding = [count(f'decoding_block_{j}') for j in range(depth - 1, 0, -1)]
    # The layer after the first skip connection sees 2x the channels with 'concat'.
    j = depth - 1
    width = filters * 2 ** (j - 1)
    if decoding[0] > 0:
        after = variables[f'main_unet/decoding_block_{j}/res_0/batch_norm_1/gamma'].shape[-1]
    elif j > 1:
        after = variables[f'main_unet/decoding_block_{j - 1}/upsampling/transposed_convolution/kernel'].shape[-1]
    else:
        after = variables['main_unet/unet_out/gamma'].shape[-1]
    net_config = {
        'depth': depth, 'first_output_filters': filters,
        'encoding_block_sizes': [count(f'encoding_block_{i}') for i in range(1, depth + 1)],
        'decoding_block_sizes': decoding, 'downsampling': downsampling,
        'skip_method': 'concat' if after == 2 * width else 'add',
    }
    return {'dim': dim, 'in_channels': int(first.shape[-2]), 'net_config': net_config}


def backup_tf1_state(model_dir: str) -> None:
    """Move an original 'checkpoint' index file aside (to 'checkpoint.tf1') before TF2 writes its
    own, so tf.train.CheckpointManager neither overwrites nor deletes the original files."""
    state = os.path.join(model_dir, 'checkpoint')
    path = tf.train.latest_checkpoint(model_dir)
    if path is not None and is_tf1_checkpoint(path):
        os.replace(state, os.path.join(model_dir, TF1_STATE_BACKUP))


def saved_settings(model_dir: str) -> dict:
    """The settings of a model directory: its settings.json, else those inferred from an
    original TF1 checkpoint, else {} (a new model)."""
    settings = read_settings(model_dir)
    if settings is not None:
        return settings
    path = latest_checkpoint(model_dir)
    if path is not None and is_tf1_checkpoint(path):
        return infer_settings(read_checkpoint(path))
    return {}
