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
Then, where the denoiser's response to a random probe is known (`Probe`; `Predictor.refine`
measures it), two more candidates compete with the chosen one under the same rule: the DCT
Wiener filter of x with the chosen output as its pilot (BM3D's second stage without its
grouping, `utils.prediction.dct_wiener`) and the mean of the two. Their divergence is the
filter's own, exact, plus how the pilot moves it, measured by the probe through the whole
chain: one number, unbiased but noisy (one probe's estimate scatters by ~5 % of the squared
error on a 40 x 44 image probed at every pixel, more with the network's sparser probe), so it
is taken PROBE_SAFETY standard errors up. Like the gate's, these derivatives hold the noise
variance v fixed where it follows the signal. They are not offered where the kurtosis estimate
has lowered the lower end (the filter takes v at its word and would over-smooth texture read
as noise), nor where the noise std is above DCT_BELOW times the image's (there the risk is a
small difference of large numbers that the probe's noise swamps, and the network at a
coarser scale competes). On 50 BSD68 training images and 14 validation images (the 4 BSD68
validation images, 10 scikit-image photographs; `blind32-N2S`, the network's own probe) over
the gate alone: +0.20 / +0.30 dB (training / validation images) at sigma 5, +0.10 / +0.13 at
sigma 25, +0.02 / +0.01 at sigma 50, +0.17 / +0.22 at Poisson peak 100, unchanged at peak 3
with read noise 2 (not offered); 2 of those 320 images lower by more than 0.05 dB (-0.06,
-0.15), none below its input. Stride, windows and both rules were chosen there.
Without a probe (`refine` called with a divergence alone) the gate's choice stands.
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
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple

import numpy as np

from utils.core.noise import NoiseModel, estimate_noise_model, kurtosis_scale
from utils.prediction.dct_wiener import PATCH, dct_wiener
from utils.prediction.gate import (STRENGTHS, WINDOWS, Candidate, risk_terms, wiener,
                                   wiener_derivative)

MIN_DELTA = 0.03  # the noise variance is never taken as known better than +-3 %
LOWER = 0.4  # its lower end at most 1 - LOWER: texture only ever inflates the estimate
KURTOSIS_MARGIN = 0.8  # and at most this times the kurtosis estimate's scale
LOWEST = 0.25  # but not below this
KURTOSIS_BELOW = 0.4  # consulted only where the noise std is below this times the image's
LOW_COUNTS = 8.0  # mean photons per pixel below which the network's output is kept
PROBE_STEP = 0.01  # their probe's step, in noise stds
PROBE_SAFETY = 2.0  # standard errors added to the probe's estimate of their divergence
DCT_BELOW = 0.8  # offered where the noise std is below this times the image's
MIN_SCORED = 0.05  # the share of unclipped pixels below which the network's output is kept



@dataclass(frozen=True)
class Refinement:
    """What the refinement of one channel did. choice: 'input', 'network', 'window W,
    strength T', 'the DCT Wiener filter with pilot ...', 'the mean of ... and its DCT Wiener
    filter' or (`utils.prediction.coarse`) 'the network at 1/k resolution ...'; gain_db: the
    estimated PSNR gain of the output over the noisy input (None where no risk estimate was
    made), gain_range_db: its range over the noise model's
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


@dataclass(frozen=True, eq=False)
class Probe:
    """A denoiser's response to one random probe of its input (`Predictor.probe`): the
    `direction` b (+-1 on some pixels, 0 elsewhere) and the `response` (F(x + e b) - F(x)) / e
    for a small step e (the same in any units F and x share), on the `crop` of the image's
    spatial axes; arrays (crop spatial..., C) with the channels where the image has them.
    Through it the refinement measures how its DCT Wiener candidates move with x where
    their pilot moves with the denoiser."""
    crop: Tuple[slice, ...]
    direction: np.ndarray
    response: np.ndarray

    @property
    def divergence(self) -> float:
        """The denoiser's mean dF_i/dx_i by Hutchinson's estimate b . response / |b|^2."""
        b = self.direction
        return float(np.sum(b * self.response) / np.sum(b * b))

    def channel(self, c: int) -> 'Probe':
        """The probe of channel c (channels on the last axis)."""
        return Probe(self.crop, self.direction[..., c], self.response[..., c])


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


def refine(noisy: np.ndarray, denoised: np.ndarray, noise: Optional[NoiseModel] = None,
           divergence: float = 0.0, channel_axis: Optional[int] = None,
           probe: Optional[Probe] = None) -> np.ndarray:
    """The refined output (the module docstring); `refine_with_report` says what it did."""
    return refine_with_report(noisy, denoised, noise, divergence, channel_axis, probe)[0]


def refine_with_report(noisy: np.ndarray, denoised: np.ndarray,
                       noise: Optional[NoiseModel] = None, divergence: float = 0.0,
                       channel_axis: Optional[int] = None, probe: Optional[Probe] = None
                       ) -> Tuple[np.ndarray, List[Refinement]]:
    """(refined float32 of the input's shape, one Refinement per channel).

    noisy, denoised: the same shape, (spatial...) or with channels on channel_axis; noise: the
    noise model, estimated from `noisy` (signal levels from `denoised`) when None;
    divergence: the denoiser's mean dF_i/dx_i (0 for a blind-spot network; N2S networks
    ~0.04, `Predictor.divergence`); probe: the denoiser's response to a probe
    (`Predictor.probe`, its arrays with the channels where `noisy` has them), without which
    the DCT Wiener candidates are not offered."""
    x = np.asarray(noisy, np.float64)
    f = np.asarray(denoised, np.float64)
    if x.shape != f.shape:
        raise ValueError(f"noisy {x.shape} and denoised {f.shape} differ in shape")
    last = (lambda a: np.moveaxis(a, channel_axis, -1)) if channel_axis is not None else \
        (lambda a: a[..., None])
    x, f = last(x), last(f)
    if probe is not None:
        probe = Probe(probe.crop, last(probe.direction), last(probe.response))
        want = x[probe.crop].shape if len(probe.crop) == x.ndim - 1 else None
        if want is None or probe.direction.shape != want or probe.response.shape != want:
            raise ValueError(f"the probe's crop {probe.crop} and arrays "
                             f"{probe.direction.shape} do not fit the image {noisy.shape}: "
                             f"give them in the image's layout (channel_axis {channel_axis})")
    out, reports = np.empty_like(x), []
    # one BLAS thread: the matrix products here are small, and OpenBLAS's idle threads spin
    # on after them, slowing the next image's network (by 45 ms of 230 on 2 cores)
    with _blas().limit(limits=1, user_api='blas'):
        if noise is None:
            noise = estimate_noise_model(x, f, channel_axis=-1)
        for c in range(x.shape[-1]):
            out[..., c], report = _refine_channel(x[..., c], f[..., c], noise.channel(c),
                                                  divergence,
                                                  None if probe is None else probe.channel(c))
            reports.append(report)
    out = out[..., 0] if channel_axis is None else np.moveaxis(out, -1, channel_axis)
    return out.astype(np.float32), reports


def _refine_channel(x: np.ndarray, f: np.ndarray, noise: NoiseModel, divergence: float,
                    probe: Optional[Probe] = None, windows: Sequence[int] = WINDOWS,
                    strengths: Sequence[float] = STRENGTHS) -> Tuple[np.ndarray, Refinement]:
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
    regret = lambda cand: max(risk(cand, k) - safe(k) for k in ends)
    best = min(candidates, key=regret)
    # the DCT Wiener filter takes v at its word: not offered where the kurtosis estimate says
    # the noise may be well below the model's (texture read as noise; it would over-smooth)
    doubt = lower < 1 - max(delta, LOWER)
    # nor on very noisy images, where the risk is a small difference of large numbers that
    # the probe's noise swamps (and the network at a coarser scale competes: coarse.py)
    noisy = np.sqrt(v.mean()) > DCT_BELOW * np.std(x)
    if probe is not None and not (doubt or noisy) and x.ndim >= 2 and min(x.shape[-2:]) >= PATCH:
        y, own = _output_derivative(best, x, f, v, divergence)
        pick = min([best + (y,)] + _dct_candidates(x, f, v, best, y, own, divergence, probe,
                                                   scored), key=regret)
        best, y = pick[:4], pick[4]
    else:
        y = _output(best, x, f, v)
    risks = [risk(best, k) for k in (1.0,) + ends]
    per_pixel = risks[0] / max(int(scored.sum()), 1)  # what `coarse.choose` compares with
    if min(risks) <= 0:  # the estimate cannot tell: the noise model is too uncertain here
        return y, Refinement(best[0], noise, None, None, per_pixel)
    gains = [10 * np.log10(k * total_v / r) for k, r in zip((1.0,) + ends, risks)]
    return y, Refinement(best[0], noise, float(gains[0]), (float(min(gains)), float(max(gains))),
                         per_pixel)


@lru_cache(maxsize=1)
def _blas() -> 'threadpoolctl.ThreadpoolController':
    """The process's BLAS libraries (`threadpoolctl`), found once: looking costs 4 ms. (Its
    limit is process-wide: refinements run at once in threads share it.)"""
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


def _output(candidate: Candidate, x: np.ndarray, f: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The output of a candidate of `risk_terms` ('input', 'network' or a gate)."""
    if candidate[3] is None:
        return x if candidate[0] == 'input' else f
    return wiener(x, f, v, *candidate[3])


def _output_derivative(candidate: Candidate, x: np.ndarray, f: np.ndarray, v: np.ndarray,
                       divergence: float) -> Tuple[np.ndarray, np.ndarray]:
    """(`_output`, its derivative dy_i/dx_i) where the denoiser's divergence is `divergence`."""
    if candidate[3] is None:
        return (x, np.ones_like(x)) if candidate[0] == 'input' else \
            (f, np.full_like(x, divergence))
    return wiener_derivative(x, f, v, *candidate[3], divergence)


def _dct_candidates(x: np.ndarray, f: np.ndarray, v: np.ndarray, best: Candidate,
                    y: np.ndarray, own: np.ndarray, divergence: float, probe: Probe,
                    scored: np.ndarray, safety: float = PROBE_SAFETY) -> List[Tuple]:
    """The DCT Wiener filter of x with the chosen output y as its pilot
    (`utils.prediction.dct_wiener`), and the mean of the two, as candidates (name, fit, lin,
    None, output) with their risk terms. The filter's derivative with its pilot fixed is
    exact; how the pilot moves it, through the denoiser's response to a pixel's neighbours,
    is measured with the probe on the probe's crop as one number: b . (W(x + e b, pilot(x +
    e b)) - W(x + e b, pilot(x))) / e / |b|^2, the pilot moved by the denoiser's response to
    the probe (the filter's own response to the probe cancels, and with it most of the
    estimate's noise), plus `safety` standard errors (`_upper_mean`)."""
    filtered, filtered_own = dct_wiener(x, y, v)
    crop, b = probe.crop, probe.direction
    step = PROBE_STEP * float(np.sqrt(np.mean(v)))
    pilot = lambda xc, fc: _output(best, xc, fc, v[crop])
    probed = x[crop] + step * b
    moved = (dct_wiener(probed, pilot(probed, f[crop] + step * probe.response), v[crop])[0]
             - dct_wiener(probed, pilot(x[crop], f[crop]), v[crop])[0])
    through_pilot = _upper_mean(b * moved / step, b != 0, safety)
    derivative = filtered_own + through_pilot
    terms = lambda out, der: (float(np.sum(np.square(out - x), where=scored)),
                              float(np.sum(v * (2 * der - 1), where=scored)))
    mean, mean_derivative = (filtered + y) / 2, (derivative + own) / 2
    return [(f'the DCT Wiener filter with pilot {best[0]}', *terms(filtered, derivative), None,
             filtered),
            (f'the mean of {best[0]} and its DCT Wiener filter',
             *terms(mean, mean_derivative), None, mean)]


def _upper_mean(terms: np.ndarray, probed: np.ndarray, safety: float = PROBE_SAFETY) -> float:
    """The mean of `terms` over the `probed` pixels plus `safety` times its standard
    error, estimated from the means of the probed pixels in 4 x 4 blocks of their extent
    along the last two axes (neighbouring terms correlate): a probe's estimate at its
    pessimistic end (the risk rises with the divergence)."""
    where = np.nonzero(probed)
    block = np.zeros(len(where[0]), np.intp)
    for axis in where[-2:]:
        block = block * 4 + (axis - axis.min()) * 4 // (axis.max() - axis.min() + 1)
    counts = np.bincount(block, minlength=16)
    values = terms[where]
    means = np.bincount(block, values, minlength=16)[counts > 0] / counts[counts > 0]
    if len(means) < 4:
        return float(values.mean())
    return float(values.mean()) + safety * float(np.std(means, ddof=1)) / np.sqrt(len(means))
