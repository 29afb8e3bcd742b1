"""Padding to the U-Net's multiples and cutting large images into overlapping tiles."""
import itertools
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

Axes = Optional[Union[int, Sequence[int]]]


def _axes_list(exclude: Axes, ndim: int) -> List[int]:
    if exclude is None:
        return []
    axes = [exclude] if np.isscalar(exclude) else list(exclude)
    return sorted(a % ndim for a in axes)


class PadAndCropResizer:
    """Pads every axis but the excluded ones to a multiple of `div_n`, then crops back.

    The padding of an axis is split evenly, the odd pixel going to the end; mode 'reflect' by
    default (any np.pad mode works; 'reflect' falls back to 'symmetric' where an axis is too
    short to reflect). `before` remembers the padding of the padded axes; `after` crops them
    and leaves its own excluded axes (e.g. batch or channel axes) whole.
    """

    def __init__(self, mode: str = 'reflect', **kwargs):
        self.mode = mode
        self.kwargs = kwargs
        self.pad: List[Tuple[int, int]] = []

    def before(self, x: np.ndarray, div_n: int, exclude: Axes = None) -> np.ndarray:
        excluded = _axes_list(exclude, x.ndim)
        pad = [(0, 0) if i in excluded else ((-s % div_n) // 2, -s % div_n - (-s % div_n) // 2)
               for i, s in enumerate(x.shape)]
        mode = self.mode
        if mode == 'reflect' and any(max(p) > s - 1 for p, s in zip(pad, x.shape)):
            mode = 'symmetric'
        self.pad = [p for i, p in enumerate(pad) if i not in excluded]
        return np.pad(x, pad, mode=mode, **self.kwargs)

    def after(self, x: np.ndarray, exclude: Axes = None) -> np.ndarray:
        crop = [slice(left, -right if right else None) for left, right in self.pad]
        for axis in _axes_list(exclude, x.ndim):
            crop.insert(axis, slice(None))
        if len(crop) != x.ndim:
            raise ValueError(f"cannot crop an array of shape {x.shape} with the padding of "
                             f"{len(self.pad)} axes and exclude={exclude}")
        return x[tuple(crop)]


def tile_starts(length: int, size: int, margin: int) -> List[Tuple[int, int, int]]:
    """Tiles of one axis: (start, left margin, right margin) for tiles of `size` overlapping by
    2*margin; the last tile ends at the border. An axis shorter than `size` is one tile.

    The last tile's left margin grows so that it keeps only pixels no earlier tile kept (the
    original kept margin there and wrote some pixels twice).
    """
    if length <= size:
        return [(0, 0, 0)]
    step = size - 2 * margin
    if step < 1:
        raise ValueError(f"tile size {size} must exceed 2 * margin = {2 * margin}")
    n = int(np.ceil((length - size) / step))
    tiles = [(i * step, margin if i > 0 else 0, margin) for i in range(n)]
    previous_end = (n - 1) * step + size - margin
    tiles.append((length - size, previous_end - (length - size), 0))
    return tiles


def get_coord(shape: Sequence[int], size: int, margin: int,
              tiled: int = 2) -> Iterator[Tuple[tuple, tuple, tuple]]:
    """Tiles of the last `tiled` axes of an array of `shape` (earlier axes whole).

    Yields (source slices, target slices, slices of the tile to keep): out[trg] = tile[mrg].
    """
    lead = (slice(None),) * (len(shape) - tiled)
    per_axis = []
    for length in shape[len(shape) - tiled:]:
        tiles = []
        for start, left, right in tile_starts(length, size, margin):
            end = min(start + size, length)
            tiles.append((slice(start, end), slice(start + left, end - right),
                          slice(left, (end - start) - right)))
        per_axis.append(tiles)
    for combination in itertools.product(*per_axis):
        src, trg, mrg = zip(*combination)
        yield lead + src, lead + trg, lead + mrg


def grid_tiles(size: int, margin: int, multiple: int) -> Tuple[int, int]:
    """(size, margin) of tiles that stay on the network's downsampling grid: size rounded down
    to a multiple of `multiple`, margin up to a multiple of half of it."""
    half = multiple // 2 or 1
    size, margin = max(multiple, size // multiple * multiple), -(-margin // half) * half
    if size <= 2 * margin:
        raise ValueError(f"tile size {size} must exceed 2 * margin = {2 * margin} (both "
                         f"rounded to the network's multiple {multiple})")
    return size, margin


def padding(shape: Sequence[int], multiple: int) -> Tuple[List[Tuple[int, int]], str]:
    """The padding `PadAndCropResizer.before` gives each axis of `shape` (all padded) and its
    mode: 'reflect', or 'symmetric' where an axis is too short to reflect."""
    pad = [((-s % multiple) // 2, -s % multiple - (-s % multiple) // 2) for s in shape]
    mode = 'symmetric' if any(max(p) > s - 1 for p, s in zip(pad, shape)) else 'reflect'
    return pad, mode


def padded_indices(start: int, stop: int, before: int, length: int, mode: str) -> np.ndarray:
    """Indices into an axis of `length` of the positions start..stop of that axis padded by
    `before` in front (np.pad's 'reflect' or 'symmetric'): what a tile of the padded array
    reads from the unpadded one."""
    i = np.arange(start, stop) - before
    if mode == 'reflect':  # period 2 (length - 1): 0 1 .. n-1 n-2 .. 1
        period = max(2 * (length - 1), 1)
        i = np.mod(i, period)
        return np.where(i >= length, period - i, i)
    i = np.mod(i, 2 * length)  # symmetric, period 2 length: 0 .. n-1 n-1 .. 0
    return np.where(i >= length, 2 * length - 1 - i, i)
