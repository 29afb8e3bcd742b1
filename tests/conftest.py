"""Shared fixtures: the repository on sys.path, quiet TensorFlow, the TF1 reference artifacts."""
import os
import sys
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.tf_setup import import_tensorflow, use_onednn  # noqa: E402

use_onednn(True)  # as the training scripts (the suite trains)
import_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

REFERENCE = Path(os.environ.get('N2S_REFERENCE', ROOT.parent / 'shared' / 'reference'))
REFERENCE_DIRS = sorted(p for p in (REFERENCE / 'tf1').glob('*') if (p / 'model').is_dir()) \
    if (REFERENCE / 'tf1').is_dir() else []


def require_reference():
    """Skip (or fail, when N2S_REQUIRE_REFERENCE=1 as in CI) without the reference artifacts."""
    if not REFERENCE_DIRS:
        message = f"TF1 reference artifacts not found under {REFERENCE}"
        if os.environ.get('N2S_REQUIRE_REFERENCE') == '1':
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture
def noisy_images():
    """Ten 40x40 single-channel training images: smooth structure plus noise, normalised."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:40, :40] / 40.0
    images = [np.sin(6 * yy + k) * np.cos(4 * xx - k) + 0.3 * rng.normal(size=(40, 40))
              for k in range(10)]
    images = np.stack([(im - im.mean()) / im.std() for im in images])
    return images[..., None].astype(np.float32)
