"""Classical denoisers to compare with: scikit-image's non-local means and BM3D.

Both are blind like Noise2Same: the noise level comes from scikit-image's `estimate_sigma`
(BM3D can also be given the true sigma, its best case).
Input and output: one grey image (H, W), float, any value range (0..255 in the benchmarks).
"""
from typing import Optional

import numpy as np


def nlm(noisy: np.ndarray) -> np.ndarray:
    """scikit-image's non-local means (fast mode, 5x5 patches, search distance 6, h = 0.8 sigma)."""
    from skimage.restoration import denoise_nl_means, estimate_sigma
    sigma = float(estimate_sigma(noisy))
    return denoise_nl_means(noisy, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5,
                            patch_distance=6)


def bm3d(noisy: np.ndarray, sigma: Optional[float] = None) -> np.ndarray:
    """BM3D (the `bm3d` package, Makinen et al.) at the noise std `sigma` when it is known, else
    at scikit-image's estimate (blind)."""
    from skimage.restoration import estimate_sigma

    from .cli import import_extra
    bm3d_package = import_extra('bm3d', 'the BM3D baseline')
    sigma = float(estimate_sigma(noisy)) if sigma is None else float(sigma)
    return np.asarray(bm3d_package.bm3d(noisy, sigma_psd=sigma), np.float32)
