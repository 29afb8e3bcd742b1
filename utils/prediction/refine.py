"""Noise-aware refinement of a denoiser's output: a Wiener gate on what it removed, chosen per
image by an unbiased risk estimate so that the output is not worse than the input or the
network alone.

A network trained at some noise levels over-smooths images with less noise, and no network
is best everywhere. With r = x - f (what the network removed from the noisy image x) and v
the noise variance at each pixel (a Poisson-Gaussian model v = a*f + b estimated from the
image, `utils.core.noise.estimate_noise_model`: bright parts of a photon-counting image are
noisier), the part of r that is signal is put back:

    y = f + g * r,   g = clip(1 - t * mean_w(v) / mean_w(r**2), 0, 1)

mean_w a local mean over a w x w window (like the Wiener stage of BM3D), t a strength. Where the
network removed about the noise nothing changes; where it removed more (edges and texture it
smoothed away), that part comes back. The window and strength are chosen per image and
channel among CANDIDATES, together with the two safe answers, the input itself (g = 1) and
the network alone (g = 0), by Stein's unbiased risk estimate under the noise model,

    SURE(y) = sum (y - x)^2 - sum v + 2 sum v * dy_i/dx_i,

whose divergence term needs the network's own mean dF_i/dx_i (`Predictor.divergence`
measures it by one Monte-Carlo probe). The noise model is uncertain (texture read as noise
at low noise levels): the candidate chosen has the smallest worst-case regret against the
better of input and network at both ends of the model's uncertainty, v * lower and v * (1 +
delta), delta the model's own spread (at least MIN_DELTA). The lower end reaches further
because texture only ever inflates the estimate: to 1 - max(delta, LOWER), and further where
a second estimate that texture does not inflate, the kurtosis of natural images
(`utils.core.noise.kurtosis_scale`, k), says the noise is smaller: to KURTOSIS_MARGIN * k,
but not below LOWEST; k is consulted only where the noise std is below KURTOSIS_BELOW times
the image's std (with more noise the signal's kurtosis is buried and k errs: at 1-3 photons a
pixel with read noise it cost 3-4 dB). LOWER was chosen on the BSD68 validation images and
scikit-image photographs at sigma 5-25 and Poisson peaks 30 and 100 (0.4 raised the mean at
sigma 5 by 0.5 dB); the rest on those and 50 BSD68 training images at sigma 5, 10 and 25 and
Poisson-Gaussian noise, where without them 3 of 64 came back below their input at sigma 5 (by
up to 1.4 dB): KURTOSIS_MARGIN covers k's usual over-estimate (its 90th percentile, std +12 %
to +22 %), LOWEST the high-pass estimate's largest (std x 2), KURTOSIS_BELOW the noise levels
where texture inflates that estimate (sigma 5-15: 0.2-0.4 of the image's std); the
gentlest strengths (0.25, 0.35) are what the wider lower end chooses.
At low photon counts (under LOW_COUNTS photons per pixel on average) the Gaussian risk
estimate does not hold and the network's output is returned as it is (under half a photon
a pixel `Predictor.refine` runs the network again: `utils.prediction.coarse`); neither does
it where the data were clipped (an 8-bit photo's noise cut off at 0 and 255:
`NoiseModel.low/high`), so the risk is estimated on the pixels further than CLIP_MARGIN noise
stds from a clipped end (the network's output is kept when fewer than MIN_SCORED of them are).

Arrays: (spatial...) or (spatial..., C) with `channel_axis=-1`; any value range (the noise is
in the image's units); float32 out.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from utils.core.noise import NoiseModel, estimate_noise_model, kurtosis_scale

WINDOWS = (5, 9, 13, 21)  # the window sides the risk estimate chooses from
STRENGTHS = (0.25, 0.35, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)  # and the strengths t
MIN_DELTA = 0.03  # the noise variance is never taken as known better than +-3 %
LOWER = 0.4  # its lower end at most 1 - LOWER: texture only ever inflates the estimate
KURTOSIS_MARGIN = 0.8  # and at most this times the kurtosis estimate's scale
LOWEST = 0.25  # but not below this
KURTOSIS_BELOW = 0.4  # consulted only where the noise std is below this times the image's
LOW_COUNTS = 8.0  # mean photons per pixel below which the network's output is kept
MIN_SCORED = 0.05  # the share of unclipped pixels below which the network's output is kept


@dataclass(frozen=True)
class Refinement:
    """What the refinement of one channel did. choice: 'input', 'network' or 'window W,
    strength T'; gain_db: the estimated PSNR gain of the output over the noisy input (None
    where no risk estimate was made), gain_range_db: its range over the noise model's
    uncertainty; noise: the estimated model of this channel (a NoiseModel of one channel);
    risk: the output's mean squared error per pixel by Stein's unbiased risk estimate under
    the model (None where none was made), what `utils.prediction.coarse` compares with."""
    choice: str
    noise: NoiseModel
    gain_db: Optional[float]
    gain_range_db: Optional[Tuple[float, float]]
    risk: Optional[float] = None

    def describe(self) -> str:
        """One line for a user: the noise model, the choice and the estimated gain."""
        text = f"noise {self.noise.describe()}; refinement: {self.choice}"
        if self.gain_db is not None:
            lo, hi = self.gain_range_db
            text += f"; estimated gain {self.gain_db:+.1f} dB over the input ({lo:+.1f} to {hi:+.1f})"
        return text


def describe(reports: Sequence[Refinement]) -> str:
    """One line for the refinements of an image's channels (`Refinement.describe`)."""
    if len(reports) == 1:
        return reports[0].describe()
    return ' | '.join(f"channel {c}: {r.describe()}" for c, r in enumerate(reports))


def summarise(reports: Sequence[Refinement], what: str = 'frames') -> str:
    """One line for the refinements of many frames of a stack: how often each answer was
    chosen and the median estimated gain."""
    kinds = ['input' if r.choice == 'input' else 'network' if r.choice.startswith('network')
             else 'coarse' if r.choice.startswith('the network at') else 'gate' for r in reports]
    counts = ', '.join(f"{kinds.count(k)} {label}" for k, label in (
        ('gate', 'refined'), ('network', "the network's output"),
        ('coarse', 'the network at a coarser scale'), ('input', 'the input')) if kinds.count(k))
    gains = [r.gain_db for r in reports if r.gain_db is not None]
    text = f"refinement of {len(reports)} {what}: {counts}"
    if gains:
        text += f"; estimated gain over the input median {np.median(gains):+.1f} dB " \
                f"({min(gains):+.1f} to {max(gains):+.1f})"
    return text


def wiener(noisy: np.ndarray, denoised: np.ndarray, variance, window: int,
           strength: float = 1.0) -> np.ndarray:
    """The gate y = f + clip(1 - t * mean_w(v) / mean_w(r^2), 0, 1) * r of one channel, float64.
    noisy, denoised: (spatial...); variance: the noise variance, a scalar or per pixel;
    window: the side w (odd, >= 1); strength: t."""
    from scipy.ndimage import uniform_filter
    if window < 1:
        raise ValueError(f"the refinement window must be at least 1 pixel, got {window}")
    x, f = np.asarray(noisy, np.float64), np.asarray(denoised, np.float64)
    r = x - f
    v = np.broadcast_to(np.asarray(variance, np.float64), x.shape)
    energy = np.maximum(uniform_filter(r * r, window, mode='reflect'), 1e-300)
    return f + np.clip(1 - strength * uniform_filter(v, window, mode='reflect') / energy, 0, 1) * r


def refine(noisy: np.ndarray, denoised: np.ndarray, noise: Optional[NoiseModel] = None,
           divergence: float = 0.0, channel_axis: Optional[int] = None) -> np.ndarray:
    """The refined output (the module docstring); `refine_with_report` says what it did."""
    return refine_with_report(noisy, denoised, noise, divergence, channel_axis)[0]


def refine_with_report(noisy: np.ndarray, denoised: np.ndarray,
                       noise: Optional[NoiseModel] = None, divergence: float = 0.0,
                       channel_axis: Optional[int] = None
                       ) -> Tuple[np.ndarray, List[Refinement]]:
    """(refined float32 of the input's shape, one Refinement per channel).

    noisy, denoised: the same shape, (spatial...) or with channels on channel_axis; noise: the
    noise model, estimated from `noisy` (signal levels from `denoised`) when None;
    divergence: the denoiser's mean dF_i/dx_i (0 for a blind-spot network; N2S networks
    ~0.04, `Predictor.divergence`)."""
    x = np.asarray(noisy, np.float64)
    f = np.asarray(denoised, np.float64)
    if x.shape != f.shape:
        raise ValueError(f"noisy {x.shape} and denoised {f.shape} differ in shape")
    if channel_axis is not None:
        x, f = np.moveaxis(x, channel_axis, -1), np.moveaxis(f, channel_axis, -1)
    else:
        x, f = x[..., None], f[..., None]
    if noise is None:
        noise = estimate_noise_model(x, f, channel_axis=-1)
    out, reports = np.empty_like(x), []
    for c in range(x.shape[-1]):
        out[..., c], report = _refine_channel(x[..., c], f[..., c], noise.channel(c),
                                              divergence)
        reports.append(report)
    out = out[..., 0] if channel_axis is None else np.moveaxis(out, -1, channel_axis)
    return out.astype(np.float32), reports


def _refine_channel(x: np.ndarray, f: np.ndarray, noise: NoiseModel, divergence: float,
                    windows: Sequence[int] = WINDOWS, strengths: Sequence[float] = STRENGTHS
                    ) -> Tuple[np.ndarray, Refinement]:
    """One channel (spatial...): the candidate of least worst-case regret (module docstring)."""
    v = noise.variance(f)
    if noise.photons(f) < LOW_COUNTS:
        return f, Refinement(f'network (under {LOW_COUNTS:g} photons a pixel)', noise, None, None)
    # where clipping distorts the noise the risk estimate does not hold: the candidates are
    # judged on the other pixels (`scored`)
    scored = ~noise.near_clipping(f)
    if scored.sum() < MIN_SCORED * scored.size:
        return f, Refinement('network (the data are clipped nearly everywhere)', noise, None, None)
    delta = max(MIN_DELTA, float(noise.spread[0]))
    lower, upper = 1 - max(delta, LOWER), 1 + delta
    if np.sqrt(v.mean()) < KURTOSIS_BELOW * np.std(x):  # else the signal's kurtosis is buried
        scale = kurtosis_scale(x, noise)
        if np.isfinite(scale):
            lower = max(min(lower, KURTOSIS_MARGIN * scale), LOWEST)
    ends = (lower, upper)  # the noise variance lies in v * [ends]
    candidates = risk_terms(x, f, v, divergence, scored, windows, strengths)
    total_v = candidates[0][2]
    risk = lambda cand, k: cand[1] + k * cand[2]
    safe = lambda k: min(risk(candidates[0], k), risk(candidates[1], k))
    best = min(candidates, key=lambda cand: max(risk(cand, k) - safe(k) for k in ends))
    if best[3] is None:
        y = x if best[0] == 'input' else f
    else:
        y = wiener(x, f, v, *best[3])
    risks = [risk(best, k) for k in (1.0,) + ends]
    per_pixel = risks[0] / max(int(scored.sum()), 1)  # what `coarse.choose` compares with
    if min(risks) <= 0:  # the estimate cannot tell: the noise model is too uncertain here
        return y, Refinement(best[0], noise, None, None, per_pixel)
    gains = [10 * np.log10(k * total_v / r) for k, r in zip((1.0,) + ends, risks)]
    return y, Refinement(best[0], noise, float(gains[0]), (float(min(gains)), float(max(gains))),
                         per_pixel)


Candidate = Tuple[str, float, float, Optional[Tuple[int, float]]]


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
    for w in windows:
        size = (w,) * r.ndim
        energy = np.maximum(uniform_filter(r2, size, mode='reflect'), 1e-300)
        ratio = uniform_filter(v, size, mode='reflect') / energy
        # r dg/dx = t * ratio / energy * 2 r^2 (1 - d) * (x_i's weight in its own window)
        vq = vs * ratio / energy * 2 * r2 * (1 - d) * _self_weight(r.shape, w)
        below = np.zeros(ratio.size, np.intp)  # how many thresholds are <= ratio
        for threshold in thresholds:  # (7 comparisons: faster than searchsorted here)
            below += ratio.ravel() >= threshold
        inside = lambda q: np.cumsum(np.bincount(below, q.ravel(), len(thresholds) + 1))
        v_in, v_ratio_in, r2_in = inside(vs), inside(vs * ratio), inside(r2s)
        r2_ratio2_in, vq_in = inside(r2s * ratio * ratio), inside(vq)
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
    image falls in its window too."""
    from functools import reduce
    half = window // 2
    counts = []
    for n in shape:
        i = np.arange(n)[:, None]
        p = i + np.arange(-half, window - half)[None, :]  # scipy's window, odd or even
        while np.any((p < 0) | (p >= n)):  # mirrored (half-sample symmetric) until inside
            p = np.where(p < 0, -1 - p, np.where(p >= n, 2 * n - 1 - p, p))
        counts.append((p == i).sum(axis=1) / window)
    return reduce(np.multiply.outer, counts)
