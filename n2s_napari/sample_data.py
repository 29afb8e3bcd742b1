"""Sample data of the napari plugin: the demo set's test photograph with the demo's Gaussian
noise, and a fluorescence-like cell with Poisson noise (scikit-image's bundled images; the
noise drawn with a fixed seed)."""
from typing import List, Tuple

import numpy as np

from utils.data.bsd68_build import poisson_gaussian
from utils.data.datasets import Demo, grey_photo

SIGMA = 25.0  # the demo set's noise
PEAK = 20.0  # photons at the cell image's brightest value


def noisy_camera() -> List[Tuple[np.ndarray, dict]]:
    """scikit-image's camera as in the demo test set (its crop), Gaussian noise of SIGMA on
    0..255, float32."""
    name, box = Demo.test_crops[0]
    clean = grey_photo(name)[box]
    noisy = clean + np.random.default_rng(2020).normal(0, SIGMA, clean.shape)
    return [(noisy.astype(np.float32), {'name': f'noisy {name} (sigma {SIGMA:g})'})]


def noisy_cell() -> List[Tuple[np.ndarray, dict]]:
    """scikit-image's cell (a microscope image, 660 x 550) as a camera collecting PEAK photons
    at its brightest value sees it (Poisson noise), float32 on 0..255."""
    import skimage.data
    clean = skimage.data.cell().astype(np.float64)
    noisy = poisson_gaussian(clean, PEAK, 0.0, np.random.default_rng(2020))
    return [(noisy.astype(np.float32), {'name': f'noisy cell ({PEAK:g} photons)'})]
