"""Training input pipeline (REFERENCE.md section 2): patches, augmentation, stratified masks,
the donut replacement (the optimiser: utils/training/optimizer.py).

The batch at global step s is a pure function of (seed, s): stateless random ops seeded with
[seed, s] choose images, crops, rotations, flips, mask points and masking noise. A resumed run
therefore sees exactly the batches an uninterrupted run would, whatever tf.data prefetched.
Shapes: images (N, spatial..., C); patches, noise and masks (B, spatial..., C); mask is 0/1.
"""
import itertools
from typing import Sequence, Tuple

import numpy as np
import tensorflow as tf


def mask_box_size(mask_perc: float) -> int:
    """Side of the stratified-sampling cells: round(sqrt(100 / mask_perc)) (14 for 0.5 %)."""
    return int(np.round(np.sqrt(100.0 / mask_perc)))


def augmentation_grids(patch_size: Sequence[int]) -> np.ndarray:
    """Source coordinates of every augmented patch pixel, for the 8 augmentations.

    Returns int32 (8, *patch_size, dim): entry 2*k + f holds, for each output pixel, the pixel of
    the crop it comes from after np.rot90(k) in the plane of the last two spatial axes (2D:
    (0, 1); 3D: (1, 2)) and then, when f = 1, a flip of the last spatial axis -- the original's
    augment_patch applied to a grid of coordinates. Rotations by 90 or 270 degrees need a
    square plane; for other patches those entries repeat k = 0 and 2 and are never drawn.
    """
    dim = len(patch_size)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in patch_size], indexing='ij'), axis=-1)
    plane = (dim - 2, dim - 1)
    square = patch_size[-1] == patch_size[-2]
    grids = []
    for k, flip in itertools.product(range(4), range(2)):
        g = np.rot90(grid, k=k if square else k - k % 2, axes=plane)
        grids.append(np.flip(g, axis=-2) if flip else g)
    return np.stack(grids).astype(np.int32)


def stratified_mask(seed, batch_size: int, patch_size: Sequence[int], channels: int,
                    box: int) -> tf.Tensor:
    """Noise2Void's stratified sampling, vectorised: (B, *patch_size, C) float32 0/1 mask.

    Each channel of each sample gets one uniform random point per box^dim cell of the grid
    tiling the patch (ceil(size / box) cells per axis); points outside the patch are dropped.
    Pixel p is masked iff p % box equals the point drawn for cell p // box on every axis.
    """
    dim = len(patch_size)
    cells = [-(-s // box) for s in patch_size]
    points = tf.random.stateless_uniform([batch_size, *cells, channels, dim], seed, 0, box,
                                         dtype=tf.int32)
    masked = None
    for axis, size in enumerate(patch_size):
        chosen = points[..., axis]
        for a, s in enumerate(patch_size):  # expand every cell axis to pixels
            chosen = tf.gather(chosen, np.arange(s) // box, axis=1 + a)
        shape = [1] * (dim + 2)
        shape[1 + axis] = size
        hit = tf.equal(chosen, np.reshape(np.arange(size) % box, shape).astype(np.int32))
        masked = hit if masked is None else tf.logical_and(masked, hit)
    return tf.cast(masked, tf.float32)


def donut_average(features: tf.Tensor) -> tf.Tensor:
    """Weighted mean of each pixel's neighbours, per channel, zero 'same' padding.

    2D kernel [[.5, 1, .5], [1, 0, 1], [.5, 1, .5]] / 6; 3D: that kernel as the middle plane and
    [[0, .5, 0], [.5, 1, .5], [0, .5, 0]] as the outer planes, divided by the sum (12).
    features: (B, spatial..., C) -> same shape.
    """
    dim = len(features.shape) - 2
    plane = np.array([[0.5, 1.0, 0.5], [1.0, 0.0, 1.0], [0.5, 1.0, 0.5]])
    if dim == 3:
        outer = np.array([[0.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 0.0]])
        plane = np.stack([outer, plane, outer])
    kernel = tf.constant((plane / plane.sum()).astype(np.float32)[..., None, None])
    # Channels go to the batch axis so one single-channel kernel serves every channel.
    perm = [0, dim + 1] + list(range(1, dim + 1))
    x = tf.transpose(features, perm)
    shape = tf.shape(x)
    x = tf.reshape(x, tf.concat([[-1], shape[2:], [1]], 0))
    conv = tf.nn.conv2d if dim == 2 else tf.nn.conv3d
    x = conv(x, kernel, [1] * (dim + 2), 'SAME')
    x = tf.reshape(x, shape)
    return tf.transpose(x, [0] + list(range(2, dim + 2)) + [1])


def stack_images(images) -> Tuple[np.ndarray, np.ndarray]:
    """Training images (an array (N, spatial..., C) or a list of (spatial..., C) arrays of any
    sizes) as one zero-padded float32 array and their spatial shapes (N, dim)."""
    if isinstance(images, np.ndarray) and images.dtype != object:
        return images.astype(np.float32, copy=False), np.tile(images.shape[1:-1], (len(images), 1))
    shapes = np.array([im.shape[:-1] for im in images])
    stacked = np.zeros((len(images), *shapes.max(0), images[0].shape[-1]), np.float32)
    for out, im in zip(stacked, images):
        out[tuple(slice(0, s) for s in im.shape[:-1])] = im
    return stacked, shapes


def check_training_images(images, dim: int, in_channels: int, patch_size: Sequence[int]) -> None:
    """Raise ValueError naming the first training image that cannot give a patch."""
    if len(patch_size) != dim:
        raise ValueError(f"patch_size {list(patch_size)} has {len(patch_size)} axes; the model "
                         f"is {dim}D")
    if any(p < 1 for p in patch_size):
        raise ValueError(f"patch_size must be positive, got {list(patch_size)}")
    if len(images) == 0:
        raise ValueError("no training images")
    for i, im in enumerate(images):
        if im.ndim != dim + 1:
            raise ValueError(f"training image {i} has shape {im.shape}; expected {dim} spatial "
                             f"axes and a channel axis (spatial..., {in_channels})")
        if im.shape[-1] != in_channels:
            raise ValueError(f"training image {i} has {im.shape[-1]} channels; the model has "
                             f"{in_channels}")
        if any(s < p for s, p in zip(im.shape[:-1], patch_size)):
            raise ValueError(f"training image {i} of size {im.shape[:-1]} is smaller than the "
                             f"patch {tuple(patch_size)}; use a smaller --patch-size")
        bad = int(np.size(im) - np.count_nonzero(np.isfinite(im)))
        if bad:
            raise ValueError(f"training image {i} holds {bad} NaN or Inf values; clean the data")


def training_batch(images: tf.Tensor, shapes: tf.Tensor, grids: tf.Tensor, seed,
                   batch_size: int, patch_size: Sequence[int], box: int, square: bool):
    """One training batch: (features, noise, mask), each (B, *patch_size, C) float32.

    images: (N, max spatial..., C) zero-padded; shapes: (N, dim) true spatial sizes;
    grids: `augmentation_grids(patch_size)`; seed: int tensor [2].
    """
    dim = len(patch_size)
    channels = images.shape[-1]
    seeds = tf.random.experimental.stateless_split(seed, 6)
    index = tf.random.stateless_uniform([batch_size], seeds[0], 0, tf.shape(images)[0],
                                        dtype=tf.int32)
    room = tf.gather(shapes, index) - np.array(patch_size, np.int32) + 1
    corner = tf.cast(tf.random.stateless_uniform([batch_size, dim], seeds[1], dtype=tf.float64)
                     * tf.cast(room, tf.float64), tf.int32)
    rotation = tf.random.stateless_uniform([batch_size], seeds[2], 0, 4, dtype=tf.int32)
    if not square:
        rotation = rotation - rotation % 2
    flip = tf.random.stateless_uniform([batch_size], seeds[3], 0, 2, dtype=tf.int32)
    source = tf.gather(grids, 2 * rotation + flip) + tf.reshape(corner, [-1] + [1] * dim + [dim])
    batch_index = tf.broadcast_to(tf.reshape(index, [-1] + [1] * (dim + 1)),
                                  [batch_size, *patch_size, 1])
    features = tf.gather_nd(images, tf.concat([batch_index, source], axis=-1))
    mask = stratified_mask(seeds[4], batch_size, patch_size, channels, box)
    noise = 0.2 * tf.random.stateless_normal(tf.shape(features), seeds[5])
    return features, noise, mask


def batch_maker(images, patch_size: Sequence[int], batch_size: int, box: int, seed: int):
    """The function step -> `training_batch` seeded with [seed, step]: the batch of a global
    step, the same however the steps are split into runs or the batch over replicas."""
    stacked, shapes = stack_images(images)
    images_t = tf.constant(stacked)
    shapes_t = tf.constant(shapes, tf.int32)
    grids = tf.constant(augmentation_grids(patch_size))
    square = patch_size[-1] == patch_size[-2]

    def make(step):
        return training_batch(images_t, shapes_t, grids, tf.stack([tf.cast(seed, tf.int64), step]),
                              batch_size, patch_size, box, square)
    return make


def training_dataset(images, patch_size: Sequence[int], batch_size: int, box: int, seed: int,
                     first_step: int, last_step: int) -> tf.data.Dataset:
    """tf.data pipeline of the batches for global steps first_step..last_step-1, prefetched."""
    return (tf.data.Dataset.range(first_step, last_step)
            .map(batch_maker(images, patch_size, batch_size, box, seed),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE))


def validation_batches(images: np.ndarray, box: int, seed: int, batch_size: int = 4):
    """The validation set as (features, noise, mask) batches: each image whole, one mask drawn
    for channel 0 only (as the original), fixed by `seed` so every evaluation sees the same."""
    images = images.astype(np.float32)
    for start in range(0, len(images), batch_size):
        features = tf.constant(images[start:start + batch_size])
        n, channels = features.shape[0], features.shape[-1]
        step_seed = tf.constant([seed, -1 - start], tf.int64)
        mask_seed, noise_seed = tf.random.experimental.stateless_split(step_seed, 2)
        mask = stratified_mask(mask_seed, n, images.shape[1:-1], 1, box)
        mask = tf.concat([mask, tf.zeros([*mask.shape[:-1], channels - 1])], axis=-1)
        noise = 0.2 * tf.random.stateless_normal(tf.shape(features), noise_seed)
        yield features, noise, mask
