"""Normalisation of images: by mean and std, by percentiles, by minimum and maximum."""

import numpy as np


def normalise_each(images, what: str = 'training image') -> np.ndarray:
    """Each image minus its own mean, divided by its own std (as the original scripts do);
    a constant image becomes zeros. NaN or Inf values are an error that says how many."""
    for i, x in enumerate(images):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        if bad:
            raise ValueError(f"{what} {i} holds {bad} NaN or Inf values; clean the data")
    return np.array([(x - x.mean()) / max(float(x.std()), 1e-12) for x in images], np.float32)


def normalise(image: np.ndarray, per_channel: bool) -> np.ndarray:
    """(x - mean) / std over the image, or over each channel (per_channel); constant -> 0."""
    axes = tuple(range(image.ndim - 1)) if per_channel else None
    mean, std = image.mean(axes), image.std(axes)
    return ((image - mean) / np.maximum(std, 1e-12)).astype(np.float32)


def normalise_min_max(x: np.ndarray, mi, ma, clip: bool = False, eps: float = 1e-20,
                      dtype=np.float32) -> np.ndarray:
    """(x - mi) / (ma - mi + eps), optionally clipped to [0, 1]."""
    x = x.astype(dtype, copy=False)
    x = (x - dtype(mi) if np.isscalar(mi) else x - np.asarray(mi, dtype)) / (
        np.asarray(ma, dtype) - np.asarray(mi, dtype) + dtype(eps))
    return np.clip(x, 0, 1) if clip else x


class PercentileNormaliser:
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
        return normalise_min_max(img, self.mi, self.ma, dtype=self.dtype, **self.kwargs)

    def after(self, img: np.ndarray) -> np.ndarray:
        if not self.do_after:
            raise ValueError("this normaliser was made with do_after=False")
        return ((self.ma - self.mi) * img + self.mi).astype(self.dtype, copy=False)


def normalise_percentile(x: np.ndarray, pmin: float = 2, pmax: float = 99.8, axis=None,
                         clip: bool = False, eps: float = 1e-20, dtype=np.float32) -> np.ndarray:
    """Percentile normalisation: the pmin and pmax percentiles go to 0 and 1."""
    mi = np.percentile(x, pmin, axis=axis, keepdims=True)
    ma = np.percentile(x, pmax, axis=axis, keepdims=True)
    return normalise_min_max(x, mi, ma, clip=clip, eps=eps, dtype=dtype)
