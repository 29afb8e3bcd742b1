"""Does a model fit an image? Its training noise range against the image's noise level.

Noise levels here are relative: the blind noise std over the image's std
(`utils.core.noise.relative_noise`: the root-mean-square std of the image's Poisson-Gaussian
noise model, the one the refinement uses), the quantity a model sees after its per-image
normalisation, so they compare across value ranges. Training records the range of its images
(5th to 95th percentile) in settings.json as training.relative_noise = [low, high], with
training.relative_noise_estimator = ESTIMATOR; `test_single.py` and the web demo print one
line when an image lies outside it by more than FIT_MARGIN, naming the models of the same
folder that fit, and one line when a model's range was measured by an earlier estimator.

    python -m n2s_app.fit trained_models/bsd68-N2S   # record the range of a model trained before
"""
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from utils.core.noise import measured_noise, relative_noise

FIT_MARGIN = 1.5  # an image fits when low / FIT_MARGIN <= its noise <= high * FIT_MARGIN
MAX_IMAGES = 200  # images measured for the range (a seeded sample of larger sets)
ESTIMATOR = 'noise model'  # what measured a recorded range (before: 'wavelet', not recorded)


def noise_range(images: Sequence[np.ndarray], dim: int = 2, seed: int = 0) -> List[float]:
    """[5th, 95th percentile] of the relative noise of training images ((spatial...[, C]) each;
    a seeded sample of MAX_IMAGES when there are more)."""
    chosen = range(len(images))
    if len(images) > MAX_IMAGES:
        chosen = sorted(np.random.default_rng(seed).choice(len(images), MAX_IMAGES, replace=False))
    values = [relative_noise(images[i], dim) for i in chosen]
    low, high = np.percentile(values, [5, 95])
    return [round(float(low), 4), round(float(high), 4)]


def record_noise_range(record: dict, images: Sequence[np.ndarray], dim: int = 2) -> None:
    """Writes the images' `noise_range` and its ESTIMATOR into a settings.json training record."""
    record['relative_noise'] = noise_range(images, dim)
    record['relative_noise_estimator'] = ESTIMATOR


def trained_range(settings: dict) -> Optional[Tuple[float, float]]:
    """The recorded (low, high) of a model's settings, or None (trained before it was kept, or
    measured by an earlier estimator: `outdated`)."""
    value = settings.get('training', {}).get('relative_noise')
    return (float(value[0]), float(value[1])) if value and not outdated(settings) else None


def outdated(settings: dict) -> bool:
    """Whether a recorded range was measured by another estimator than today's."""
    training = settings.get('training', {})
    return bool(training.get('relative_noise')) and \
        training.get('relative_noise_estimator') != ESTIMATOR


def fits(noise: float, bounds: Tuple[float, float]) -> bool:
    return bounds[0] / FIT_MARGIN <= noise <= bounds[1] * FIT_MARGIN


def fitting_models(model_dir: str, noise: float, dim: int, in_channels: int) -> List[str]:
    """Models in model_dir for images of `dim` and `in_channels` whose range fits `noise`."""
    from utils.core.errors import CheckpointError
    from utils.core.settings import read_settings
    names = []
    for name in sorted(os.listdir(model_dir)) if os.path.isdir(model_dir) else []:
        try:
            settings = read_settings(os.path.join(model_dir, name)) or {}
        except CheckpointError:  # an unreadable model is not a suggestion
            continue
        bounds = trained_range(settings)
        if bounds and settings.get('dim') == dim and settings.get('in_channels') == in_channels \
                and fits(noise, bounds):
            names.append(name)
    return names


def unfit_message(name: str, settings: dict, image: np.ndarray, dim: int, model_dir: str,
                  label: str, noise: Optional[float] = None) -> Optional[str]:
    """One line when `image` ((spatial...) or (spatial..., C)) lies outside the noise range of
    the model `name` (its `settings`), else None (also when no range is recorded or the noise
    cannot be measured, `measured_noise`); noise: the image's `measured_noise` when known."""
    if outdated(settings):
        return (f"note: {name}'s training noise range was measured by an earlier estimator and is "
                f"not used; record it again: python -m n2s_app.fit "
                f"{os.path.join(model_dir, name)}")
    bounds = trained_range(settings)
    noise = measured_noise(image, dim) if noise is None and bounds else noise
    if bounds is None or noise is None or fits(noise, bounds):
        return None
    side = 'below' if noise < bounds[0] else 'above'
    others = [n for n in fitting_models(model_dir, noise, dim, settings.get('in_channels', 1))
              if n != name]
    advice = (f"models that fit: {', '.join(others)} (--name)" if others else
              "no model in " + model_dir.rstrip('/') + " fits; train one on such images "
              "(train.py --images ...)")
    return (f"note: {label}: estimated noise {noise:.2f} x the image's std, {side} the "
            f"{bounds[0]:.2f}-{bounds[1]:.2f} that {name} was trained on; {advice}")
