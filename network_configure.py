"""Every knob of the network, with the original Noise2Same defaults.

The two dicts below are read, never mutated: a model merges its own overrides into a copy
(`merged_net_config`). Their layout follows the original `network_configure.py`:

    layers                                             | output filters
    first_convolution + encoding_block_1 (same)        | F = first_output_filters
    encoding_block_i (down), i = 2..depth              | F * 2**(i-1)
    bottom_block                                       | F * 2**(depth-1)
    decoding_block_j (up), j = depth-1..1              | F * 2**(j-1)
    head (network.py: BN, ReLU, 1x1 conv)              | in_channels

encoding_block_1 is one or more res_blocks; encoding_block_i is a downsampling followed by
zero or more res_blocks; decoding_block_j is a 2x2 stride-2 transposed convolution, the skip
connection ('add' or 'concat') with the output of encoding_block_j, then res_blocks.
"""
from typing import Any, Mapping, Optional

# Arithmetic of the U-Net's convolutions (Keras dtype policies): a run-time choice,
# Noise2Same(precision=...), not part of the saved configuration.
PRECISIONS = ('float32', 'mixed_bfloat16', 'mixed_float16')
# learning-rate schedules of training (utils.data.pipeline.learning_rate); named here, beside
# PRECISIONS, so that the scripts list them without importing TensorFlow
LR_SCHEDULES = ('staircase', 'cosine', 'linear')

# Settings for the basic operators (basic_ops.py).
conf_basic_ops = {
    'kernel_initializer': 'glorot_uniform',  # every convolution and transposed convolution
    'momentum': 0.997,                       # batch norm moving-average momentum
    'epsilon': 1e-5,                         # batch norm epsilon
    'relu_type': 'relu',                     # 'relu' or 'relu6'
}

# Settings of the U-Net (network.py).
conf_unet = {
    'depth': 3,
    'first_output_filters': 96,
    # res_blocks in encoding_block_i, i = 1..depth (first > 0, last == 0)
    'encoding_block_sizes': [1, 1, 0],
    # res_blocks in decoding_block_j, j = depth-1..1
    'decoding_block_sizes': [1, 1],
    # downsampling of encoding_block_i, i = 2..depth: 'convolution' or 'down_res_block'
    'downsampling': ['convolution', 'convolution'],
    # skip connections: 'add' or 'concat'
    'skip_method': 'concat',
}

DOWNSAMPLING_OPTIONS = ('convolution', 'down_res_block')
SKIP_OPTIONS = ('add', 'concat')
RELU_OPTIONS = ('relu', 'relu6')


def check_net_config(conf: Mapping[str, Any]) -> None:
    """Raise ValueError when a merged network config breaks the original's consistency rules."""
    depth = conf['depth']
    rules = [
        (isinstance(depth, int) and depth >= 1, f"depth must be a positive integer, got {depth!r}"),
        (conf['first_output_filters'] >= 1,
         f"first_output_filters must be positive, got {conf['first_output_filters']!r}"),
        (len(conf['encoding_block_sizes']) == depth,
         f"encoding_block_sizes needs depth={depth} entries, got {list(conf['encoding_block_sizes'])}"),
        (len(conf['decoding_block_sizes']) == depth - 1,
         f"decoding_block_sizes needs depth-1={depth - 1} entries, got {list(conf['decoding_block_sizes'])}"),
        (len(conf['downsampling']) == depth - 1,
         f"downsampling needs depth-1={depth - 1} entries, got {list(conf['downsampling'])}"),
        (conf['encoding_block_sizes'][0] > 0,
         "encoding_block_sizes[0] must be positive (encoding_block_1 is one or more res_blocks)"),
        (conf['encoding_block_sizes'][-1] == 0,
         "encoding_block_sizes[-1] must be 0 (the deepest encoding block is a downsampling only)"),
        (all(d in DOWNSAMPLING_OPTIONS for d in conf['downsampling']),
         f"downsampling entries must be in {DOWNSAMPLING_OPTIONS}, got {list(conf['downsampling'])}"),
        (conf['skip_method'] in SKIP_OPTIONS,
         f"skip_method must be one of {SKIP_OPTIONS}, got {conf['skip_method']!r}"),
        (conf['relu_type'] in RELU_OPTIONS,
         f"relu_type must be one of {RELU_OPTIONS}, got {conf['relu_type']!r}"),
    ]
    for ok, message in rules:
        if not ok:
            raise ValueError(f"invalid network config: {message}")


def merged_net_config(overrides: Optional[Mapping[str, Any]] = None) -> dict:
    """A new dict: conf_unet and conf_basic_ops with `overrides` on top, checked.

    `overrides` may hold any key of conf_unet or conf_basic_ops; other keys are an error.
    """
    conf = {**conf_basic_ops, **conf_unet}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(conf))
    if unknown:
        raise ValueError(f"unknown network config keys {unknown}; valid keys: {sorted(conf)}")
    conf.update(overrides)
    for key in ('encoding_block_sizes', 'decoding_block_sizes', 'downsampling'):
        conf[key] = list(conf[key])
    check_net_config(conf)
    return conf


check_net_config({**conf_basic_ops, **conf_unet})
