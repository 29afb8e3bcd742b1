"""Blind noise estimates of an image and the loss weight lmbd derived from them."""
from typing import Optional

import numpy as np


def lmbd_for_noise(images, sigma: float) -> float:
    """Noise2Same's lmbd = 2 x sigma, with sigma measured after `normalise_each`.

    images: the raw noisy training images (any shapes), sigma: the std of their additive noise
    in the same units (25 for BSD68 on 0..255). Dividing image i by its std s_i turns the noise
    std into sigma / s_i; the loss averages squared errors over all pixels, so the images
    share one root-mean-square noise level: lmbd = 2 * sqrt(mean_i (sigma / s_i)^2).
    """
    if not sigma > 0:
        raise ValueError(f"noise sigma must be positive, got {sigma}")
    stds = np.array([float(np.std(x)) for x in images])
    if stds.size == 0 or not np.all(stds > sigma):
        raise ValueError(f"noise sigma {sigma} is not below every training image's std (smallest "
                         f"{stds.min() if stds.size else 'none'}): give sigma in the images' units")
    return float(2 * np.sqrt(np.mean((sigma / stds) ** 2)))


def relative_noise(image, dim: int = 2) -> float:
    """Blind noise std of one image over its own std (scikit-image's wavelet `estimate_sigma`,
    averaged over channels): unit-free. image: `dim`-D (spatial...) or (spatial..., C)."""
    from skimage.restoration import estimate_sigma
    x = np.asarray(image, np.float64)
    sigma = estimate_sigma(x, average_sigmas=True, channel_axis=-1 if x.ndim == dim + 1 else None)
    return float(sigma) / max(float(np.std(x)), 1e-12)


def lmbd_estimated(images, dim: int = 2) -> float:
    """lmbd = 2 x the noise std after `normalise_each`, each image's estimated blindly
    (`relative_noise`), so that images of different value ranges mix."""
    return float(2 * np.sqrt(np.mean([relative_noise(x, dim) ** 2 for x in images])))


def noise_std(image: np.ndarray, channel_axis: Optional[int] = None) -> np.ndarray:
    """Blind Gaussian noise std of `image` in its own units: one value, or one per channel
    (scikit-image's `estimate_sigma`, the median of the finest wavelet coefficients)."""
    from skimage.restoration import estimate_sigma
    x = np.asarray(image, np.float64)
    sigma = estimate_sigma(x, channel_axis=channel_axis)
    return np.atleast_1d(np.asarray(sigma, np.float64))


def haar_noise_std(x):
    """Blind noise std of each image of a batch (B, spatial..., C) -> (B,): the median absolute
    finest diagonal Haar coefficient over the last two spatial axes / 0.6745 (Donoho's MAD
    estimate, as skimage's estimate_sigma does with another wavelet); exact for white noise
    on a flat image, above it where the image has fine texture."""
    import tensorflow as tf  # here: the rest of this module serves scripts before TF starts
    h, w = x.shape[-3] // 2 * 2, x.shape[-2] // 2 * 2
    diagonal = (x[..., 0:h:2, 0:w:2, :] - x[..., 0:h:2, 1:w:2, :]
                - x[..., 1:h:2, 0:w:2, :] + x[..., 1:h:2, 1:w:2, :]) / 2.0
    values = tf.sort(tf.reshape(tf.abs(diagonal), [tf.shape(x)[0], -1]), axis=-1)
    return tf.stop_gradient(values[:, tf.shape(values)[1] // 2] / 0.6745)
