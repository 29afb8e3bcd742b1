"""Noise-aware refinement of a denoiser's output: a Wiener filter on what it removed.

A network trained at one noise level over-smooths images with less noise (at sigma 5 the
shipped sigma-25 models return images 5 dB worse than their input). With r = x - f (what the
network removed from the noisy image x) and s2 the noise variance, the part of r that is
signal is put back, pixel by pixel:

    y = f + max(0, 1 - s2 / mean_w(r**2)) * r

mean_w a local mean over a w x w window (like the Wiener second stage of BM3D). Where the
network removed about the noise (mean_w(r^2) ~ s2) nothing changes; where it removed more
(edges and texture it smoothed away), that part comes back. s2 is estimated blindly from x
(scikit-image's wavelet `estimate_sigma`, per channel), so no knob depends on the noise level
but the window, which `window_for` picks from the estimated noise level relative to the
image's std (tuned on the BSD68 validation images, `python -m benchmarks.noise_levels --tune`).

Arrays: (spatial...) or (spatial..., C) with `channel_axis=-1`; any value range (the noise std
is in the image's units); float32 out.
"""
from typing import Optional, Sequence, Union

import numpy as np

from utils.core.noise import noise_std

# (relative noise below which, window): the first row whose bound exceeds the estimated
# noise std / image std is used. Chosen on the 4 held-out BSD68 validation images at sigma
# 5..50 with the bsd68-N2S model (`python -m benchmarks.noise_levels --tune --from
# ../shared/data/bsd68`, results/noise_levels/tune.md): the best window grows with the noise,
# from 5 at sigma 5 to 21 at sigma 50; neighbouring windows differ by <= 0.1 dB.
WINDOWS = ((0.3, 5), (0.45, 7), (0.6, 9), (0.7, 13), (float('inf'), 21))


def window_for(relative_noise: float) -> int:
    """The window side for an image whose noise std is `relative_noise` times its std."""
    for bound, window in WINDOWS:
        if relative_noise < bound:
            return window
    return WINDOWS[-1][1]


def refine(noisy: np.ndarray, denoised: np.ndarray,
           sigma: Union[None, float, Sequence[float]] = None, window: Optional[int] = None,
           channel_axis: Optional[int] = None) -> np.ndarray:
    """Put back the signal part of noisy - denoised (see the module docstring).

    noisy, denoised: the same shape, (spatial...) or (spatial..., C) with channel_axis=-1.
    sigma: the noise std in the image's units (one, or one per channel); estimated from `noisy`
    when None. window: the side of the local mean (odd, >= 1); `window_for` the estimated
    relative noise level when None. Returns float32 of the input's shape.
    """
    from scipy.ndimage import uniform_filter
    x = np.asarray(noisy, np.float64)
    f = np.asarray(denoised, np.float64)
    if x.shape != f.shape:
        raise ValueError(f"noisy {x.shape} and denoised {f.shape} differ in shape")
    if channel_axis is not None:
        x, f = np.moveaxis(x, channel_axis, -1), np.moveaxis(f, channel_axis, -1)
    else:
        x, f = x[..., None], f[..., None]
    sigmas = noise_std(x, channel_axis=-1) if sigma is None else \
        np.broadcast_to(np.asarray(sigma, np.float64), (x.shape[-1],))
    if window is None:
        spread = float(np.mean(np.std(x, axis=tuple(range(x.ndim - 1)))))
        window = window_for(float(np.mean(sigmas)) / max(spread, 1e-12))
    if window < 1:
        raise ValueError(f"the refinement window must be at least 1 pixel, got {window}")
    r = x - f
    size = (window,) * (x.ndim - 1) + (1,)
    energy = uniform_filter(r * r, size=size, mode='reflect')
    gain = np.clip(1 - sigmas ** 2 / np.maximum(energy, 1e-12), 0, 1)
    y = f + gain * r
    y = y[..., 0] if channel_axis is None else np.moveaxis(y, -1, channel_axis)
    return y.astype(np.float32)
