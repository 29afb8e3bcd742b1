"""Basic operators of the U-Net: convolutions, batch norm and ReLU, 2D or 3D.

Layer and variable names follow the original TF1 scopes (`kernel`, `bias`, `gamma`, `beta`,
`moving_mean`, `moving_variance`), so an original checkpoint maps one to one (see
`models.tf1_variable_map`). All tensors are channel-last: (batch, [depth,] height, width, channels).
"""
from typing import Mapping

import keras
import tensorflow as tf

_CONV = {2: keras.layers.Conv2D, 3: keras.layers.Conv3D}
_TRANSPOSED_CONV = {2: keras.layers.Conv2DTranspose, 3: keras.layers.Conv3DTranspose}


def convolution(dim: int, filters: int, kernel_size: int, strides: int, use_bias: bool,
                name: str, conf: Mapping) -> keras.layers.Layer:
    """A 'same'-padded convolution without activation (use_bias=False when followed by BN)."""
    return _CONV[dim](filters, kernel_size, strides=strides, padding='same', use_bias=use_bias,
                      kernel_initializer=conf['kernel_initializer'], name=name)


def transposed_convolution(dim: int, filters: int, kernel_size: int, strides: int,
                           use_bias: bool, name: str, conf: Mapping) -> keras.layers.Layer:
    """A 'same'-padded transposed convolution; kernel layout (spatial..., out, in) as in TF1."""
    return _TRANSPOSED_CONV[dim](filters, kernel_size, strides=strides, padding='same',
                                 use_bias=use_bias,
                                 kernel_initializer=conf['kernel_initializer'], name=name)


class BatchNorm(keras.layers.Layer):
    """Batch normalisation with the semantics of TF1's fused `tf.layers.batch_normalization`.

    training=True normalises by the batch's mean and (biased) variance over every axis but the
    last, and updates the moving averages as TF1 does: moving -= (moving - batch) * (1 - momentum),
    with the variance Bessel-corrected (n / (n - 1)) for the update. training=False uses the
    moving averages. Weights: gamma, beta (trainable), moving_mean, moving_variance.
    """

    def __init__(self, momentum: float, epsilon: float, name: str, **kwargs):
        super().__init__(name=name, **kwargs)
        self.momentum = momentum
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = (input_shape[-1],)
        self.gamma = self.add_weight(shape=channels, initializer='ones', name='gamma')
        self.beta = self.add_weight(shape=channels, initializer='zeros', name='beta')
        self.moving_mean = self.add_weight(shape=channels, initializer='zeros',
                                           name='moving_mean', trainable=False)
        self.moving_variance = self.add_weight(shape=channels, initializer='ones',
                                               name='moving_variance', trainable=False)

    def call(self, inputs, training=False):
        data_format = 'NHWC' if len(inputs.shape) == 4 else 'NDHWC'
        if not training:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, self.moving_mean, self.moving_variance,
                epsilon=self.epsilon, data_format=data_format, is_training=False)
            return outputs
        # The fused kernel returns the Bessel-corrected batch variance, which TF1 fed to
        # the moving average (it normalises with the biased one).
        outputs, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma, self.beta, epsilon=self.epsilon, data_format=data_format,
            is_training=True)
        decay = 1.0 - self.momentum
        self.moving_mean.assign_sub((self.moving_mean - tf.stop_gradient(mean)) * decay)
        self.moving_variance.assign_sub((self.moving_variance - tf.stop_gradient(unbiased)) * decay)
        return outputs


def batch_norm(name: str, conf: Mapping) -> BatchNorm:
    """Batch norm with the configured momentum and epsilon, centre and scale on."""
    return BatchNorm(conf['momentum'], conf['epsilon'], name=name)


def relu(conf: Mapping):
    """The configured activation function: tf.nn.relu or tf.nn.relu6."""
    return tf.nn.relu if conf['relu_type'] == 'relu' else tf.nn.relu6
