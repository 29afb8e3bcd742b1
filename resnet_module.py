"""The U-Net's blocks: pre-activation residual blocks and the down/up-sampling modules.

Each block is a Keras layer whose `named_ops` lists its sub-layers under their original TF1
scope names (e.g. 'batch_norm_1', 'convolution_1', 'projection_shortcut'), which is how an
original checkpoint's variables are found (`utils.model_io.checkpoints.tf1_variable_names`).
"""
from typing import List, Mapping, Tuple

import keras

from basic_ops import batch_norm, convolution, relu, transposed_convolution


class ResBlock(keras.layers.Layer):
    """Pre-activation residual block: output = shortcut + conv(relu(bn(conv(relu(bn(x)))))).

    The shortcut is the input itself when it already has `filters` channels, else a 1x1
    no-bias convolution of the activated input ('projection_shortcut'). With `downsample`
    (the original 'down_res_block') the first convolution is 2x2 stride 2 and the shortcut a
    1x1 stride-2 convolution, always present.
    """

    def __init__(self, dim: int, in_filters: int, filters: int, conf: Mapping, name: str,
                 downsample: bool = False):
        super().__init__(name=name, dtype=conf.get('precision'))
        self.activation = relu(conf)
        self.batch_norm_1 = batch_norm('batch_norm_1', conf)
        self.batch_norm_2 = batch_norm('batch_norm_2', conf)
        first_kernel, first_stride = (2, 2) if downsample else (3, 1)
        self.convolution_1 = convolution(dim, filters, first_kernel, first_stride, False,
                                         'convolution_1', conf)
        self.convolution_2 = convolution(dim, filters, 3, 1, False, 'convolution_2', conf)
        self.projection_shortcut = None
        if downsample or in_filters != filters:
            self.projection_shortcut = convolution(dim, filters, 1, first_stride, False,
                                                   'projection_shortcut', conf)

    @property
    def named_ops(self) -> List[Tuple[str, keras.layers.Layer]]:
        ops = [('batch_norm_1', self.batch_norm_1), ('batch_norm_2', self.batch_norm_2),
               ('convolution_1', self.convolution_1), ('convolution_2', self.convolution_2)]
        if self.projection_shortcut is not None:
            ops.append(('projection_shortcut', self.projection_shortcut))
        return ops

    def call(self, inputs, training=False):
        activated = self.activation(self.batch_norm_1(inputs, training=training))
        shortcut = inputs if self.projection_shortcut is None else self.projection_shortcut(activated)
        outputs = self.convolution_1(activated)
        outputs = self.activation(self.batch_norm_2(outputs, training=training))
        outputs = self.convolution_2(outputs)
        return shortcut + outputs


class DownConvolution(keras.layers.Layer):
    """Downsampling by one 2x2 stride-2 convolution with bias (scope 'downsampling/convolution')."""

    def __init__(self, dim: int, filters: int, conf: Mapping, name: str = 'downsampling'):
        super().__init__(name=name, dtype=conf.get('precision'))
        self.convolution = convolution(dim, filters, 2, 2, True, 'convolution', conf)

    @property
    def named_ops(self):
        return [('convolution', self.convolution)]

    def call(self, inputs, training=False):
        return self.convolution(inputs)


class UpTransposedConvolution(keras.layers.Layer):
    """Upsampling by one 2x2 stride-2 transposed convolution with bias
    (scope 'upsampling/transposed_convolution')."""

    def __init__(self, dim: int, filters: int, conf: Mapping, name: str = 'upsampling'):
        super().__init__(name=name, dtype=conf.get('precision'))
        self.transposed_convolution = transposed_convolution(dim, filters, 2, 2, True,
                                                             'transposed_convolution', conf)

    @property
    def named_ops(self):
        return [('transposed_convolution', self.transposed_convolution)]

    def call(self, inputs, training=False):
        return self.transposed_convolution(inputs)


def downsampling_block(kind: str, dim: int, in_filters: int, filters: int,
                       conf: Mapping) -> keras.layers.Layer:
    """The downsampling module named in conf_unet['downsampling']."""
    if kind == 'convolution':
        return DownConvolution(dim, filters, conf)
    if kind == 'down_res_block':
        return ResBlock(dim, in_filters, filters, conf, name='downsampling', downsample=True)
    raise ValueError(f"unsupported downsampling {kind!r}")
