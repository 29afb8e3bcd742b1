"""Basic operators of the U-Net: convolutions, batch norm and ReLU, 2D or 3D.

Layer and variable names follow the original TF1 scopes (`kernel`, `bias`, `gamma`, `beta`,
`moving_mean`, `moving_variance`), so an original checkpoint maps one to one (see
`utils.model_io.checkpoints.tf1_variable_names`). All tensors are channel-last: (batch, [depth,] height, width, channels).
"""
from typing import Mapping

import keras
import tensorflow as tf

_CONV = {2: keras.layers.Conv2D, 3: keras.layers.Conv3D}
_TRANSPOSED_CONV = {2: keras.layers.Conv2DTranspose, 3: keras.layers.Conv3DTranspose}


def convolution(dim: int, filters: int, kernel_size: int, strides: int, use_bias: bool,
                name: str, conf: Mapping) -> keras.layers.Layer:
    """A 'same'-padded convolution without activation (use_bias=False when followed by BN).
    conf['precision'] (optional): a Keras dtype policy such as 'mixed_bfloat16'."""
    return _CONV[dim](filters, kernel_size, strides=strides, padding='same', use_bias=use_bias,
                      kernel_initializer=conf['kernel_initializer'], name=name,
                      dtype=conf.get('precision'))


def transposed_convolution(dim: int, filters: int, kernel_size: int, strides: int,
                           use_bias: bool, name: str, conf: Mapping) -> keras.layers.Layer:
    """A 'same'-padded transposed convolution; kernel layout (spatial..., out, in) as in TF1."""
    return _TRANSPOSED_CONV[dim](filters, kernel_size, strides=strides, padding='same',
                                 use_bias=use_bias,
                                 kernel_initializer=conf['kernel_initializer'], name=name,
                                 dtype=conf.get('precision'))


class BatchNorm(keras.layers.Layer):
    """Batch normalisation with the semantics of TF1's fused `tf.layers.batch_normalization`.

    training=True normalises by the batch's mean and (biased) variance over every axis but the
    last, and updates the moving averages as TF1 does: moving -= (moving - batch) * (1 - momentum),
    with the variance Bessel-corrected (n / (n - 1)) for the update. training=False uses the
    moving averages. Weights: gamma, beta (trainable), moving_mean, moving_variance.

    Under a tf.distribute strategy each replica keeps its own moving averages (averaged when
    read for a checkpoint). With `synchronized` set (see `Noise2Same.train(sync_batch_norm=)`),
    the batch statistics are those of the global batch, all-reduced over the replicas.
    Under mixed precision it computes in float32 and returns the input's dtype.
    """

    def __init__(self, momentum: float, epsilon: float, name: str, **kwargs):
        super().__init__(name=name, autocast=False, **kwargs)  # float32 maths for any input
        self.momentum = momentum
        self.epsilon = epsilon
        self.synchronized = False

    def build(self, input_shape):
        channels = (input_shape[-1],)
        self.gamma = self.add_weight(shape=channels, initializer='ones', name='gamma')
        self.beta = self.add_weight(shape=channels, initializer='zeros', name='beta')
        statistic = dict(shape=channels, trainable=False, aggregation='mean',
                         synchronization='on_read')
        self.moving_mean = keras.Variable('zeros', name='moving_mean', **statistic)
        self.moving_variance = keras.Variable('ones', name='moving_variance', **statistic)

    def call(self, inputs, training=False):
        """Normalise in float32; the output has the input's dtype (bfloat16 or float16 under
        mixed precision)."""
        dtype, inputs = inputs.dtype, tf.cast(inputs, tf.float32)
        return tf.cast(self._normalise(inputs, training), dtype)

    def _normalise(self, inputs, training):
        data_format = 'NHWC' if len(inputs.shape) == 4 else 'NDHWC'
        if not training:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, self.moving_mean, self.moving_variance,
                epsilon=self.epsilon, data_format=data_format, is_training=False)
            return outputs
        replicas = tf.distribute.get_replica_context()
        if self.synchronized and replicas is not None and replicas.num_replicas_in_sync > 1:
            outputs, mean, unbiased = self._global_batch_norm(inputs, replicas)
        else:
            # The fused kernel returns the Bessel-corrected batch variance, which TF1 fed to
            # the moving average (it normalises with the biased one).
            outputs, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, epsilon=self.epsilon, data_format=data_format,
                is_training=True)
        decay = 1.0 - self.momentum
        self.moving_mean.assign_sub((self.moving_mean - tf.stop_gradient(mean)) * decay)
        self.moving_variance.assign_sub((self.moving_variance - tf.stop_gradient(unbiased)) * decay)
        return outputs

    def _global_batch_norm(self, inputs, replicas):
        """Normalise by the mean and biased variance of the batch of all replicas (two
        all-reductions, differentiable); returns (outputs, mean, Bessel-corrected variance)."""
        axes = list(range(len(inputs.shape) - 1))
        total = tf.distribute.ReduceOp.SUM
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), inputs.dtype)
        count = replicas.all_reduce(total, count)
        mean = replicas.all_reduce(total, tf.reduce_sum(inputs, axes)) / count
        variance = replicas.all_reduce(total, tf.reduce_sum(tf.square(inputs - mean), axes)) / count
        outputs = tf.nn.batch_normalization(inputs, mean, variance, self.beta, self.gamma,
                                            self.epsilon)
        return outputs, mean, variance * count / tf.maximum(count - 1.0, 1.0)


def batch_norm(name: str, conf: Mapping) -> BatchNorm:
    """Batch norm with the configured momentum and epsilon, centre and scale on."""
    return BatchNorm(conf['momentum'], conf['epsilon'], name=name)


def relu(conf: Mapping):
    """The configured activation function: tf.nn.relu or tf.nn.relu6."""
    return tf.nn.relu if conf['relu_type'] == 'relu' else tf.nn.relu6
