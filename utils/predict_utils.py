"""Prediction: normalise, reflect-pad, run the network in batches, crop, de-normalise; tiles for
large images, the test-time self-ensemble, and percentile normalisation (after CSBDeep, as in the
original Noise2Same).

`Predictor` does the work of `Noise2Same.predict`, `batch_predict` and `crop_predict`; it only
needs the network as a function (B, spatial..., C) -> same shape and the spatial multiple the
network takes (2**depth).
"""
import itertools
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

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


def get_coord(shape: Sequence[int], size: int, margin: int) -> Iterator[Tuple[tuple, tuple, tuple]]:
    """Tiles of the last two axes of an array of `shape` (earlier axes whole).

    Yields (source slices, target slices, slices of the tile to keep): out[trg] = tile[mrg].
    """
    lead = (slice(None),) * (len(shape) - 2)
    per_axis = []
    for length in shape[-2:]:
        tiles = []
        for start, left, right in tile_starts(length, size, margin):
            end = min(start + size, length)
            tiles.append((slice(start, end), slice(start + left, end - right),
                          slice(left, (end - start) - right)))
        per_axis.append(tiles)
    for (sy, ty, my) in per_axis[0]:
        for (sx, tx, mx) in per_axis[1]:
            yield lead + (sy, sx), lead + (ty, tx), lead + (my, mx)


def normalize_mi_ma(x: np.ndarray, mi, ma, clip: bool = False, eps: float = 1e-20,
                    dtype=np.float32) -> np.ndarray:
    """(x - mi) / (ma - mi + eps), optionally clipped to [0, 1]."""
    x = x.astype(dtype, copy=False)
    x = (x - dtype(mi) if np.isscalar(mi) else x - np.asarray(mi, dtype)) / (
        np.asarray(ma, dtype) - np.asarray(mi, dtype) + dtype(eps))
    return np.clip(x, 0, 1) if clip else x


class PercentileNormalizer:
    """Maps the pmin and pmax percentiles of an image to 0 and 1 (per channel when the axes
    string holds 'C'); `after` maps a prediction back."""

    def __init__(self, pmin: float = 2, pmax: float = 99.8, do_after: bool = True,
                 dtype=np.float32, **kwargs):
        if not (np.isscalar(pmin) and np.isscalar(pmax) and 0 <= pmin < pmax <= 100):
            raise ValueError(f"need 0 <= pmin < pmax <= 100, got {pmin}, {pmax}")
        self.pmin, self.pmax, self.do_after, self.dtype = pmin, pmax, do_after, dtype
        self.kwargs = kwargs

    def before(self, img: np.ndarray, axes: str) -> np.ndarray:
        if len(axes) != img.ndim:
            raise ValueError(f"axes {axes!r} do not fit an image of shape {img.shape}")
        channel = axes.upper().find('C')
        reduce = None if channel < 0 else tuple(d for d in range(img.ndim) if d != channel)
        self.mi = np.percentile(img, self.pmin, axis=reduce, keepdims=True).astype(self.dtype)
        self.ma = np.percentile(img, self.pmax, axis=reduce, keepdims=True).astype(self.dtype)
        return normalize_mi_ma(img, self.mi, self.ma, dtype=self.dtype, **self.kwargs)

    def after(self, img: np.ndarray) -> np.ndarray:
        if not self.do_after:
            raise ValueError("this normalizer was made with do_after=False")
        return ((self.ma - self.mi) * img + self.mi).astype(self.dtype, copy=False)


# ---------------------------------------------------------------- test-time self-ensemble

def dihedral_transforms(dim: int) -> List[Tuple[Callable, Callable]]:
    """The 8 flips and 90-degree rotations of the last two spatial axes, as (forward, inverse)
    pairs on arrays (spatial..., C); the identity first."""
    plane = (dim - 2, dim - 1)
    pairs = []
    for k, flip in itertools.product(range(4), (False, True)):
        def forward(x, k=k, flip=flip):
            x = np.rot90(x, k, axes=plane)
            return np.flip(x, axis=plane[1]) if flip else x

        def inverse(y, k=k, flip=flip):
            y = np.flip(y, axis=plane[1]) if flip else y
            return np.rot90(y, -k, axes=plane)
        pairs.append((forward, inverse))
    return pairs


def self_ensemble(denoise: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                  dim: int) -> np.ndarray:
    """Mean of inverse(denoise(forward(x))) over the 8 `dihedral_transforms` (8x the cost).
    x: (spatial..., C) -> same shape."""
    total = np.zeros(x.shape, np.float64)
    for forward, inverse in dihedral_transforms(dim):
        total += inverse(denoise(np.ascontiguousarray(forward(x))))
    return (total / 8).astype(np.float32)


# ---------------------------------------------------------------- the predictor

class Predictor:
    """Runs a network on images of any size the way the original predicts.

    network: function (B, spatial..., C) float32 -> same shape (inference mode); dim: 2 or 3
    spatial axes; in_channels: C; multiple: spatial sizes the network takes (2**depth).
    Images are (spatial...) for one channel or (spatial..., C); values in any range (they are
    normalised by their mean and std, or by the given im_mean / im_std, and mapped back);
    per_channel: the mean and std of each channel (as the model was trained), else of all.
    """

    def __init__(self, network: Callable[[np.ndarray], np.ndarray], dim: int, in_channels: int,
                 multiple: int, per_channel: bool = False):
        self.network, self.dim = network, dim
        self.in_channels, self.multiple = in_channels, multiple
        self.per_channel = per_channel

    def predict(self, image: np.ndarray, im_mean=None, im_std=None,
                resizer: Optional[PadAndCropResizer] = None, tta: bool = False,
                refine: bool = False) -> np.ndarray:
        """One image, whole: float32 of the input's shape. refine: `utils.refine.refine` the
        output (per channel, noise level estimated from the image)."""
        x, added = self.channels_last(image)
        mean, std = self.normalisers(x, im_mean, im_std)
        resizer = resizer or PadAndCropResizer()

        def denoise(z):
            padded = resizer.before(z, self.multiple, exclude=-1)
            return resizer.after(self.run(padded[None])[0], exclude=-1)
        out = self._ensemble(denoise, (x - mean) / std, tta) * std + mean
        return self._finish(x, out, added, refine)

    def batch_predict(self, images: np.ndarray, im_mean=None, im_std=None,
                      resizer: Optional[PadAndCropResizer] = None,
                      batch_size: int = 32) -> np.ndarray:
        """A stack of equally sized images (N, spatial...[, C]), normalised together by the
        stack's mean and std unless given."""
        x, added = self.channels_last(images, leading=1)
        mean, std = self.normalisers(x, im_mean, im_std)
        resizer = resizer or PadAndCropResizer()
        x = resizer.before((x - mean) / std, self.multiple, exclude=[0, -1])
        out = resizer.after(self.run(x, batch_size), exclude=[0, -1]) * std + mean
        return (out[..., 0] if added else out).astype(np.float32)

    def crop_predict(self, image: np.ndarray, size: int, margin: int, im_mean=None, im_std=None,
                     resizer: Optional[PadAndCropResizer] = None, batch_size: int = 4,
                     tta: bool = False, refine: bool = False) -> np.ndarray:
        """A large image tile by tile: the last two spatial axes are cut into size x size tiles
        overlapping by 2*margin, of which each keeps its centre; normalised as a whole."""
        x, added = self.channels_last(image)
        mean, std = self.normalisers(x, im_mean, im_std)
        resizer = resizer or PadAndCropResizer()
        tiled = lambda z: self._tiles(z, size, margin, resizer, batch_size)
        out = self._ensemble(tiled, (x - mean) / std, tta) * std + mean
        return self._finish(x, out, added, refine)

    @staticmethod
    def _finish(x: np.ndarray, out: np.ndarray, added: bool, refine: bool) -> np.ndarray:
        """out (spatial..., C), refined against the input x when asked, in the input's shape."""
        if refine:
            from .refine import refine as wiener
            out = wiener(x, out, channel_axis=-1)
        return (out[..., 0] if added else out).astype(np.float32)

    def _ensemble(self, denoise, x: np.ndarray, tta: bool) -> np.ndarray:
        return self_ensemble(denoise, x, self.dim) if tta else denoise(x)

    def _tiles(self, x: np.ndarray, size: int, margin: int, resizer: PadAndCropResizer,
               batch_size: int) -> np.ndarray:
        """x (spatial..., C), normalised, denoised tile by tile as `predict` denoises it whole:
        x is padded as a whole first and every tile starts at a multiple of `multiple` of the
        padded image (size rounded down and margin up to keep it so), so each tile sees the
        network's downsampling grid where the whole image does; pixels differ from `predict`
        only by the context a tile lacks beyond its margin."""
        m = self.multiple
        size, margin = max(m, size // m * m), -(-margin // (m // 2 or 1)) * (m // 2 or 1)
        if size <= 2 * margin:
            raise ValueError(f"tile size {size} must exceed 2 * margin = {2 * margin} (both "
                             f"rounded to the network's multiple {m})")
        padded = resizer.before(x, m, exclude=-1)
        out = np.empty(padded.shape, np.float32)
        tiles = list(get_coord(padded.shape[:-1], size, margin))
        for start in range(0, len(tiles), batch_size):
            group = tiles[start:start + batch_size]
            pred = self.run(np.stack([padded[src] for src, _, _ in group]))
            for (src, trg, mrg), tile in zip(group, pred):
                out[trg] = tile[mrg]
        return resizer.after(out, exclude=-1)

    def run(self, batch: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """The network on (B, spatial..., C), spatial sizes multiples of `multiple`."""
        return np.concatenate([np.asarray(self.network(batch[i:i + batch_size]))
                               for i in range(0, len(batch), batch_size)])

    def channels_last(self, image: np.ndarray, leading: int = 0) -> Tuple[np.ndarray, bool]:
        """(image with a channel axis, whether one was added); a wrong rank or channel count,
        NaN/Inf values or an image smaller than `multiple` pixels along an axis is a ValueError."""
        image = np.asarray(image)
        spatial = image.ndim - leading
        if self.in_channels == 1 and spatial == self.dim:
            image, added = image[..., None], True
        elif spatial != self.dim + 1 or image.shape[-1] != self.in_channels:
            what = 'a stack of images ' if leading else 'an image '
            want = f"(N, {self.dim} spatial axes" if leading else f"({self.dim} spatial axes"
            want += ')' if self.in_channels == 1 else f", {self.in_channels} channels)"
            raise ValueError(f"expected {what}{want}, got shape {image.shape}")
        else:
            added = False
        bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        if bad:
            raise ValueError(f"the input holds {bad} NaN or Inf values; replace them first")
        for axis, size in enumerate(image.shape[leading:-1]):
            if size < self.multiple:
                raise ValueError(f"the input is {size} pixels along spatial axis {axis}; "
                                 f"at least {self.multiple} are needed")
        return image, added

    def normalisers(self, x: np.ndarray, im_mean, im_std) -> Tuple[np.ndarray, np.ndarray]:
        """(mean, std) as float32 for x ([N,] spatial..., C): each the given one, else x's
        own, per channel when `per_channel` (over all other axes), else over all values; a zero
        std becomes 1."""
        axes = tuple(range(x.ndim - 1)) if self.per_channel else None
        im_mean = x.mean(axis=axes) if im_mean is None else im_mean
        im_std = x.std(axis=axes) if im_std is None else im_std
        im_std = np.where(np.asarray(im_std) == 0, 1.0, im_std)  # a constant image
        return np.asarray(im_mean, np.float32), np.asarray(im_std, np.float32)
