"""Evaluation: PSNR on the 0..255 scale (BSD68 protocol) and the CARE scores (3D Planaria).

The CARE scores use scikit-image's metrics; only the affine fit is written here.
"""
import time
from typing import Callable, Dict, Sequence, Tuple

import numpy as np
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from utils.core.normalisation import normalise_percentile


def PSNR(gt: np.ndarray, img: np.ndarray) -> float:
    """20 log10(255) - 10 log10(mean((gt - img)^2)): images on the 0..255 scale, unclipped."""
    mse = np.mean(np.square(np.asarray(gt, np.float64) - np.asarray(img, np.float64)))
    return float(20 * np.log10(255) - 10 * np.log10(mse))


def SSIM(gt: np.ndarray, img: np.ndarray, data_range: float = 255.0) -> float:
    """scikit-image's SSIM of two grey or channel-last images with the given data range."""
    channel_axis = -1 if gt.ndim == 3 and gt.shape[-1] in (3, 4) else None
    return float(structural_similarity(np.asarray(gt, np.float64), np.asarray(img, np.float64),
                                       data_range=data_range, channel_axis=channel_axis))


def score_denoiser(denoise: Callable[[np.ndarray], np.ndarray], images: Sequence) -> Dict:
    """Mean PSNR, SSIM and seconds per image of `denoise` over test images (objects with
    `.noisy` and `.clean`, e.g. `datasets.TestImage`); the first call is a warm-up, not timed."""
    denoise(images[0].noisy)
    scores = []
    for image in images:
        start = time.perf_counter()
        pred = denoise(image.noisy)
        seconds = time.perf_counter() - start
        scores.append((PSNR(image.clean, pred), SSIM(image.clean, pred), seconds))
    psnr, ssim, seconds = np.mean(scores, axis=0)
    return {'psnr': float(psnr), 'ssim': float(ssim), 'seconds': float(seconds)}


def norm_minmse(gt: np.ndarray, x: np.ndarray, normalise_gt: bool = True
                ) -> Tuple[np.ndarray, np.ndarray]:
    """Percentile-normalise gt (0.1, 99.9) and fit x to it affinely (least squares).

    Returns (gt, x) both with zero mean, x scaled to minimise the MSE to gt.
    """
    if normalise_gt:
        gt = normalise_percentile(gt, 0.1, 99.9, clip=False).astype(np.float32, copy=False)
    x = x.astype(np.float32, copy=False) - np.mean(x)
    gt = gt.astype(np.float32, copy=False) - np.mean(gt)
    scale = np.cov(x.flatten(), gt.flatten())[0, 1] / np.var(x.flatten())
    return gt, scale * x


def get_scores(gt: np.ndarray, x: np.ndarray) -> Tuple[float, float, float]:
    """CARE scores after `norm_minmse`: (NRMSE, PSNR with range 1, SSIM with range 1)."""
    gt_, x_ = norm_minmse(gt, x)
    mse = mean_squared_error(gt_, x_)
    psnr = peak_signal_noise_ratio(gt_, x_, data_range=1.0)
    ssim = structural_similarity(gt_, x_, data_range=1.0)
    return float(np.sqrt(mse)), float(psnr), float(ssim)
