"""The U-Net of Noise2Same (REFERENCE.md section 3) and the full denoising network.

`UNet` is the original's U-Net (scope 'main_unet' minus the output head); `DenoisingNetwork`
adds the head (batch norm 'unet_out', ReLU, 1x1 convolution 'out_conv' to the input's channel
count). Both map (batch, [depth,] height, width, channels) to the same spatial shape; spatial
sizes must be multiples of 2**(depth-1) (prediction pads to multiples of 2**depth, as the
original does).
"""
from typing import Iterator, List, Mapping, Tuple

import keras
import tensorflow as tf

from basic_ops import batch_norm, convolution, relu
from resnet_module import ResBlock, UpTransposedConvolution, downsampling_block


class UNet(keras.Model):
    """The U-Net: first convolution, encoder, bottom block, decoder with skip connections.

    Parameters
    ----------
    dim : 2 or 3, the number of spatial axes.
    conf : a merged network config (`network_configure.merged_net_config`).
    in_channels : channels of the input.

    Attributes
    ----------
    depth : number of resolution levels (conf['depth']).
    out_filters : channels of the output (first_output_filters, doubled by 'concat' skips at
        level 1 when decoding_block_sizes[-1] is 0).
    """

    def __init__(self, dim: int, conf: Mapping, in_channels: int = 1, name: str = 'main_unet'):
        super().__init__(name=name, dtype=conf.get('precision'))
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim!r}")
        self.dim, self.depth = dim, conf['depth']
        self.skip_method = conf['skip_method']
        width = lambda level: conf['first_output_filters'] * 2 ** (level - 1)
        self.first_convolution = convolution(dim, width(1), 3, 1, False, 'first_convolution', conf)

        # encoding_block_i: (downsampling, res_blocks); level 1 has no downsampling.
        self.encoders: List[List[keras.layers.Layer]] = []
        channels = width(1)
        for i in range(1, self.depth + 1):
            blocks = []
            if i > 1:
                blocks.append(downsampling_block(conf['downsampling'][i - 2], dim, channels,
                                                 width(i), conf))
                channels = width(i)
            for k in range(conf['encoding_block_sizes'][i - 1]):
                blocks.append(ResBlock(dim, channels, width(i), conf, name=f'res_{k}'))
            self.encoders.append(blocks)
        skip_channels = [width(i) for i in range(1, self.depth)]

        self.bottom = ResBlock(dim, channels, width(self.depth), conf, name='block_0')
        channels = width(self.depth)

        # decoding_block_j, j = depth-1..1: (upsampling, res_blocks).
        self.decoders: List[List[keras.layers.Layer]] = []
        for j in range(self.depth - 1, 0, -1):
            blocks = [UpTransposedConvolution(dim, width(j), conf)]
            channels = width(j) + (skip_channels[j - 1] if self.skip_method == 'concat' else 0)
            for k in range(conf['decoding_block_sizes'][self.depth - 1 - j]):
                blocks.append(ResBlock(dim, channels, width(j), conf, name=f'res_{k}'))
                channels = width(j)
            self.decoders.append(blocks)
        self.out_filters = channels

    def named_blocks(self) -> Iterator[Tuple[str, keras.layers.Layer]]:
        """(original scope, layer) for every block, e.g. ('encoding_block_2/downsampling', ...)."""
        yield 'first_convolution', self.first_convolution
        for i, blocks in enumerate(self.encoders, start=1):
            for block in blocks:
                yield f'encoding_block_{i}/{block.name}', block
        yield 'bottom_block/block_0', self.bottom
        for j, blocks in zip(range(self.depth - 1, 0, -1), self.decoders):
            for block in blocks:
                yield f'decoding_block_{j}/{block.name}', block

    def call(self, inputs, training=False):
        x = self.first_convolution(inputs)
        skips = []
        for i, blocks in enumerate(self.encoders, start=1):
            if i > 1:
                skips.append(x)
            for block in blocks:
                x = block(x, training=training)
        x = self.bottom(x, training=training)
        for blocks, skip in zip(self.decoders, reversed(skips)):
            x = blocks[0](x, training=training)
            x = x + skip if self.skip_method == 'add' else tf.concat([x, skip], axis=-1)
            for block in blocks[1:]:
                x = block(x, training=training)
        return x


class DenoisingNetwork(keras.Model):
    """f(x): the U-Net followed by the head BN ('unet_out'), ReLU and a 1x1 convolution
    ('out_conv') back to `in_channels`. Input and output: (batch, spatial..., in_channels),
    float32; `precision` 'mixed_bfloat16' or 'mixed_float16' runs the U-Net's convolutions in
    16 bits (weights stay float32)."""

    def __init__(self, dim: int, in_channels: int, conf: Mapping, name: str = 'denoiser',
                 precision: str = 'float32'):
        super().__init__(name=name)
        # U-Net convolutions in `precision` (a Keras dtype policy); batch norms and the head's
        # 1x1 convolution in float32, so the output is float32
        self.unet = UNet(dim, {**conf, 'precision': precision}, in_channels)
        self.unet_out = batch_norm('unet_out', conf)
        self.activation = relu(conf)
        self.out_conv = convolution(dim, in_channels, 1, 1, False, 'out_conv', conf)
        self.dim, self.in_channels = dim, in_channels
        self(tf.zeros([1] + [2 ** conf['depth']] * dim + [in_channels]))  # create the weights

    def named_blocks(self) -> Iterator[Tuple[str, keras.layers.Layer]]:
        """(original scope under 'main_unet', layer) for every block, head included."""
        yield from self.unet.named_blocks()
        yield 'unet_out', self.unet_out
        yield 'out_conv', self.out_conv

    def call(self, inputs, training=False):
        x = self.unet(inputs, training=training)
        x = self.activation(self.unet_out(x, training=training))
        return self.out_conv(x)
