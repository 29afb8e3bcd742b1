"""The training input pipeline and masking, against numpy re-computations."""
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from utils.data.pipeline import (augmentation_grids, check_training_images, donut_average,
    mask_box_size, stack_images, stratified_mask, training_batch, training_dataset)
from utils.training.optimizer import learning_rate
from models import training_config


def test_box_size_follows_mask_percentage():
    assert mask_box_size(0.5) == 14
    assert mask_box_size(1.0) == 10
    assert mask_box_size(25.0) == 2


@pytest.mark.parametrize('patch', [(12, 12), (6, 12, 12), (10, 7)])
def test_augmentation_grids_match_numpy_rot90_and_flip(patch):
    image = np.random.default_rng(0).normal(size=patch)
    grids = augmentation_grids(patch)
    plane = (len(patch) - 2, len(patch) - 1)
    square = patch[-1] == patch[-2]
    for k in range(4):
        for flip in range(2):
            if not square and k % 2:
                continue
            expected = np.rot90(image, k=k, axes=plane)
            expected = np.flip(expected, axis=-1) if flip else expected
            got = image[tuple(np.moveaxis(grids[2 * k + flip], -1, 0))]
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize('patch,channels', [((64, 64), 1), ((20, 30), 3), ((16, 32, 32), 2)])
def test_stratified_mask_has_one_point_per_cell(patch, channels):
    box = 14 if len(patch) == 2 else 10
    mask = stratified_mask(tf.constant([3, 4], tf.int64), 8, patch, channels, box).numpy()
    assert mask.shape == (8, *patch, channels) and set(np.unique(mask)) <= {0.0, 1.0}
    cells = [-(-s // box) for s in patch]
    counts = np.zeros((8, *cells, channels))
    for idx in zip(*np.nonzero(mask)):
        counts[(idx[0],) + tuple(i // box for i in idx[1:-1]) + (idx[-1],)] += 1
    assert counts.max() == 1
    full = tuple(slice(0, s // box) for s in patch)  # cells lying wholly inside the patch
    assert np.all(counts[(slice(None),) + full] == 1)
    # channels are drawn independently
    if channels > 1:
        assert not np.array_equal(mask[..., 0], mask[..., 1])


def test_mask_density_is_one_over_box_squared():
    mask = stratified_mask(tf.constant([0, 1], tf.int64), 64, (70, 70), 1, 14).numpy()
    assert mask.mean() == pytest.approx(1 / 14 ** 2, rel=1e-6)  # 70 = 5 whole cells per axis
    mask = stratified_mask(tf.constant([0, 2], tf.int64), 256, (64, 64), 1, 14).numpy()
    assert mask.mean() == pytest.approx(1 / 14 ** 2, rel=0.1)  # partial cells drop points


@pytest.mark.parametrize('dim', [2, 3])
def test_donut_average_is_the_numpy_neighbour_mean(dim):
    x = np.random.default_rng(1).normal(size=(2,) + (7,) * dim + (3,)).astype(np.float32)
    plane = np.array([[0.5, 1, 0.5], [1, 0, 1], [0.5, 1, 0.5]])
    if dim == 3:
        outer = np.array([[0, 0.5, 0], [0.5, 1, 0.5], [0, 0.5, 0]])
        plane = np.stack([outer, plane, outer])
    kernel = plane / plane.sum()
    expected = np.stack([np.stack([ndimage.correlate(x[b, ..., c], kernel, mode='constant')
                                   for c in range(3)], -1) for b in range(2)])
    np.testing.assert_allclose(donut_average(tf.constant(x)).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize('patch', [(16, 16), (4, 8, 8)])
def test_training_patches_are_augmented_crops(patch):
    dim = len(patch)
    shapes = [(30, 25), (16, 40)] if dim == 2 else [(6, 12, 10), (4, 8, 9)]
    offset = 0
    images = []
    for shape in shapes:  # unique values reveal where each patch pixel came from
        images.append((np.arange(np.prod(shape)) + offset).reshape(shape + (1,)).astype(np.float32))
        offset += np.prod(shape)
    stacked, sizes = stack_images(images)
    features, noise, mask = training_batch(
        tf.constant(stacked), tf.constant(sizes, tf.int32), tf.constant(augmentation_grids(patch)),
        tf.constant([5, 9], tf.int64), 32, patch, 14, True)
    plane = (dim - 2, dim - 1)
    for sample in features.numpy()[..., 0]:
        lowest = sample.min()
        index = next(i for i, im in enumerate(images) if im.min() <= lowest <= im.max())
        corner = np.unravel_index(int(lowest - images[index].min()), images[index].shape[:-1])
        crop = images[index][tuple(slice(c, c + p) for c, p in zip(corner, patch))][..., 0]
        variants = [np.flip(np.rot90(crop, k, plane), -1) if f else np.rot90(crop, k, plane)
                    for k in range(4) for f in range(2)]
        assert any(np.array_equal(sample, v) for v in variants)
    assert np.std(noise.numpy()) == pytest.approx(0.2, rel=0.05)
    assert mask.shape == features.shape


def test_batches_depend_only_on_seed_and_step():
    images = np.random.default_rng(2).normal(size=(5, 20, 20, 1)).astype(np.float32)
    full = list(training_dataset(images, [16, 16], 4, 14, seed=7, first_step=0, last_step=4))
    resumed = list(training_dataset(images, [16, 16], 4, 14, seed=7, first_step=2, last_step=4))
    for a, b in zip(full[2:], resumed):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x.numpy(), y.numpy())
    other = next(iter(training_dataset(images, [16, 16], 4, 14, seed=8, first_step=2,
                                       last_step=3)))
    assert not np.array_equal(other[0].numpy(), resumed[0][0].numpy())


def test_image_equal_to_patch_is_cropped_and_smaller_is_an_error():
    images = np.zeros((3, 16, 16, 1), np.float32)
    check_training_images(images, 2, 1, [16, 16])
    batch = next(iter(training_dataset(images, [16, 16], 2, 14, 0, 0, 1)))
    assert batch[0].shape == (2, 16, 16, 1)
    with pytest.raises(ValueError, match='smaller than the patch'):
        check_training_images(images, 2, 1, [17, 16])
    with pytest.raises(ValueError, match='3 channels'):
        check_training_images(np.zeros((2, 16, 16, 3)), 2, 1, [8, 8])
    bad = images.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match='1 NaN'):
        check_training_images(bad, 2, 1, [8, 8])


def test_learning_rate_is_tf1_staircase_decay():
    for step, expected in [(0, 4e-4), (4999, 4e-4), (5000, 2e-4), (12000, 1e-4)]:
        assert float(learning_rate(step, training_config)) == pytest.approx(expected)


@pytest.mark.parametrize('schedule', ['cosine', 'linear'])
def test_cosine_and_linear_schedules_decay_to_zero_at_the_last_step(schedule):
    config = {**training_config, 'lr_schedule': schedule, 'base_learning_rate': 1e-3,
              'lr_decay_steps': 8000.0}
    for step in (0, 1, 2000, 4000, 7999, 8000, 9000):
        t = min(step, 8000) / 8000
        expected = 1e-3 * (0.5 * (1 + np.cos(np.pi * t)) if schedule == 'cosine' else 1 - t)
        assert float(learning_rate(step, config)) == pytest.approx(expected, rel=1e-5, abs=1e-9)
    with pytest.raises(ValueError, match='lr_schedule'):
        learning_rate(0, {**config, 'lr_schedule': 'exotic'})
