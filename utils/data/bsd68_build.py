"""Build the BSD68 data set (Noise2Void's npy layout) from its public 8-bit grey PNGs.

The original npy files are the 400 DnCNN training images ("Train400", 180x180) and the 68 BSD68
test images (481x321 or 321x481) plus one draw of Gaussian noise, sigma 25 on 0..255. This
module makes the same layout from the PNGs with a fixed noise draw, identical on every machine:

  BSD68/train/DCNN400_train_gaussian25.npy       (396, 180, 180) float32, test_001 .. test_396
  BSD68/val/DCNN400_validation_gaussian25.npy    (4, 180, 180)   float32, test_397 .. test_400
  BSD68/test/bsd68_gaussian25.npy                (68,) object array of (H, W) float32
  BSD68/test/bsd68_groundtruth.npy               (68,) object array of the clean (H, W) float32

Noise: image i of split s ('train' = the 400 training PNGs, 'test' = the 68) gets
sigma * numpy.random.default_rng([NOISE_SEED, SPLITS.index(s), i]).standard_normal(shape),
added in float64 and stored as float32, unclipped.

The blind variant (`bsd68-blind`, folder BSD68-blind) gives training image i its own sigma,
lo + (hi - lo) * numpy.random.default_rng([NOISE_SEED, 2, i]).random() for the range (lo, hi)
= datasets.BLIND_SIGMA (0..55), with the same noise draw as above scaled by it; its test
images are those of BSD68 (sigma 25). Only the noisy images are stored: training never sees
the clean PNGs. Other noise levels (`download.py --sigma`) use the same draws scaled to that
sigma, for training and test images; each build records its noise in NOISE_FILE.

The mixed variant (`bsd68-mixed`, folder BSD68-mixed) gives half the training images
Poisson-Gaussian noise instead, as a photon-counting camera makes it (`poisson_gaussian`):
image i is Poisson-Gaussian when default_rng([NOISE_SEED, 4, i]).random() < the spec's
'poisson' fraction, with peak log-uniform and read noise uniform in the spec's ranges (from
default_rng([NOISE_SEED, 3, i])); the other images are those of bsd68-blind.
"""
import json
import os
import urllib.request
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from utils.core.files import atomic_folder, atomic_write
from utils.data.datasets import BSD68

NOISE_SEED = 68
SIGMA = 25.0
SPLITS = ('train', 'test')
N_VALIDATION = 4  # the last four training PNGs
TRAIN_NAMES = [f'test_{i:03d}.png' for i in range(1, 401)]
TEST_NAMES = [f'test{i:03d}.png' for i in range(1, 69)]
TRAIN_SHAPES = ((180, 180),)
TEST_SHAPES = ((321, 481), (481, 321))

# Where the two PNG folders sit in a source folder: ../shared/data/bsd68, or a DnCNN checkout.
FOLDER_LAYOUTS = (('train400', 'test68'),
                  ('TrainingCodes/DnCNN_TrainingCodes_v1.0/data/Train400', 'testsets/BSD68'),
                  ('Train400', 'BSD68'))
DNCNN_RAW = 'https://raw.githubusercontent.com/cszn/DnCNN/master/'

FILES = BSD68.files  # the original file names, as utils/data/datasets.py reads them
NOISE_FILE = 'noise.json'  # {"sigma": S or [lo, hi], "seed": NOISE_SEED} of a build


def find_png_folders(source: str) -> Tuple[str, str]:
    """(training PNG folder, test PNG folder) inside `source`, in any of FOLDER_LAYOUTS."""
    for train, test in FOLDER_LAYOUTS:
        train_dir, test_dir = os.path.join(source, train), os.path.join(source, test)
        if os.path.isdir(train_dir) and os.path.isdir(test_dir):
            return train_dir, test_dir
    layouts = '; '.join(f'{a}/ and {b}/' for a, b in FOLDER_LAYOUTS)
    raise FileNotFoundError(f"no BSD68 PNG folders in {source}: expected {layouts}")


def read_pngs(folder: str, names: Sequence[str],
              shapes: Sequence[Tuple[int, int]]) -> List[np.ndarray]:
    """The PNGs `names` of `folder` as (H, W) uint8 arrays; a missing, extra, non-grey or
    wrong-sized PNG is a ValueError/FileNotFoundError naming the file."""
    from PIL import Image
    extra = sorted(set(f for f in os.listdir(folder) if f.lower().endswith('.png')) - set(names))
    if extra:
        raise ValueError(f"unexpected PNG {os.path.join(folder, extra[0])} ({len(extra)} extra): "
                         f"the folder must hold exactly {names[0]} .. {names[-1]}")
    images = []
    for name in names:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"missing {path}: the folder must hold {names[0]} .. "
                                    f"{names[-1]}")
        try:
            with Image.open(path) as image:
                mode, array = image.mode, np.asarray(image)
        except OSError as error:
            raise ValueError(f"cannot read {path} as a PNG ({error})") from None
        if mode != 'L':
            raise ValueError(f"{path} is not 8-bit grey (mode {mode}); use the original PNG")
        if array.shape not in shapes:
            raise ValueError(f"{path} is {array.shape[1]}x{array.shape[0]}, expected "
                             f"{' or '.join(f'{w}x{h}' for h, w in shapes)}")
        images.append(array)
    return images


def training_sigma(index: int, sigma, seed: int = NOISE_SEED) -> float:
    """The noise sigma of training image `index`: `sigma` itself, or for a range (lo, hi) its
    own uniform draw from default_rng([seed, 2, index])."""
    if np.isscalar(sigma):
        return float(sigma)
    lo, hi = sigma
    return float(lo + (hi - lo) * np.random.default_rng([seed, 2, index]).random())


def poisson_gaussian(clean: np.ndarray, peak: float, read: float,
                     rng: np.random.Generator) -> np.ndarray:
    """clean (any shape) on 0..255 seen by a camera whose brightest value collects `peak`
    photons and whose read-out adds Gaussian noise of `read` photons (std):
    (Poisson(clean / 255 * peak) + N(0, read^2)) / peak * 255, float64, unclipped. Its noise
    variance at signal y is a*y + b with a = 255 / peak and b = (255 * read / peak)^2."""
    counts = rng.poisson(np.clip(clean, 0, None) / 255.0 * peak).astype(np.float64)
    if read > 0:
        counts += rng.normal(0, read, clean.shape)
    return counts / peak * 255.0


def mixed_training_noise(image: np.ndarray, index: int, spec: Dict,
                         seed: int = NOISE_SEED) -> np.ndarray:
    """Training image `index` of bsd68-mixed (the module docstring): float32, unclipped."""
    if np.random.default_rng([seed, 4, index]).random() >= spec['poisson']:
        return add_noise(image, 'train', index, training_sigma(index, spec['sigma'], seed), seed)
    rng = np.random.default_rng([seed, 3, index])
    lo, hi = np.log(spec['peak'])
    peak = float(np.exp(lo + (hi - lo) * rng.random()))
    read = float(spec['read'][0] + (spec['read'][1] - spec['read'][0]) * rng.random())
    return poisson_gaussian(image.astype(np.float64), peak, read, rng).astype(np.float32)


def add_noise(image: np.ndarray, split: str, index: int, sigma: float = SIGMA,
              seed: int = NOISE_SEED) -> np.ndarray:
    """image (H, W) on 0..255 plus the fixed Gaussian draw of (split, index): float32, unclipped."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    noise = rng.standard_normal(image.shape)
    return (image.astype(np.float64) + sigma * noise).astype(np.float32)


def make_arrays(train_pngs: Sequence[np.ndarray], test_pngs: Sequence[np.ndarray],
                sigma=SIGMA, seed: int = NOISE_SEED) -> Dict[str, np.ndarray]:
    """The four arrays of FILES from the uint8 PNGs (400 training, 68 test); `sigma` of the
    training images: one value (also the test images') or a range (lo, hi), one draw per
    image (`training_sigma`; the test images then keep SIGMA)."""
    test_sigma = sigma if np.isscalar(sigma) else SIGMA
    if isinstance(sigma, dict):  # bsd68-mixed
        noisy_train = np.stack([mixed_training_noise(x, i, sigma, seed)
                                for i, x in enumerate(train_pngs)])
    else:
        noisy_train = np.stack([add_noise(x, 'train', i, training_sigma(i, sigma, seed), seed)
                                for i, x in enumerate(train_pngs)])
    noisy = lambda pngs, split: [add_noise(x, split, i, test_sigma, seed)
                                 for i, x in enumerate(pngs)]
    as_objects = lambda arrays: np.array(list(arrays) + [None], dtype=object)[:-1]
    return {'train': noisy_train[:-N_VALIDATION], 'val': noisy_train[-N_VALIDATION:],
            'test': as_objects(noisy(test_pngs, 'test')),
            'gt': as_objects([x.astype(np.float32) for x in test_pngs])}


def is_complete(folder: str) -> bool:
    return all(os.path.isfile(os.path.join(folder, f)) for f in FILES.values())


def noise_record(sigma, seed: int = NOISE_SEED) -> Dict:
    """What NOISE_FILE holds for a build with `sigma` (one value, a range (lo, hi) or the
    mixed spec)."""
    if isinstance(sigma, dict):
        return {'mixed': {k: v if np.isscalar(v) else [float(x) for x in v]
                          for k, v in sigma.items()}, 'seed': int(seed)}
    return {'sigma': float(sigma) if np.isscalar(sigma) else [float(s) for s in sigma],
            'seed': int(seed)}


def built_noise(folder: str) -> Optional[Dict]:
    """The noise record of a built folder; None for a build older than NOISE_FILE."""
    path = os.path.join(folder, NOISE_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def check_noise(folder: str, sigma, seed: int = NOISE_SEED) -> None:
    """Refuse a complete `folder` whose noise is not the one asked for (a build without a
    record is taken as the default sigma 25 or, for a range, as asked)."""
    wanted = noise_record(sigma, seed)
    found = built_noise(folder) or (wanted if not np.isscalar(sigma) else noise_record(SIGMA))
    if found != wanted:
        raise FileExistsError(
            f"{folder} holds BSD68 with noise sigma {found['sigma']} (seed {found['seed']}), not "
            f"{wanted['sigma']}: pass another --data-dir for sigma {wanted['sigma']}")


def write_dataset(arrays: Dict[str, np.ndarray], folder: str,
                  noise: Optional[Dict] = None) -> None:
    """Write the arrays (and the `noise` record, if given) into `folder`, which must not
    exist yet, through a temporary folder."""
    with atomic_folder(folder) as tmp:
        for key, relative in FILES.items():
            os.makedirs(os.path.join(tmp, os.path.dirname(relative)), exist_ok=True)
            np.save(os.path.join(tmp, relative), arrays[key])
        if noise is not None:
            with open(os.path.join(tmp, NOISE_FILE), 'w') as f:
                json.dump(noise, f)


def build_bsd68(source: str, folder: str, sigma=SIGMA, seed: int = NOISE_SEED) -> bool:
    """Build the data set from the PNG folders in `source` into `folder` (`sigma`: as for
    `make_arrays`).

    Returns False (and writes nothing) when `folder` already holds a complete data set of
    this noise; one of another noise, or a non-empty incomplete `folder`, is an error, so
    nothing is ever overwritten."""
    if is_complete(folder):
        check_noise(folder, sigma, seed)
        return False
    if os.path.isdir(folder) and os.listdir(folder):
        raise FileExistsError(f"{folder} exists but holds no complete BSD68 data set; move it "
                              f"away or pass another --data-dir")
    train_dir, test_dir = find_png_folders(source)
    arrays = make_arrays(read_pngs(train_dir, TRAIN_NAMES, TRAIN_SHAPES),
                         read_pngs(test_dir, TEST_NAMES, TEST_SHAPES), sigma, seed)
    if os.path.isdir(folder):
        os.rmdir(folder)  # empty
    write_dataset(arrays, folder, noise_record(sigma, seed))
    return True


def fetch_dncnn_pngs(dest: str, progress=None) -> str:
    """Download the 468 PNGs from the DnCNN repository into `dest` (layout FOLDER_LAYOUTS[1]);
    returns `dest`. Files already there are kept."""
    train, test = FOLDER_LAYOUTS[1]
    jobs = [(f'{train}/{n}') for n in TRAIN_NAMES] + [(f'{test}/{n}') for n in TEST_NAMES]
    for relative in (progress(jobs) if progress else jobs):
        path = os.path.join(dest, relative)
        if os.path.isfile(path):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            with urllib.request.urlopen(DNCNN_RAW + relative, timeout=60) as response:
                data = response.read()
        except OSError as error:
            raise OSError(f"cannot fetch {DNCNN_RAW + relative} ({error}); no network? Use "
                          f"--from with a local copy of the PNG folders") from None
        with atomic_write(path) as tmp, open(tmp, 'wb') as f:
            f.write(data)
    return dest


def build_from_dncnn(folder: str, cache: Optional[str] = None, progress=None,
                     sigma=SIGMA) -> bool:
    """Download the PNGs (into `cache`, default <folder>-pngs) and build the data set."""
    if is_complete(folder):
        return False
    cache = cache or f'{folder.rstrip(os.sep)}-pngs'
    return build_bsd68(fetch_dncnn_pngs(cache, progress), folder, sigma)
