"""The network at a coarser scale, for images so noisy that a pixel's neighbourhood says more
than the network's field of view sees: the image's k x k sums (k^2 times the signal, k times
the noise std) are denoised by the network and interpolated back (linear).

Two uses, both for one 2D channel (`Predictor.refine`):
- Under STABILISE_BELOW photons a pixel (`on_counts`: photon noise dominating, read noise
  under one photon), where the refinement's Gaussian risk estimate does not hold: the network
  on the generalised Anscombe transform (`NoiseModel.stabilise`) of the 2 x 2 sums, always.
  Chosen on 25 BSD68 training images and 5 scikit-image photographs (train PNGs 4, 20, ...;
  camera, moon, coins, cell, text) at peaks 1, 2, 3 and 5, by the photons a pixel of each:
  under 0.5, +1.47 dB over the network alone (2 of 24 images worse); 0.5-0.75, +0.50 (6 of 21
  worse); 0.75-1.5, +0.4 with half the images worse; above, a loss. (The network on the
  whole image's transform: +0.47 dB under 0.5 photons, +0.17 to -0.01 above.)
- Where the noise std is above COARSE_ABOVE times the image's std and the Gaussian risk
  estimate holds (the refinement made one: not under 8 photons a pixel, not clipped): the
  sums of 2 x 2, 3 x 3 and 4 x 4 pixels, each chosen over the refined output where its Stein's
  unbiased risk estimate, mean((y - x)^2) - mean(v) + 2 mean(v) div(y) with the divergence by
  one probe through the whole chain, is below the refinement's (`Refinement.risk`). On 25 of
  the validation images above (`mixed32-N2S`): +2.9 dB at peak 1 with read noise of 2
  photons, +0.7 at peak 3 with it, +0.07 at peak 10 with it and at Gaussian sigma 50 and 70;
  the same with COARSE_ABOVE 0.6 and 0.8 (the images it helps are noisier), and 0.8 spares
  the BSD68 images at sigma 25 its cost (6 network passes on the smaller images, about 0.4 s
  an image here).
Sums are denoised on their Anscombe transform where photon noise dominates (read noise k^2 b:
a sum of k^2 pixels of variance a y + b has variance a * sum + k^2 b), else as they are.
Arrays: x (H, W) float in the image's units.
"""
from typing import Callable, Tuple

import numpy as np

from utils.core.noise import NoiseModel
from utils.prediction.refine import Refinement

FACTORS = (2, 3, 4)  # the bin sides tried
COARSE_ABOVE = 0.8  # the relative noise above which they are tried
STABILISE_BELOW = 0.5  # photons a pixel below which the network sees the 2 x 2 sums' transform
COUNTS_FACTOR = 2  # their side


def on_counts(noise: NoiseModel, signal: np.ndarray) -> bool:
    """Whether a channel is so few photon counts that the network denoises its 2 x 2 sums'
    Anscombe transform (`counts_output`) instead of being refined: photon noise dominating
    (`photon_dominated`), under STABILISE_BELOW photons a pixel on average, read noise under
    one photon (std). noise: the channel's model; signal: the network's output (H, W)."""
    a, b = float(noise.a[0]), float(noise.b[0])
    return noise.photon_dominated(signal) and noise.photons(signal) < STABILISE_BELOW \
        and b < a * a


def counts_output(x: np.ndarray, noise: NoiseModel, denoise: Callable[[np.ndarray], np.ndarray]
                  ) -> Tuple[np.ndarray, Refinement]:
    """The output where `on_counts`: `coarse` of COUNTS_FACTOR, and what it did."""
    choice = (f"the network at 1/{COUNTS_FACTOR} resolution on the Anscombe transform (under "
              f"{STABILISE_BELOW:g} photons a pixel)")
    y = coarse(x, COUNTS_FACTOR, noise, denoise, stabilise=True)
    return y.astype(np.float32), Refinement(choice, noise, None, None)


def bin_sums(x: np.ndarray, k: int) -> np.ndarray:
    """The sums of the k x k blocks of x (H, W), the ragged edge left out: (H // k, W // k)."""
    h, w = x.shape[0] // k * k, x.shape[1] // k * k
    return x[:h, :w].reshape(h // k, k, w // k, k).sum(axis=(1, 3))


def upsample(y: np.ndarray, k: int, shape: Tuple[int, int]) -> np.ndarray:
    """Block means y (h, w) back to `shape` (H, W): linear interpolation between the blocks'
    centres (constant beyond them), the ragged edge repeating the last row and column."""
    from scipy.ndimage import zoom
    up = zoom(np.asarray(y, np.float64), k, order=1, grid_mode=True, mode='nearest')
    return np.pad(up, [(0, n - m) for n, m in zip(shape, up.shape)], mode='edge')


def coarse(x: np.ndarray, k: int, noise: NoiseModel,
           denoise: Callable[[np.ndarray], np.ndarray], stabilise: bool) -> np.ndarray:
    """The network's estimate of x (H, W) at 1/k resolution, interpolated back to (H, W):
    `denoise` (an image -> its denoised version, the network's own normalisation) of the
    k x k sums, on their Anscombe transform when `stabilise` (photon noise dominating)."""
    sums = bin_sums(x, k)
    if stabilise:
        summed = NoiseModel(noise.a, noise.b * k * k, noise.spread)
        means = summed.unstabilise(denoise(summed.stabilise(sums))) / (k * k)
    else:
        means = denoise(sums / (k * k))
    return upsample(means, k, x.shape)


def candidate(choice: str, x: np.ndarray, k: int, noise: NoiseModel,
              denoise: Callable[[np.ndarray], np.ndarray], stabilise: bool, seed: int = 0
              ) -> Tuple[np.ndarray, Refinement]:
    """(`coarse` output, its Refinement with the risk estimate per pixel): the divergence by
    one probe b (+-1) of step 1 % of the noise std through the whole chain,
    b . (y(x + e b) - y(x)) / e."""
    y = coarse(x, k, noise, denoise, stabilise)
    v = float(np.mean(noise.variance(y)))
    probe = np.random.default_rng(seed).choice([-1.0, 1.0], x.shape)
    step = 0.01 * np.sqrt(v)
    moved = coarse(x + step * probe, k, noise, denoise, stabilise)
    div = float(np.mean(probe * (moved - y)) / step)
    # no gain is reported: at this noise the risk is a small difference of large numbers, off
    # by several dB for a 1 % error in v, though the comparison with the refined output,
    # where the same v cancels, holds
    risk = float(np.mean((y - x) ** 2)) + v * (2 * div - 1)
    return y.astype(np.float32), Refinement(choice, noise, None, None, risk)


def choose(x: np.ndarray, refined: np.ndarray, report: Refinement,
           denoise: Callable[[np.ndarray], np.ndarray]) -> Tuple[np.ndarray, Refinement]:
    """The coarse candidate of least risk where that is below the refined output's
    (the refinement's `Refinement.risk`), else the refined output as it is; tried only
    `worth_trying`."""
    noise = report.noise
    if report.risk is None or not worth_trying(x, refined, noise):
        return refined, report
    best = (refined, report)
    stabilise = noise.photon_dominated(x)  # once (a percentile over the image), as measured
    for k in FACTORS:
        if min(x.shape) < 8 * k:
            break
        y, found = candidate(f"the network at 1/{k} resolution ({k} x {k} sums)", x, k,
                             noise, denoise, stabilise)
        if found.risk < best[1].risk:
            best = (y, found)
    return best


def worth_trying(x: np.ndarray, signal: np.ndarray, noise: NoiseModel) -> bool:
    """A 2D image (H, W) whose noise std is above COARSE_ABOVE times its std, not clipped."""
    clipped = np.isfinite(noise.low[0]) or np.isfinite(noise.high[0])
    std = float(np.sqrt(np.mean(noise.variance(signal))))
    return x.ndim == 2 and not clipped and std > COARSE_ABOVE * float(np.std(x))
