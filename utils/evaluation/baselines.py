"""Classical denoisers to compare with: scikit-image's non-local means and BM3D.

Both are blind like Noise2Same: the noise level comes from scikit-image's `estimate_sigma`
(BM3D can also be given the true sigma, its best case).
Input and output: one grey image (H, W), float, any value range (0..255 in the benchmarks);
`nlm` with channel_axis=-1 and `bm3d_rgb` take colour images (H, W, 3).
"""
from typing import Callable, Optional

import numpy as np

from utils.core.noise import anscombe, inverse_anscombe


def nlm(noisy: np.ndarray, channel_axis: Optional[int] = None,
        sigma: Optional[float] = None) -> np.ndarray:
    """scikit-image's non-local means (fast mode, 5x5 patches, search distance 6, h = 0.8 sigma;
    sigma given, or estimated, averaged over the channels of a colour image with
    channel_axis=-1)."""
    from skimage.restoration import denoise_nl_means, estimate_sigma
    if sigma is None:
        sigma = float(estimate_sigma(noisy, channel_axis=channel_axis, average_sigmas=True))
    return denoise_nl_means(noisy, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5,
                            patch_distance=6, channel_axis=channel_axis)


def bm3d(noisy: np.ndarray, sigma: Optional[float] = None) -> np.ndarray:
    """BM3D (the `bm3d` package, Makinen et al.) at the noise std `sigma` when it is known, else
    at scikit-image's estimate (blind)."""
    from skimage.restoration import estimate_sigma

    from utils.core.environment import import_extra
    bm3d_package = import_extra('bm3d', 'the BM3D baseline')
    sigma = float(estimate_sigma(noisy)) if sigma is None else float(sigma)
    return np.asarray(bm3d_package.bm3d(noisy, sigma_psd=sigma), np.float32)


def bm3d_rgb(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """The `bm3d` package's colour BM3D (opponent colour space) of (H, W, 3) at the noise std
    `sigma` of each RGB value."""
    from utils.core.environment import import_extra
    bm3d_package = import_extra('bm3d', 'the BM3D baseline')
    return np.asarray(bm3d_package.bm3d_rgb(noisy, sigma), np.float32)


def on_anscombe(denoise: Callable[[np.ndarray], np.ndarray], noisy: np.ndarray, peak: float,
                read: float = 0.0) -> np.ndarray:
    """A Gaussian denoiser of noise std 1 applied to a Poisson-Gaussian image through the
    generalised Anscombe transform (`utils.core.noise.anscombe`) with known parameters: noisy on 0..255 with the brightest
    value `peak` photons and read noise `read` photons (std), as
    `bsd68_build.poisson_gaussian` makes it; the result on 0..255, float32."""
    scale = 255.0 / peak
    out = inverse_anscombe(denoise(anscombe(np.asarray(noisy, np.float64) / scale, read)), read)
    return (out * scale).astype(np.float32)
