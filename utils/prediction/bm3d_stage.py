"""BM3D's Wiener stage with the refined network output as its pilot (`test_single.py --refine
bm3d`): the second stage of BM3D (Dabov et al. 2007; the `bm3d` package of Makinen et al.)
filters the noisy image in groups of similar patches, with the Wiener weights taken from a
pilot estimate; given the network's refined output as that pilot instead of BM3D's own first
stage, it adds what non-local averaging of the noisy image still finds. About 4 s per 481 x 321
image on a laptop core, 2D images only.

The `bm3d` package is an optional extra (`pip install -r requirements-extra.txt`) under
Tampere University's licence, which allows informational, non-commercial use only (its
LICENSE file).

Noise: the image's Poisson-Gaussian model v = a*y + b (`utils.core.noise`). Where photon noise
dominates (`NoiseModel.photon_dominated`) it is filtered on the generalised Anscombe transform
of the counts x / a with read noise std sqrt(b) / a (noise std ~1) and mapped back by its
unbiased inverse (`NoiseModel.stabilise`, `unstabilise`); elsewhere (Gaussian noise, a
colour-difference channel centred on 0) as Gaussian noise at the model's root-mean-square std.
"""
from typing import Optional, Sequence

import numpy as np

from utils.core.noise import NoiseModel


def bm3d_package():
    """The `bm3d` module, or an OSError saying how to install it (and its licence)."""
    from utils.core.environment import import_extra
    return import_extra('bm3d', "--refine bm3d (the bm3d package's licence allows "
                                "non-commercial use only)")


def bm3d_wiener(noisy: np.ndarray, pilot: np.ndarray, noise: NoiseModel) -> np.ndarray:
    """BM3D's Wiener stage of one channel (H, W) of `noisy` with `pilot` (H, W) as its pilot,
    under the channel's noise model; the image's units in and out, float32."""
    package = bm3d_package()
    x, f = np.asarray(noisy, np.float64), np.asarray(pilot, np.float64)
    if x.ndim != 2 or x.shape != f.shape:
        raise ValueError(f"--refine bm3d takes 2D images of one channel, got {x.shape} and "
                         f"{f.shape}")
    if not noise.photon_dominated(f):  # Gaussian at the model's rms std
        std = max(float(np.sqrt(np.mean(noise.variance(f)))), 1e-6)
        return np.asarray(package.bm3d(x, sigma_psd=std, stage_arg=f), np.float32)
    z, p = noise.stabilise(x), noise.stabilise(np.clip(f, 0, None))
    # centred: where read noise dominates, z ~ 2 * read is large and BM3D's float32 would
    # lose its noise (std 1) to round-off
    centre = float(np.mean(z))
    z = package.bm3d(z - centre, sigma_psd=1.0, stage_arg=p - centre) + centre
    return noise.unstabilise(z).astype(np.float32)


def bm3d_stage(noisy: np.ndarray, pilot: np.ndarray, noises: Sequence[NoiseModel],
               channel_axis: Optional[int] = None) -> np.ndarray:
    """`bm3d_wiener` of each channel: noisy, pilot (H, W) or with channels on `channel_axis`;
    noises: each channel's model (the refinement's `Refinement.noise`)."""
    x, f = np.asarray(noisy), np.asarray(pilot)
    if channel_axis is None:
        return bm3d_wiener(x, f, noises[0])
    x, f = np.moveaxis(x, channel_axis, -1), np.moveaxis(f, channel_axis, -1)
    out = np.stack([bm3d_wiener(x[..., c], f[..., c], noises[c]) for c in range(x.shape[-1])],
                   axis=-1)
    return np.moveaxis(out, -1, channel_axis)
