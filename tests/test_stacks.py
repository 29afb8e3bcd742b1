"""Stacks larger than memory (utils/core/stack_io.py, utils/prediction/stack.py): tiles against
whole-frame prediction, reads bounded by a tile, 3D tiling, empty frames, OME metadata kept,
and test_single.py on multi-page TIFF and OME-Zarr."""
import os
import warnings

import numpy as np
import pytest
import tifffile

from conftest import ROOT, run_main
from utils.core import stack_io
from utils.core.stack_io import Stack
from utils.prediction.predictor import PredictOptions, Predictor
from utils.prediction.stack import Cancelled, denoise_stack
from utils.prediction.tiling import get_coord, padded_indices, padding


def wavy(shape, seed=0, sigma=300.0, level=3000.0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[-2], :shape[-1]]
    clean = level + 0.6 * level * np.sin(yy / 9.0) * np.cos(xx / 13.0)
    return np.clip(clean + rng.normal(0, sigma, shape), 0, 65535)


class Recording:
    """An array-like that records the largest block read from it."""

    def __init__(self, array):
        self.array, self.largest = array, 0
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, index):
        block = self.array[index]
        self.largest = max(self.largest, np.size(block))
        return block


def test_padded_indices_are_numpy_padding():
    for length in (1, 2, 5, 7, 30):
        for multiple in (4, 8, 16):
            pad, mode = padding([length], multiple)
            expected = np.pad(np.arange(length), pad, mode=mode)
            got = padded_indices(0, len(expected), pad[0][0], length, mode)
            np.testing.assert_array_equal(got, expected)


def test_tiles_of_three_axes_cover_every_voxel_once():
    shape = (37, 50, 29)
    count = np.zeros(shape, int)
    for src, trg, mrg in get_coord(shape, 16, 4, tiled=3):
        tile = np.ones([s.stop - s.start for s in src])
        count[trg] += tile[mrg].astype(int)
    assert np.all(count == 1)


@pytest.fixture(scope='module')
def predictor():
    from models import load_model
    return load_model(str(ROOT / 'trained_models'), 'blind32-N2S').restored_predictor()


def test_frames_tile_by_tile_equal_whole_frame_prediction(predictor, monkeypatch):
    from utils.prediction import stack as stack_module
    monkeypatch.setattr(stack_module, 'STATS_PIXELS', 171 * 20)  # statistics by 20 rows
    frames = np.stack([wavy((203, 171), seed=k) for k in range(2)] +
                      [np.zeros((203, 171))]).astype(np.uint16)
    source = Recording(frames)
    stack = Stack(source, 'TYX', 'test', 'tiff')
    out = np.zeros(frames.shape, np.float32)
    options = PredictOptions(tile_size=128, margin=32)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the empty frame passes quietly
        result = denoise_stack(predictor, stack, out, options)
    assert (result.frames, result.constant) == (2, 1)
    for k in range(2):
        whole = predictor.predict(frames[k].astype(np.float64))
        assert np.abs(out[k] - whole).max() <= 1e-4 * np.ptp(frames[k]), k
    assert np.array_equal(out[2], frames[2])
    # nothing larger than a tile is read at once (the statistics read by blocks of rows)
    assert source.largest <= 128 ** 2


def test_refined_frames_equal_refined_prediction(predictor):
    frames = np.stack([wavy((130, 150), seed=3), wavy((130, 150), seed=4, sigma=900)])
    out = np.zeros(frames.shape, np.float32)
    result = denoise_stack(predictor, Stack(frames, 'ZYX', 't', 'tiff'), out,
                           PredictOptions(refine=True))
    assert len(result.reports) == 2
    for k in range(2):
        expected = predictor.predict(frames[k], PredictOptions(refine=True))
        np.testing.assert_allclose(out[k], expected, atol=1e-4 * np.ptp(frames[k]))


def test_integer_output_is_rounded_and_clipped():
    identity = Predictor(lambda batch: batch * 1.5, 2, 1, 4)  # values beyond uint8
    frames = np.stack([np.full((8, 8), 100.0), np.arange(64.0).reshape(8, 8) * 3])
    out = np.zeros(frames.shape, np.uint8)
    denoise_stack(identity, Stack(frames, 'TYX', 't', 'tiff'), out)
    mean, std = frames[1].mean(), frames[1].std()
    expected = np.clip(np.round(((frames[1] - mean) / std * 1.5) * std + mean), 0, 255)
    np.testing.assert_array_equal(out[1], expected)
    assert np.all(out[0] == 100)


def test_volumes_are_tiled_along_all_three_axes(tmp_path, monkeypatch):
    """A 3D model (untrained, depth 3): tiles of 56 voxels with a margin of 20 along Z, Y and
    X equal whole-volume prediction (the rest of the network's receptive field: 2e-5)."""
    from models import Noise2Same
    from utils.prediction import stack as stack_module
    monkeypatch.setattr(stack_module, 'STATS_PIXELS', 1000)  # statistics in small blocks too
    model = Noise2Same(str(tmp_path), 'untrained-3d', dim=3,
                       net_config={'first_output_filters': 4})
    predictor = model.predictor
    volume = np.random.default_rng(0).normal(size=(70, 66, 75))
    source = Recording(volume)
    out = np.zeros(volume.shape, np.float32)
    denoise_stack(predictor, Stack(source, 'ZYX', 'v', 'tiff'), out,
                  PredictOptions(tile_size=56, margin=20))
    whole = predictor.predict(volume)
    assert np.abs(out - whole).max() <= 1e-4 * np.ptp(volume)
    assert source.largest <= 56 ** 3  # a tile with its margins, never the volume


def test_cancel_leaves_no_output(tmp_path):
    frames = np.random.default_rng(0).normal(size=(3, 32, 32))
    stack = Stack(frames, 'TYX', 't', 'tiff')
    target = tmp_path / 'out.ome.zarr'
    with pytest.raises(Cancelled):
        with stack_io.zarr_output(str(target), stack, dtype=np.float32) as out:
            denoise_stack(Predictor(lambda b: b, 2, 1, 4), stack, out, cancelled=lambda: True)
    assert not target.exists() and os.listdir(tmp_path) == []


def test_ome_metadata_kept_through_zarr_and_tiff(tmp_path):
    data = (np.random.default_rng(1).random((2, 3, 40, 50)) * 1000).astype(np.uint16)
    path = tmp_path / 'in.ome.tif'
    tifffile.imwrite(path, data, ome=True, metadata={
        'axes': 'TZYX', 'PhysicalSizeX': 0.2, 'PhysicalSizeY': 0.25, 'PhysicalSizeZ': 1.5})
    stack = stack_io.open_stack(str(path))
    assert stack.axes == 'TZYX' and stack.shape == data.shape
    assert stack.scale == {'X': 0.2, 'Y': 0.25, 'Z': 1.5}
    with stack_io.zarr_output(str(tmp_path / 'out.ome.zarr'), stack) as out:
        out[...] = np.asarray(stack.data[...])
    back = stack_io.open_stack(str(tmp_path / 'out.ome.zarr'))
    assert back.axes == 'TZYX' and back.scale == stack.scale and back.units['X'] == 'micrometer'
    np.testing.assert_array_equal(np.asarray(back.data[...]), data)
    stack_io.write_tiff_pages(str(tmp_path / 'out.ome.tif'), back.data, back)
    again = stack_io.open_stack(str(tmp_path / 'out.ome.tif'))
    assert again.axes == 'TZYX' and again.scale == stack.scale
    np.testing.assert_array_equal(np.asarray(again.data[...]), data)


def test_pages_without_metadata_are_frames(tmp_path):
    """4 pages written without metadata (tifffile reads them as planar samples) are a stack
    of channels, not one RGBA image; 2D images are no stacks."""
    path = tmp_path / 'four.tif'
    tifffile.imwrite(path, np.zeros((4, 30, 20), np.uint16))
    assert stack_io.is_stack(str(path))
    assert stack_io.open_stack(str(path)).axes == 'CYX'
    tifffile.imwrite(tmp_path / 'rgb.tif', np.zeros((30, 20, 3), np.uint8), photometric='rgb')
    tifffile.imwrite(tmp_path / 'grey.tif', np.zeros((30, 20), np.uint16))
    assert not stack_io.is_stack(str(tmp_path / 'rgb.tif'))
    assert not stack_io.is_stack(str(tmp_path / 'grey.tif'))


@pytest.mark.slow
def test_test_single_denoises_a_multi_page_tiff_and_an_ome_zarr(tmp_path):
    frames = np.stack([wavy((90, 110), seed=k) for k in range(7)] +
                      [np.zeros((90, 110))]).astype(np.uint16)
    path = tmp_path / 'stack.tif'
    tifffile.imwrite(path, frames, metadata={'axes': 'ZYX'})
    run = run_main('test_single.py', path, '--no-refine')
    assert run.returncode == 0, run.stderr
    assert '7 frame(s) denoised, 1 constant (empty) frame(s)' in run.stdout + run.stderr
    out = tmp_path / 'stack_denoised.tif'
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].shape == frames.shape and tif.series[0].dtype == np.uint16
        denoised = tif.asarray()
    assert np.array_equal(denoised[-1], frames[-1])
    assert np.std(denoised[0].astype(float) - frames[0]) > 100  # the noise (300) was removed
    assert 'Mean of empty slice' not in run.stderr and 'nan' not in run.stdout + run.stderr

    run = run_main('test_single.py', path, '--no-refine', '--stack-format', 'zarr')
    assert run.returncode == 0, run.stderr
    zarr_out = stack_io.open_stack(str(tmp_path / 'stack_denoised.ome.zarr'))
    assert zarr_out.axes == 'ZYX'
    np.testing.assert_array_equal(np.asarray(zarr_out.data[...]), denoised)

    # an OME-Zarr input, written as BigTIFF when asked
    run = run_main('test_single.py', tmp_path / 'stack_denoised.ome.zarr', '--no-refine',
                   '--stack-format', 'bigtiff', '--output-dir', tmp_path / 'again')
    assert run.returncode == 0, run.stderr
    with tifffile.TiffFile(tmp_path / 'again' / 'stack_denoised_denoised.ome.tif') as tif:
        assert tif.is_bigtiff and tif.series[0].axes == 'ZYX'


def test_test_single_refuses_a_stack_output_of_another_format(tmp_path):
    path = tmp_path / 's.tif'
    tifffile.imwrite(path, np.zeros((5, 20, 20), np.uint16))
    run = run_main('test_single.py', path, '--output', tmp_path / 's.png')
    assert run.returncode == 2 and 'TIFF (.tif) or OME-Zarr (.zarr)' in run.stderr


def test_test_single_refuses_refine_bm3d_on_a_stack(tmp_path):
    """--refine bm3d filters one image in memory: a stack gets one line saying so."""
    path = tmp_path / 's.tif'
    tifffile.imwrite(path, wavy((40, 48)).astype(np.uint16)[None].repeat(3, axis=0),
                     metadata={'axes': 'ZYX'})
    run = run_main('test_single.py', path, '--refine', 'bm3d')
    assert run.returncode == 2 and 'does not take stacks' in run.stderr, run.stderr
    assert not (tmp_path / 's_denoised.tif').exists()
