"""Denoising stacks larger than memory, tile by tile: z-stacks and time series frame by frame
with a 2D model, volumes with a 3D model tiled along all three spatial axes.

A frame is what the model denoises at once: a Y x X plane (2D models; every plane of the other
axes, channels included, on its own) or a Z x Y x X volume (3D models). It is read from the
lazily opened `Stack` tile by tile, each tile with `margin` pixels of context on every side,
reflect-padded at the frame's borders exactly as `Predictor.predict` pads the whole frame, so
that a tile sees the network's downsampling grid where the whole frame does: the output equals
in-memory prediction up to the context beyond the margin (within 1e-4 of the range at margin
32 in tests/test_stacks.py; equal after rounding to uint16 in `benchmarks/large.py`). Each
frame is normalised by its own mean and std, as `predict` does; a constant frame (an empty
plane of a stack) is written back unchanged. 2D frames of at most
REFINE_MAX_PIXELS are refined as `test_single.py` refines an image (utils/prediction/refine.py);
larger ones, and volumes, keep the network's output. Memory: one frame's output where it is
refined, else some tiles, whatever the stack's size.
"""
import itertools
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from utils.core.image_io import to_dtype
from utils.core.stack_io import Stack
from utils.prediction.predictor import PredictOptions, Predictor, self_ensemble
from utils.prediction.tiling import get_coord, grid_tiles, padded_indices, padding

REFINE_MAX_PIXELS = 4096 * 4096  # larger 2D frames keep the network's output (not refined)
STATS_PIXELS = 2 ** 22  # pixels of a frame read at once to sum its mean and std


class Cancelled(Exception):
    """Raised by `denoise_stack` when its `cancelled()` returns True (nothing is kept)."""


@dataclass
class StackResult:
    """What `denoise_stack` did: frames denoised, frames passed through unchanged (constant),
    the refinement's report of each refined frame, and notes for the user."""
    frames: int = 0
    constant: int = 0
    reports: List = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class Layout:
    """Which axes of a stack form a frame. spatial: the model's axes ('YX' or 'ZYX'); channel:
    the axis fed as the model's channels (None for grey models: channels are frames too);
    frame_axes: the others, iterated over."""
    axes: str
    spatial: str
    channel: Optional[str]

    @property
    def frame_axes(self) -> str:
        return ''.join(a for a in self.axes if a not in self.spatial and a != self.channel)


def layout(stack: Stack, dim: int, in_channels: int) -> Layout:
    """The frames of `stack` for a model of `dim` spatial axes and `in_channels` channels;
    ValueError when the stack cannot be denoised by it."""
    spatial = 'ZYX' if dim == 3 else 'YX'
    missing = [a for a in spatial if a not in stack.axes]
    if missing:
        raise ValueError(f"{stack.describe()} has no {'/'.join(missing)} axis, which a {dim}D "
                         f"model needs" + ("; use a 2D model frame by frame" if dim == 3 else ''))
    channel = None
    if in_channels > 1:
        found = [a for a in 'CS' if a in stack.axes
                 and stack.shape[stack.axes.index(a)] == in_channels]
        if not found:
            raise ValueError(f"{stack.describe()} has no axis of {in_channels} channels for a "
                             f"model of {in_channels} channels")
        channel = found[0]
    return Layout(stack.axes, spatial, channel)


def denoise_stack(predictor: Predictor, stack: Stack, out, options: PredictOptions =
                  PredictOptions(), progress: Optional[Callable[[int, int], None]] = None,
                  cancelled: Optional[Callable[[], bool]] = None) -> StackResult:
    """Denoise `stack` into `out` (an array-like of its shape, written by slices: a zarr.Array),
    frame by frame and tile by tile (options.tile_size, options.margin, options.batch_size,
    options.tta; options.refine for 2D frames up to REFINE_MAX_PIXELS). Integer outputs are
    rounded and clipped to their dtype. progress(done, total) after every tile; cancelled():
    polled between tiles, True raises Cancelled."""
    lay = layout(stack, predictor.dim, predictor.in_channels)
    shape = dict(zip(stack.axes, stack.shape))
    spatial_shape = tuple(shape[a] for a in lay.spatial)
    for a, n in zip(lay.spatial, spatial_shape):
        if n < predictor.multiple:
            raise ValueError(f"{stack.describe()}: {n} pixels along {a}; the model needs at "
                             f"least {predictor.multiple}")
    size, margin = grid_tiles(options.tile_size, options.margin, predictor.multiple)
    pad, mode = padding(spatial_shape, predictor.multiple)
    tiles = list(get_coord([n + a + b for n, (a, b) in zip(spatial_shape, pad)], size, margin,
                           tiled=len(spatial_shape)))
    frames = list(itertools.product(*(range(shape[a]) for a in lay.frame_axes)))
    refine = options.refine and predictor.dim == 2
    result = StackResult()
    if options.refine and not refine:
        result.notes.append('volumes are not refined (the refinement is 2D): the network\'s '
                            'output is written')
    if refine and np.prod(spatial_shape) > REFINE_MAX_PIXELS:
        refine = False
        result.notes.append(f"frames of {' x '.join(map(str, spatial_shape))} pixels are not "
                            f"refined (more than {REFINE_MAX_PIXELS} pixels): the network's "
                            f"output is written")
    total, done = len(frames) * len(tiles), 0
    for frame in frames:
        where = dict(zip(lay.frame_axes, frame))
        reader = FrameReader(stack, lay, where)
        mean, std, constant = reader.statistics(predictor.per_channel)
        if constant:
            for box in reader.row_blocks():
                reader.write(out, box, reader.read(box))
            result.constant += 1
            done += len(tiles)
            if progress:
                progress(done, total)
            continue
        buffer = np.empty(spatial_shape + (reader.channels,), np.float32) if refine else None
        for group in _batches(tiles, options.batch_size):
            if cancelled and cancelled():
                raise Cancelled('cancelled')
            batch = np.stack([(reader.read_padded(src, pad, mode) - mean) / std
                              for src, _, _ in group]).astype(np.float32)
            pred = _run(predictor, batch, options.tta) * std + mean
            for (src, trg, mrg), tile in zip(group, pred):
                target, keep = _unpad(trg, mrg, pad, spatial_shape)
                if buffer is not None:
                    buffer[target] = tile[keep]
                else:
                    reader.write(out, target, tile[keep])
            done += len(group)
            if progress:
                progress(done, total)
        if buffer is not None:
            whole = tuple(slice(0, n) for n in spatial_shape)
            refined, reports = predictor.refine(reader.read(whole), buffer, mean, std)
            result.reports.extend(reports)
            reader.write(out, whole, refined)
        result.frames += 1
    return result


def _batches(items: list, n: int) -> Iterator[list]:
    for start in range(0, len(items), n):
        yield items[start:start + n]


def _run(predictor: Predictor, batch: np.ndarray, tta: bool) -> np.ndarray:
    """The network on a batch of padded tiles (B, spatial..., C), with the self-ensemble."""
    if not tta:
        return predictor.run(batch)
    return np.stack([self_ensemble(lambda z: predictor.run(z[None])[0], tile, predictor.dim)
                     for tile in batch])


def _unpad(trg: tuple, mrg: tuple, pad: List[Tuple[int, int]], shape: Tuple[int, ...]
           ) -> Tuple[tuple, tuple]:
    """A tile's target (in padded coordinates) and kept part cut to the unpadded frame."""
    target, keep = [], []
    for t, k, (before, _), n in zip(trg, mrg, pad, shape):
        lo, hi = max(t.start - before, 0), min(t.stop - before, n)
        k0 = k.start + (lo - (t.start - before))
        target.append(slice(lo, hi))
        keep.append(slice(k0, k0 + max(hi - lo, 0)))
    return tuple(target), tuple(keep)


class FrameReader:
    """One frame of a stack: reads (spatial..., C) float64 blocks of it and writes blocks back
    into the output at the same place."""

    def __init__(self, stack: Stack, lay: Layout, where: Dict[str, int]):
        self.stack, self.lay, self.where = stack, lay, where
        self.channels = stack.shape[stack.axes.index(lay.channel)] if lay.channel else 1

    def _selection(self, spatial: tuple) -> tuple:
        by_axis = dict(zip(self.lay.spatial, spatial))
        return tuple(self.where[a] if a in self.where else by_axis.get(a, slice(None))
                     for a in self.stack.axes)

    def _order(self) -> List[str]:
        """Axes of a read block, in the stack's order (frame axes dropped)."""
        return [a for a in self.stack.axes if a not in self.where]

    def read(self, spatial: tuple) -> np.ndarray:
        """Pixels of the frame at `spatial` slices, (spatial..., C) float64."""
        block = np.asarray(self.stack.data[self._selection(spatial)], np.float64)
        order = self._order()
        wanted = list(self.lay.spatial) + ([self.lay.channel] if self.lay.channel else [])
        block = np.transpose(block, [order.index(a) for a in wanted])
        return block if self.lay.channel else block[..., None]

    def read_padded(self, spatial: tuple, pad: List[Tuple[int, int]], mode: str) -> np.ndarray:
        """The block at `spatial` slices of the frame padded by `pad` (np.pad `mode`), read as
        the bounding box of the pixels it needs."""
        shape = [self.stack.shape[self.stack.axes.index(a)] for a in self.lay.spatial]
        indices = [padded_indices(s.start, s.stop, before, n, mode)
                   for s, (before, _), n in zip(spatial, pad, shape)]
        box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in indices)
        block = self.read(box)
        if all(len(i) == b.stop - b.start for i, b in zip(indices, box)):
            return block  # inside the frame: no reflected pixel to gather
        return block[np.ix_(*[i - b.start for i, b in zip(indices, box)])]

    def write(self, out, spatial: tuple, block: np.ndarray) -> None:
        """Write a (spatial..., C) block at `spatial` slices, cast to out's dtype."""
        order = self._order()
        wanted = list(self.lay.spatial) + [self.lay.channel or '']
        block = block if self.lay.channel else block[..., 0]
        wanted = wanted if self.lay.channel else wanted[:-1]
        block = np.transpose(block, [wanted.index(a) for a in order])
        dtype = np.dtype(out.dtype)
        if np.issubdtype(dtype, np.integer):  # rounded and clipped to the dtype's range
            block = to_dtype(block, np.zeros(0, dtype))
        out[self._selection(spatial)] = block.astype(dtype)

    def row_blocks(self) -> Iterator[tuple]:
        """The frame in blocks of at most STATS_PIXELS pixels (rows of Y; for a volume, of
        one Z plane at a time), whole along X."""
        shape = [self.stack.shape[self.stack.axes.index(a)] for a in self.lay.spatial]
        rows = max(1, STATS_PIXELS // shape[-1])
        for plane in range(shape[0]) if len(shape) == 3 else [None]:
            for start in range(0, shape[-2], rows):
                box = (slice(start, min(start + rows, shape[-2])), slice(0, shape[-1]))
                yield box if plane is None else (slice(plane, plane + 1),) + box

    def statistics(self, per_channel: bool) -> Tuple[np.ndarray, np.ndarray, bool]:
        """(mean, std, constant) of the frame as `Predictor.normalisers` takes them (float32;
        per channel or over all), summed over `row_blocks` (shifted by the first block's mean
        against cancellation); a zero std becomes 1. ValueError when the frame holds NaN or
        Inf."""
        total = np.zeros(self.channels)
        squares = np.zeros(self.channels)
        low, high, count, shift = np.inf, -np.inf, 0, None
        for box in self.row_blocks():
            block = self.read(box).reshape(-1, self.channels)
            if not np.all(np.isfinite(block)):
                raise ValueError(f"{self.stack.describe()}: the frame at {self.where} holds "
                                 f"NaN or Inf values; replace them first")
            shift = block.mean() if shift is None else shift
            total += (block - shift).sum(axis=0)
            squares += np.square(block - shift).sum(axis=0)
            low, high, count = min(low, block.min()), max(high, block.max()), count + len(block)
        if not per_channel:
            total, squares, count = total.sum(), squares.sum(), count * self.channels
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean ** 2, 0))
        std = np.where(std == 0, 1.0, std)
        return np.asarray(mean + shift, np.float32), np.asarray(std, np.float32), low == high
