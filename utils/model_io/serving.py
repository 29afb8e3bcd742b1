"""Export: a trained model as a TensorFlow SavedModel that needs neither this repository nor
Keras to run (`Noise2Same.export`)."""
import os

import tensorflow as tf

from utils.core.files import atomic_folder


class ServingModule(tf.Module):
    """What `export` saves: one float32 image (spatial..., C) in, its denoised version out, with
    the normalisation (the image's mean and std, per channel when `per_channel`, as the model
    was trained), the reflect padding to multiples of 2**depth and the cropping done inside
    the graph."""

    def __init__(self, network, dim: int, in_channels: int, multiple: int,
                 per_channel: bool = False):
        super().__init__(name='noise2same')
        self._axes = list(range(dim)) if per_channel else None
        self.weights = [getattr(v, 'value', v) for v in network.weights]  # tracked for saving
        self._network = lambda x: network(x, training=False)  # a function: not tracked itself
        self._multiple = multiple
        spec = tf.TensorSpec([None] * dim + [in_channels], tf.float32, name='image')
        self.denoise = tf.function(self._denoise, input_signature=[spec])
        batch = tf.TensorSpec([None] * (dim + 1) + [in_channels], tf.float32, name='images')
        self.serve = tf.function(self._serve, input_signature=[batch])

    def _denoise(self, image):
        mean = tf.reduce_mean(image, axis=self._axes)
        std = tf.math.reduce_std(image, axis=self._axes)
        std = tf.where(std > 0, std, tf.ones_like(std))
        size = tf.shape(image)[:-1]
        total = (-size) % self._multiple
        before = total // 2
        paddings = tf.concat([tf.stack([before, total - before], axis=1), [[0, 0]]], axis=0)
        x = tf.pad((image - mean) / std, paddings, mode='REFLECT')
        y = self._network(x[None])[0]
        y = tf.slice(y, tf.concat([before, [0]], 0), tf.concat([size, [-1]], 0))
        return {'denoised': y * std + mean}


    def _serve(self, images):
        """A batch (B, spatial..., C), each image denoised on its own: {'denoised': same shape}."""
        return {'denoised': tf.map_fn(lambda image: self._denoise(image)['denoised'], images)}


def export(network, dim: int, in_channels: int, multiple: int, path: str,
           per_channel: bool = False) -> str:
    """Write the SavedModel of `network` (a Keras model with restored weights) to `path`.

    Its `serving_default` signature takes 'image', one float32 image of any size (>= multiple
    per spatial axis) with the channel axis last (also for one channel), and returns
    {'denoised': same shape}. Written to a temporary folder and renamed; an existing `path` is
    an error.
    """
    if os.path.exists(path):
        raise FileExistsError(f"{path} exists; remove it or choose another export path")
    module = ServingModule(network, dim, in_channels, multiple, per_channel)
    with atomic_folder(path) as tmp:
        tf.saved_model.save(module, tmp, signatures={'serving_default': module.denoise})
    return path
