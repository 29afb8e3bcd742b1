"""The Wiener gate on what a denoiser removed, and Stein's unbiased risk estimate of each of
its candidates (windows and strengths) in one pass (`utils.prediction.refine` chooses among
them).

The gate: y = f + clip(1 - t * mean_w(v) / mean_w(r^2), 0, 1) * r, r = x - f, v the noise
variance per pixel, mean_w a w x w local mean (scipy's `uniform_filter`, mode 'reflect'), t
a strength. Arrays: one channel (spatial...), float64.
"""
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, reduce
from typing import List, Optional, Sequence, Tuple

import numpy as np

WINDOWS = (5, 13, 21)  # the window sides the risk estimate chooses from (9 added nothing
# where the DCT Wiener candidates follow: the same means at sigma 5, 25, Poisson peak 100)
STRENGTHS = (0.25, 0.35, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)  # and the strengths t

Candidate = Tuple[str, float, float, Optional[Tuple[int, float]]]  # `risk_terms`


def wiener(noisy: np.ndarray, denoised: np.ndarray, variance, window: int,
           strength: float = 1.0) -> np.ndarray:
    """The gate y = f + clip(1 - t * mean_w(v) / mean_w(r^2), 0, 1) * r of one channel, float64.
    noisy, denoised: (spatial...); variance: the noise variance, a scalar or per pixel;
    window: the side w (odd, >= 1); strength: t."""
    return _gate(noisy, denoised, variance, window, strength)[0]


def wiener_derivative(noisy: np.ndarray, denoised: np.ndarray, variance, window: int,
                      strength: float, divergence: float) -> Tuple[np.ndarray, np.ndarray]:
    """(`wiener`'s output, its derivative dy_i/dx_i per pixel) where the denoiser's own is
    `divergence`: d + (1 - d) g + r dg/dx_i (`risk_terms`)."""
    y, g, r, ratio, energy = _gate(noisy, denoised, variance, window, strength)
    d = float(divergence)
    moved = strength * ratio / energy * 2 * r * r * (1 - d) * _self_weight(r.shape, window)
    return y, d + (1 - d) * g + np.where((g > 0) & (g < 1), moved, 0.0)


def _gate(noisy: np.ndarray, denoised: np.ndarray, variance, window: int, strength: float
          ) -> Tuple[np.ndarray, ...]:
    """(y, g, r, ratio, energy) of `wiener`: the output, the gate, the residual, mean_w(v) /
    mean_w(r^2) and mean_w(r^2), float64 arrays of the image's shape."""
    from scipy.ndimage import uniform_filter
    if window < 1:
        raise ValueError(f"the refinement window must be at least 1 pixel, got {window}")
    x, f = np.asarray(noisy, np.float64), np.asarray(denoised, np.float64)
    r = x - f
    v = np.broadcast_to(np.asarray(variance, np.float64), x.shape)
    local_v = v if v.min() == v.max() else uniform_filter(v, window, mode='reflect')
    energy = np.maximum(uniform_filter(r * r, window, mode='reflect'), 1e-300)
    ratio = local_v / energy
    g = np.clip(1 - strength * ratio, 0, 1)
    return f + g * r, g, r, ratio, energy


def risk_terms(x: np.ndarray, f: np.ndarray, v: np.ndarray, divergence: float,
               scored: Optional[np.ndarray] = None, windows: Sequence[int] = WINDOWS,
               strengths: Sequence[float] = STRENGTHS) -> List[Candidate]:
    """Each candidate's (name, fit, lin, (window, strength) or None for 'input' and 'network'):
    its SURE over the `scored` pixels (bool, all when None) is fit + k * lin where the true
    noise variance is k * v. x, f, v: one channel (spatial...); divergence: the network's."""
    from scipy.ndimage import uniform_filter
    r = x - f
    r2 = r * r
    d = float(divergence)
    vs, r2s = (v, r2) if scored is None or scored.all() else (v * scored, r2 * scored)
    total_v = float(vs.sum())
    # SURE = sum((1-g)^2 r^2) + sum(v (2 dy - 1)), dy = g + (1-g) d + r dg/dx
    candidates = [('input', 0.0, total_v, None),
                  ('network', float(r2s.sum()), total_v * (2 * d - 1), None)]
    # a pixel is gated by strength t (0 < g < 1) where its ratio < 1 / t, else g = 0: the
    # risk's sums for all strengths are cumulative sums over the ratio's bins between the 1 / t
    if min(strengths) <= 0 or min(windows) < 1:
        raise ValueError(f"refinement strengths must be positive and windows at least 1 pixel, "
                         f"got {tuple(strengths)} and {tuple(windows)}")
    inverse = 1 / np.asarray(strengths, np.float64)
    thresholds = np.sort(inverse)
    weighted = vs * r2 * 2 * (1 - d)  # the window-independent factors of r dg/dx
    flat = float(v.min()) == float(v.max())  # Gaussian: the local mean of v is v

    def window_sums(w: int) -> List[np.ndarray]:
        """The risk's sums over the ratio's bins (cumulative), for window w."""
        size = (w,) * r.ndim
        energy = np.maximum(uniform_filter(r2, size, mode='reflect'), 1e-300)
        ratio = (v if flat else uniform_filter(v, size, mode='reflect')) / energy
        # r dg/dx = t * ratio / energy * 2 r^2 (1 - d) * (x_i's weight in its own window)
        vq = weighted * ratio / energy * _self_weight(r.shape, w)
        below = np.zeros(ratio.shape, np.int8)  # how many thresholds are <= ratio
        for threshold in thresholds:  # (faster than searchsorted here)
            below += ratio >= threshold
        below = below.ravel()
        inside = lambda q: np.cumsum(np.bincount(below, q.ravel(), len(thresholds) + 1))
        r2_ratio = r2s * ratio
        return [inside(vs), inside(vs * ratio), inside(r2s), inside(r2_ratio * ratio),
                inside(vq)]

    # the windows are independent: numpy and scipy let go of the GIL, so threads share cores
    with ThreadPoolExecutor(max(1, min(len(windows), os.cpu_count() or 1))) as pool:
        sums = list(pool.map(window_sums, windows))
    for w, (v_in, v_ratio_in, r2_in, r2_ratio2_in, vq_in) in zip(windows, sums):
        for t, inv in zip(strengths, inverse):
            j = int(np.searchsorted(thresholds, inv))  # bins 0..j: the ratio below 1 / t
            fit = t * t * r2_ratio2_in[j] + (r2_in[-1] - r2_in[j])  # (1 - g)^2 r^2
            lin = (2 * (1 - d) * (v_in[j] - t * v_ratio_in[j]) + (2 * d - 1) * total_v
                   + 2 * t * vq_in[j])
            candidates.append((f'window {w}, strength {t:g}', float(fit), float(lin), (w, t)))
    return candidates


def _self_weight(shape: Sequence[int], window: int) -> np.ndarray:
    """The weight of each pixel in its own window's mean (`uniform_filter`, mode 'reflect'),
    an array of `shape`: 1 / window^n inside, more near an edge, where the pixel's mirror
    image falls in its window too. The outer product of `_self_weights`."""
    return reduce(np.multiply.outer, _self_weights(tuple(shape), window))


@lru_cache(maxsize=64)
def _self_weights(shape: Tuple[int, ...], window: int) -> Tuple[np.ndarray, ...]:
    """`_self_weight`'s factor along each axis (n,), read-only."""
    half = window // 2
    factors = []
    for n in shape:
        i = np.arange(n)[:, None]
        p = i + np.arange(-half, window - half)[None, :]  # scipy's window, odd or even
        while np.any((p < 0) | (p >= n)):  # mirrored (half-sample symmetric) until inside
            p = np.where(p < 0, -1 - p, np.where(p >= n, 2 * n - 1 - p, p))
        factor = (p == i).sum(axis=1) / window
        factor.flags.writeable = False
        factors.append(factor)
    return tuple(factors)
