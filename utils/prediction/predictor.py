"""Prediction: normalise, reflect-pad, run the network in batches, crop, de-normalise; tiles for
large images, the test-time self-ensemble, and percentile normalisation (after CSBDeep, as in the
original Noise2Same).

`Predictor` does the work of `Noise2Same.predict`, `batch_predict` and `crop_predict`; it only
needs the network as a function (B, spatial..., C) -> same shape and the spatial multiple the
network takes (2**depth).
"""
import itertools
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np

from utils.prediction.refine import Probe, refine_with_report
from utils.prediction.tiling import PadAndCropResizer, get_coord, grid_tiles


@dataclass(frozen=True)
class PredictOptions:
    """How an image is denoised around the network.

    tta: average over the 8 flips and 90-degree rotations (8x the time); refine: put back the
    signal in what the network removed (utils/prediction/refine.py; not in the original);
    tile_size, margin: tiles of crop_predict (and of images above photo.TILE_ABOVE pixels),
    overlapping by 2 * margin; batch_size: tiles per network call; colour: how a grey model
    denoises a colour image ('opponent' or 'channels', utils/prediction/photo.py); bm3d: after
    the refinement, BM3D's Wiener stage with the refined output as its pilot
    (utils/prediction/bm3d_stage.py: 2D images, the optional `bm3d` package, non-commercial).
    """
    tta: bool = False
    refine: bool = False
    bm3d: bool = False
    tile_size: int = 512
    margin: int = 32
    batch_size: int = 4
    colour: str = 'opponent'


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

# pixels: `Predictor.divergence`'s crop, its margin and the spacing of the probed pixels
DIVERGENCE_SIDE, DIVERGENCE_MARGIN, DIVERGENCE_SPACING = 96, 24, 3
# `refine`'s probe on very noisy images (on 25 BSD68 training images at peak 1 with read noise
# 2 the probe above lost 0.87 dB to this one, the fourth session's)
PRECISE_PROBE = {'side': 160, 'spacing': 1}


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

    @classmethod
    def of_keras(cls, network, dim: int, in_channels: int, multiple: int,
                 per_channel: bool = False) -> 'Predictor':
        """A predictor of a Keras network in inference mode, compiled once for any size."""
        import tensorflow as tf
        infer = tf.function(lambda x: network(x, training=False), input_signature=[
            tf.TensorSpec([None] * (dim + 1) + [in_channels], tf.float32)])
        predictor = cls(lambda x: infer(tf.constant(x, tf.float32)).numpy(), dim, in_channels,
                        multiple, per_channel)
        predictor.source = network
        return predictor

    def predict(self, image: np.ndarray, options: PredictOptions = PredictOptions(),
                im_mean=None, im_std=None, resizer: Optional[PadAndCropResizer] = None,
                reports: Optional[List] = None) -> np.ndarray:
        """One image, whole: float32 of the input's shape (options.tta, options.refine);
        reports: a list that receives the refinement's `Refinement` of each channel."""
        x, added = self.channels_last(image)
        mean, std = self.normalisers(x, im_mean, im_std)
        own_padding = resizer is None  # the divergence probe pads as PadAndCropResizer()
        resizer = resizer or PadAndCropResizer()

        def denoise(z):
            padded = resizer.before(z, self.multiple, exclude=-1)
            return resizer.after(self.run(padded[None])[0], exclude=-1)
        out = self._ensemble(denoise, (x - mean) / std, options.tta) * std + mean
        return self._finish(x, out, added, options, mean, std, reports,
                            plain=not options.tta and own_padding,
                            again=self._again(denoise, options.tta, im_mean, im_std))

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

    def crop_predict(self, image: np.ndarray, options: PredictOptions, im_mean=None,
                     im_std=None, resizer: Optional[PadAndCropResizer] = None,
                     reports: Optional[List] = None) -> np.ndarray:
        """A large image tile by tile: the last two spatial axes are cut into
        options.tile_size tiles overlapping by 2 * options.margin, of which each keeps its
        centre; normalised as a whole; reports as `predict`'s."""
        x, added = self.channels_last(image)
        mean, std = self.normalisers(x, im_mean, im_std)
        resizer = resizer or PadAndCropResizer()
        tiled = lambda z: self._tiles(z, options.tile_size, options.margin, resizer,
                                      options.batch_size)
        out = self._ensemble(tiled, (x - mean) / std, options.tta) * std + mean
        return self._finish(x, out, added, options, mean, std, reports,
                            again=self._again(tiled, options.tta, im_mean, im_std))

    def _again(self, denoise, tta: bool, im_mean, im_std) -> Optional[Callable]:
        """How `refine` denoises another image (spatial..., C) as this one was (`denoise` on
        the normalised image, through TTA when `tta`), normalised by its own mean and std;
        None when the caller normalised by its own im_mean / im_std (a colour channel)."""
        if im_mean is not None or im_std is not None:
            return None

        def again(z: np.ndarray) -> np.ndarray:
            mean, std = self.normalisers(z, None, None)
            return self._ensemble(denoise, (z - mean) / std, tta) * std + mean
        return again

    def _finish(self, x: np.ndarray, out: np.ndarray, added: bool, options: PredictOptions,
                mean, std, reports: Optional[List], plain: bool = False,
                again: Optional[Callable] = None) -> np.ndarray:
        """out (spatial..., C), refined against the input x when options.refine asks (and
        options.bm3d; the reports extend `reports`), in the input's shape; plain: out is the
        network's output of the whole image (no TTA, no tiles); again: `refine`'s."""
        if options.refine:
            out, found = self.refine(x, out, mean, std, plain, options.bm3d, again)
            if reports is not None:
                reports.extend(found)
        return (out[..., 0] if added else out).astype(np.float32)

    def refine(self, image: np.ndarray, denoised: np.ndarray, im_mean=None, im_std=None,
               plain: bool = False, bm3d: bool = False, again: Optional[Callable] = None):
        """(refined float32, [Refinement per channel]) of this network's output `denoised`
        of `image` (`utils.prediction.refine`, with the network's response to a random
        probe, `probe`, measured on `image` normalised as it was: by im_mean / im_std, else
        its own; its divergence for the gate, the response for the DCT Wiener candidates).
        plain: `denoised` is `predict`'s output without TTA (not tiled), which the probe then
        reuses (one network pass instead of two); bm3d: then BM3D's Wiener stage with the
        refined output as pilot (`utils.prediction.bm3d_stage`). A 2D image of one channel
        is denoised again by `again` (z (H, W, 1) -> denoised z, the network's own
        normalisation; by default `predict` without TTA, none when im_mean or im_std is
        given): at coarser scales where it is very noisy, on the Anscombe transform where
        under a photon a pixel (`utils.prediction.coarse`)."""
        from utils.core.noise import estimate_noise_model
        from utils.prediction import coarse
        x, added = self.channels_last(image)
        f, _ = self.channels_last(denoised)
        noise = estimate_noise_model(x, f, channel_axis=-1)
        if again is None and im_mean is None and im_std is None:
            again = self.predict
        plane = again is not None and x.shape[-1] == 1 and x.ndim == 3  # one 2D channel
        net = lambda z: np.asarray(again(z[..., None]), np.float64)[..., 0]
        if plane and coarse.on_counts(noise, f[..., 0]):
            out, report = coarse.counts_output(x[..., 0], noise, net)
            out, reports = out[..., None], [report]
        else:
            mean, std = self.normalisers(x, im_mean, im_std)
            # where the coarser scales compete, their comparison with the refined output's
            # risk needs the network's divergence to ~0.001 (the noise variance is large):
            # every pixel of a larger crop probed
            precise = plane and coarse.worth_trying(x[..., 0], f[..., 0], noise.channel(0))
            probe = self.probe((x - mean) / std, output=(f - mean) / std if plain else None,
                               **(PRECISE_PROBE if precise else {}))
            out, reports = refine_with_report(x, f, noise, divergence=probe.divergence,
                                              channel_axis=-1, probe=probe)
        if plane:
            out, report = coarse.choose(x[..., 0], out[..., 0], reports[0], net)
            out, reports = out[..., None], [report]
        if bm3d:
            from utils.prediction.bm3d_stage import bm3d_stage
            out = bm3d_stage(x, out, [r.noise for r in reports], channel_axis=-1)
        return (out[..., 0] if added else out), reports

    def divergence(self, z: np.ndarray, side: int = DIVERGENCE_SIDE,
                   margin: int = DIVERGENCE_MARGIN, seed: int = 0,
                   output: Optional[np.ndarray] = None,
                   spacing: int = DIVERGENCE_SPACING) -> float:
        """The network's mean dF_i/dz_i on the normalised image z (spatial..., C), measured by
        `probe` (its arguments)."""
        return self.probe(z, side, margin, seed, output, spacing).divergence

    def probe(self, z: np.ndarray, side: int = DIVERGENCE_SIDE, margin: int = DIVERGENCE_MARGIN,
              seed: int = 0, output: Optional[np.ndarray] = None,
              spacing: int = DIVERGENCE_SPACING) -> Probe:
        """The network's response to one Monte-Carlo probe (Hutchinson) of the normalised image
        z (spatial..., C): (F(z + e b) - F(z)) / e, b random +-1 on every `spacing`-th pixel
        along each spatial axis (0 elsewhere), e 0.01, on a crop of at most `side` pixels
        along each of the last two spatial axes (all of the others), near the centre and on
        the network's downsampling grid of the whole image, the probe kept `margin` pixels
        away from the crop's edges, where the network sees less context than in the whole
        image (and so depends more on each pixel). Its `divergence`, b . response / |b|^2, is
        the network's mean dF_i/dz_i; the spaced probe leaves out the neighbours' couplings
        dF_i/dz_j, that estimate's noise: on 12 BSD68 images at sigma 25 (`blind32-N2S`) its
        std over probes was 0.0022 with side 96 and spacing 3 (0.0013 with side 128) against
        0.0027 with side 160 and every pixel probed (before), at 40 % of the time; a spacing
        prime to 2 probes every phase of the network's downsampling grid alike. The response
        is kept `margin` pixels from the crop's edges (0 nearer them).
        output: the network's own output F(z) of the whole image (`predict` without TTA or
        tiles), when known: F(z) on the crop is then taken from it and the network runs once,
        not twice (the same value wherever the network's receptive field ends within
        `margin`, 24 pixels for the shipped networks; else off by the context the crop
        lacks, which the random probe averages out). Costs about a thirteenth of a 481 x 321
        prediction with `output`, two thirteenths without (side 96). Deterministic (`seed`)."""
        spatial = z.shape[:-1]
        crop = tuple(self._grid_crop(n, side) if i >= len(spatial) - 2 else slice(None)
                     for i, n in enumerate(spatial))
        zc = z[crop]
        probe = np.random.default_rng(seed).choice([-1.0, 1.0], zc.shape).astype(np.float32)
        inner = tuple(slice(margin, n - margin) if i >= len(spatial) - 2 and n > 3 * margin
                      else slice(None) for i, n in enumerate(zc.shape[:-1]))
        mask = np.zeros(zc.shape, np.float32)
        mask[tuple(slice(a.start, a.stop, spacing) for a in inner)] = 1
        probe *= mask
        resizer = PadAndCropResizer()
        step = 0.01
        inputs = [zc + step * probe] if output is not None else [zc, zc + step * probe]
        padded = resizer.before(np.stack(inputs).astype(np.float32), self.multiple,
                                exclude=[0, -1])
        out = resizer.after(self.run(padded, 2), exclude=[0, -1])
        plain = np.asarray(output, np.float32)[crop] if output is not None else out[0]
        # the response inside the margin only, where it is exact: nearer the crop's edges the
        # whole image's output differs from the crop's by the context the crop lacks
        response = np.zeros(zc.shape, np.float32)
        response[inner] = ((out[-1] - plain) / step)[inner]
        return Probe(crop, probe, response)

    def _grid_crop(self, n: int, side: int) -> slice:
        """A crop of `side` rounded up to a multiple of `multiple` (at most what an axis of n
        pixels leaves room for), near its centre, on the grid of the whole image's padding
        (`PadAndCropResizer` pads (-n % multiple) // 2 before the first pixel), so that the
        network downsamples it as it does the whole image; the whole axis if n is no longer
        than the rounded side."""
        m = self.multiple
        side = -(-side // m) * m
        size = min(side, n - m + 1) // m * m  # leaves room for a start on the grid
        if n <= side or size <= 0:
            return slice(None)
        start = (n - size) // 2
        start -= (start + (-n % m) // 2) % m
        start += m if start < 0 else 0
        return slice(start, start + size)

    def _ensemble(self, denoise, x: np.ndarray, tta: bool) -> np.ndarray:
        return self_ensemble(denoise, x, self.dim) if tta else denoise(x)

    def _tiles(self, x: np.ndarray, size: int, margin: int, resizer: PadAndCropResizer,
               batch_size: int) -> np.ndarray:
        """x (spatial..., C), normalised, denoised tile by tile as `predict` denoises it whole:
        x is padded as a whole first and every tile starts at a multiple of `multiple` of the
        padded image (size rounded down and margin up to keep it so), so each tile sees the
        network's downsampling grid where the whole image does; pixels differ from `predict`
        only by the context a tile lacks beyond its margin."""
        size, margin = grid_tiles(size, margin, self.multiple)
        padded = resizer.before(x, self.multiple, exclude=-1)
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
