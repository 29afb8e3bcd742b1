"""Data sets: one table maps a --dataset name to its files, training settings and test protocol.

Layouts under the data directory (REFERENCE.md section 7):
  bsd68     [BSD68/]train/DCNN400_train_gaussian25.npy, [BSD68/]val/DCNN400_validation_gaussian25.npy,
            [BSD68/]test/bsd68_gaussian25.npy, [BSD68/]test/bsd68_groundtruth.npy
  demo      demo/ in the BSD68 layout, built offline from scikit-image's photographs
  imagenet  ImageNet/train.npy (pairs, index 1 noisy), ImageNet/test/*.npy ([clean, noisy])
  hanzi     Hanzi/tiles/{training,validation,testing}.npy (index 3 noisy, index 0 clean, 0..1)
  planaria  Denoising_Planaria/train_data/data_label.npz, Denoising_Planaria/test_data/
            {GT,condition_1,condition_2,condition_3}/*.tif
"""
import glob
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from utils.core.errors import MissingDataError
from utils.core.normalisation import PercentileNormaliser, normalise_each
from utils.evaluation.metrics import PSNR, SSIM, get_scores

DRIVE_FOLDER = 'https://drive.google.com/drive/folders/1VYMo1OoaGxoOLNx6-qIt2Wg03lsZw_kA'


@dataclass(frozen=True)
class TestImage:
    """One test image: its name, the noisy input, the clean reference and a group label."""
    name: str
    noisy: np.ndarray
    clean: np.ndarray
    group: str = ''


@dataclass(frozen=True)
class Dataset:
    """A data set: where its files are, how to train on it and how to score a model on it.

    `training` holds the default script settings (patch_size, batch_size, steps, pro_steps,
    masking, lmbd) of the published experiment; `normalisation` how `training_data`
    normalises each image: 'image' (its mean and std) or 'channel' (each channel's).
    """
    name: str
    folder: str
    dim: int = 2
    in_channels: int = 1
    training: Dict = field(default_factory=dict)
    description: str = ''
    normalisation: str = 'image'

    # -- files
    def root(self, data_dir: str) -> str:
        return os.path.join(data_dir, self.folder)

    def path(self, data_dir: str, relative: str) -> str:
        path = os.path.join(self.root(data_dir), relative)
        if not os.path.exists(path):
            raise MissingDataError(self.missing_message(path))
        return path

    def missing_message(self, path: str) -> str:
        return (f"missing {path}: run 'python download.py --dataset {self.name}' or download "
                f"{DRIVE_FOLDER} by hand into {os.path.dirname(os.path.dirname(path)) or '.'}")

    def available(self, data_dir: str) -> bool:
        try:
            self.training_data(data_dir)
        except (MissingDataError, OSError, ValueError):
            return False
        return True

    def record(self) -> Dict:
        """What settings.json's 'training' records of the data a model trained on."""
        return {'dataset': self.name}

    # -- protocol (overridden per data set)
    def training_data(self, data_dir: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """(training images (N, spatial..., C), validation images or None), normalised."""
        raise NotImplementedError

    def raw_training_images(self, data_dir: str) -> np.ndarray:
        """The noisy training images before normalisation, for data sets whose noise is
        additive with one known std (`lmbd_for_noise`, `lmbd_estimated`)."""
        raise ValueError(f"--noise-sigma needs additive noise of one known std (data sets bsd68, "
                         f"demo); {self.name}'s is not: pass --lmbd instead")

    def test_images(self, data_dir: str) -> List[TestImage]:
        raise NotImplementedError

    def score(self, model, image: TestImage, tta: bool = False,
              refine: bool = False) -> Dict[str, float]:
        """Denoise one test image (tta: with the 8-fold self-ensemble) and score it:
        {'psnr': ..., 'ssim': ...}; refine: also 'psnr_refined', 'ssim_refined' of the output
        refined by `utils.prediction.refine` (not part of the original protocol)."""
        raise NotImplementedError

    def evaluate(self, model, data_dir: str, progress=None, tta: bool = False,
                 refine: bool = False) -> Iterator[Dict]:
        images = self.test_images(data_dir)
        for image in (progress(images) if progress else images):
            yield {'image': image.name, 'group': image.group,
                   **self.score(model, image, tta, refine)}

    @staticmethod
    def outputs(noisy: np.ndarray, pred: np.ndarray, refine: bool, model
                ) -> List[Tuple[str, np.ndarray]]:
        """[(key suffix, prediction)]: ('', the network's output) and, with refine,
        ('_refined', its refinement against `noisy` by the model's predictor
        (`Predictor.refine`, utils/prediction/refine.py), in the same units)."""
        if not refine:
            return [('', pred)]
        return [('', pred), ('_refined', model.predictor.refine(noisy, pred)[0])]


class BSD68(Dataset):
    """Grey natural images with Gaussian noise sigma 25 (Noise2Void's BSD68 files)."""

    files = {'train': 'train/DCNN400_train_gaussian25.npy',
             'val': 'val/DCNN400_validation_gaussian25.npy',
             'test': 'test/bsd68_gaussian25.npy', 'gt': 'test/bsd68_groundtruth.npy'}

    def root(self, data_dir):
        with_sub = os.path.join(data_dir, 'BSD68')
        return with_sub if os.path.exists(os.path.join(with_sub, self.files['test'])) else data_dir

    def raw_training_images(self, data_dir):
        return np.load(self.path(data_dir, self.files['train']), allow_pickle=True)

    def training_data(self, data_dir):
        X = self.raw_training_images(data_dir)
        X_val = np.load(self.path(data_dir, self.files['val']), allow_pickle=True)
        return normalise_each(X)[..., None], normalise_each(X_val, 'validation image')[..., None]

    def test_images(self, data_dir):
        noisy = np.load(self.path(data_dir, self.files['test']), allow_pickle=True)
        clean = np.load(self.path(data_dir, self.files['gt']), allow_pickle=True)
        return [TestImage(f'{i:02d}', np.asarray(n, np.float32), np.asarray(c, np.float32))
                for i, (n, c) in enumerate(zip(noisy, clean))]

    def score(self, model, image, tta=False, refine=False):
        pred = model.predict(image.noisy, tta=tta)
        scores = {}
        for key, out in self.outputs(image.noisy, pred, refine, model):
            scores.update({'psnr' + key: PSNR(image.clean, out),
                           'ssim' + key: SSIM(image.clean, out)})
        return scores


class BlindBSD68(BSD68):
    """BSD68 whose training images each have their own noise sigma, uniform in BLIND_SIGMA
    (one draw per image, `bsd68_build`); the test images keep sigma 25 (the BSD68 protocol).
    For models that learn many noise levels (train with --noise-sigma auto)."""

    def root(self, data_dir):
        return os.path.join(data_dir, self.folder)

    def missing_message(self, path):
        return (f"missing {path}: build it with 'python download.py --dataset {self.name} "
                f"--from DIR' (the BSD68 PNG folders, e.g. ../shared/data/bsd68)")


BLIND_SIGMA = (0.0, 55.0)  # the noise sigma range of bsd68-blind's training images (0..255)
# bsd68-mixed: half its training images as bsd68-blind's, half Poisson-Gaussian with the
# peak photon count log-uniform in 'peak' and the read noise (photons, std) uniform in 'read'
MIXED_NOISE = {'sigma': BLIND_SIGMA, 'peak': (1.0, 100.0), 'read': (0.0, 3.0), 'poisson': 0.5}


class Demo(BSD68):
    """BSD68's layout and protocol on scikit-image's bundled photographs, built offline."""

    train_photos = ('coffee', 'chelsea', 'rocket', 'coins', 'moon', 'brick', 'grass', 'gravel')
    val_photos = ('clock', 'cell')
    test_crops = (('camera', (slice(0, 256), slice(0, 384))),
                  ('astronaut', (slice(100, 356), slice(50, 434))))

    def root(self, data_dir):
        return os.path.join(data_dir, self.folder)

    def test_images(self, data_dir):
        names = [name for name, _ in self.test_crops]
        return [TestImage(name, im.noisy, im.clean)
                for name, im in zip(names, super().test_images(data_dir))]

    def path(self, data_dir, relative):
        if not os.path.exists(os.path.join(self.root(data_dir), self.files['gt'])):
            build_demo(self.root(data_dir))
        return super().path(data_dir, relative)


def grey_photo(name: str) -> np.ndarray:
    """A scikit-image photograph as float64 grey on 0..255."""
    from skimage import color, data
    image = getattr(data, name)()
    if image.ndim == 3:
        return color.rgb2gray(image[..., :3]) * 255.0
    return image.astype(np.float64)


def build_demo(folder: str, sigma: float = 25.0, seed: int = 2020) -> None:
    """Write the demo set (BSD68 layout) into `folder`: 96 train and 4 validation 180x180 crops
    and 2 test images (camera, astronaut) with ground truth; Gaussian noise sigma 25 on 0..255,
    unclipped float32; plus the first noisy test image as an 8-bit PNG. Deterministic."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    noisy = lambda x: (x + rng.normal(0, sigma, x.shape)).astype(np.float32)

    def crops(names, per_photo):
        out = []
        for name in names:
            photo = grey_photo(name)
            for _ in range(per_photo):
                y = rng.integers(0, photo.shape[0] - 180 + 1)
                x = rng.integers(0, photo.shape[1] - 180 + 1)
                out.append(photo[y:y + 180, x:x + 180])
        return np.stack(out)

    train = noisy(crops(Demo.train_photos, 12))
    val = noisy(crops(Demo.val_photos, 2))
    clean = [grey_photo(name)[box].astype(np.float32) for name, box in Demo.test_crops]
    test = [noisy(c) for c in clean]
    os.makedirs(os.path.dirname(os.path.abspath(folder)), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.demo-', dir=os.path.dirname(os.path.abspath(folder)))
    try:
        for sub in ('train', 'val', 'test'):
            os.makedirs(os.path.join(tmp, sub))
        np.save(os.path.join(tmp, BSD68.files['train']), train)
        np.save(os.path.join(tmp, BSD68.files['val']), val)
        as_objects = lambda arrays: np.array(arrays + [None], dtype=object)[:-1]
        np.save(os.path.join(tmp, BSD68.files['test']), as_objects(test))
        np.save(os.path.join(tmp, BSD68.files['gt']), as_objects(clean))
        Image.fromarray(np.clip(np.round(test[0]), 0, 255).astype(np.uint8)).save(
            os.path.join(tmp, 'test', 'noisy_camera.png'))
        if os.path.exists(folder):
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class ImageNet(Dataset):
    """RGB ImageNet crops with Poisson + Gaussian + Bernoulli noise (N2S paper)."""

    def training_data(self, data_dir):
        X = np.load(self.path(data_dir, 'train.npy'), allow_pickle=True)[:, 1]
        return np.array([(x - x.mean((0, 1))) / x.std((0, 1)) for x in X], np.float32), None

    def test_images(self, data_dir):
        files = sorted(glob.glob(os.path.join(self.path(data_dir, 'test'), '*.npy')))
        if not files:
            raise MissingDataError(self.missing_message(os.path.join(self.root(data_dir), 'test', '*.npy')))
        pairs = [np.load(f, allow_pickle=True) for f in files]
        return [TestImage(os.path.basename(f), np.asarray(p[1], np.float32),
                          np.asarray(p[0], np.float32)) for f, p in zip(files, pairs)]

    def score(self, model, image, tta=False, refine=False):
        pred = model.predict(image.noisy, im_mean=image.noisy.mean((0, 1)),
                             im_std=image.noisy.std((0, 1)), tta=tta)
        scores = {}
        for key, out in self.outputs(image.noisy, pred, refine, model):
            out = (out - out.min()) / (out.max() - out.min()) * 255
            scores.update({'psnr' + key: PSNR(image.clean, out),
                           'ssim' + key: SSIM(image.clean, out)})
        return scores


class HanZi(Dataset):
    """64x64 grey Chinese characters with mixed noise (N2S paper)."""

    def _tiles(self, data_dir, split):
        return np.load(self.path(data_dir, f'tiles/{split}.npy'), allow_pickle=True)

    def training_data(self, data_dir):
        train = normalise_each(self._tiles(data_dir, 'training')[:, 3])[..., None]
        val = normalise_each(self._tiles(data_dir, 'validation')[:, 3])[..., None]
        return train, val

    def test_images(self, data_dir):
        tiles = self._tiles(data_dir, 'testing')
        return [TestImage(f'{i:05d}', t[3].astype(np.float32), t[0].astype(np.float32) * 255)
                for i, t in enumerate(tiles)]

    def evaluate(self, model, data_dir, progress=None, tta=False, refine=False):
        images = self.test_images(data_dir)
        stack = np.stack([im.noisy for im in images])
        mean, std = stack.mean(), stack.std()  # batch_predict's normalisation, also with TTA
        preds = [model.predict(x, im_mean=mean, im_std=std, tta=True) for x in stack] if tta \
            else model.batch_predict(stack)
        for image, pred in zip(progress(images) if progress else images, preds):
            row = {'image': image.name, 'group': ''}
            for key, out in self.outputs(image.noisy, pred, refine, model):
                out = (out - out.min()) / (out.max() - out.min()) * 255
                row.update({'psnr' + key: PSNR(image.clean, out),
                            'ssim' + key: SSIM(image.clean, out)})
            yield row


class Planaria(Dataset):
    """CARE's 3D Planaria volumes, three noise conditions (N2S paper)."""

    def training_data(self, data_dir):
        X = np.load(self.path(data_dir, 'train_data/data_label.npz'))['X']
        X = np.moveaxis(X, 1, -1).astype(np.float32)
        split = int(len(X) * 0.9)
        return X[:split], X[split:]

    def test_images(self, data_dir):
        import tifffile
        out = []
        for gt_file in sorted(glob.glob(os.path.join(self.path(data_dir, 'test_data/GT'), '*.tif'))):
            gt = tifffile.imread(gt_file)
            for condition in ('condition_1', 'condition_2', 'condition_3'):
                noisy = tifffile.imread(self.path(
                    data_dir, f'test_data/{condition}/{os.path.basename(gt_file)}'))
                out.append(TestImage(os.path.basename(gt_file), noisy, gt, condition))
        return out

    def score(self, model, image, tta=False, refine=False):
        x = PercentileNormaliser(2, 99.8).before(image.noisy, 'ZYX')
        pred = model.crop_predict(x, 256, 32, im_mean=0, im_std=1, tta=tta)
        scores = {}
        for key, out in self.outputs(x, pred, refine, model):
            nrmse, psnr, ssim = get_scores(image.clean, out)
            scores.update({'psnr' + key: psnr, 'ssim' + key: ssim, 'nrmse' + key: nrmse})
        return scores


PLANARIA_PATCHES = {'patch_size': [16, 64, 64], 'batch_size': 4}  # 3D: the CARE Planaria run's
BSD_TRAINING = {'patch_size': [64, 64], 'batch_size': 64, 'steps': 3000, 'pro_steps': 500,
                'pro_total': 8000, 'masking': 'gaussian', 'lmbd': 2.0}

DATASETS: Dict[str, Dataset] = {d.name: d for d in [
    BSD68('bsd68', '', training=BSD_TRAINING,
          description='BSD68, Gaussian sigma 25 (Noise2Void files)'),
    BlindBSD68('bsd68-blind', 'BSD68-blind', training=BSD_TRAINING,
               description=f'BSD68 training images with sigma uniform in '
                           f'{BLIND_SIGMA[0]:g}..{BLIND_SIGMA[1]:g}, one per image; test sigma 25'),
    BlindBSD68('bsd68-mixed', 'BSD68-mixed', training=BSD_TRAINING,
               description='BSD68 training images, half with Gaussian noise as bsd68-blind, '
                           'half Poisson-Gaussian (peak 1..100 photons, read noise 0..3); '
                           'test sigma 25'),
    Demo('demo', 'demo', training=BSD_TRAINING,
         description="scikit-image photographs, Gaussian sigma 25, built offline"),
    ImageNet('imagenet', 'ImageNet', in_channels=3, training={
        'patch_size': [64, 64], 'batch_size': 64, 'steps': 50000, 'pro_steps': 500,
        'pro_total': 50000, 'masking': 'gaussian', 'lmbd': 2.0},
        description='ImageNet RGB, mixed noise', normalisation='channel'),
    HanZi('hanzi', 'Hanzi', training={
        'patch_size': [64, 64], 'batch_size': 64, 'steps': 50000, 'pro_steps': 500,
        'pro_total': 50000, 'masking': 'gaussian', 'lmbd': 2.0},
        description='HanZi characters, mixed noise'),
    Planaria('planaria', 'Denoising_Planaria', dim=3, training={
        **PLANARIA_PATCHES, 'steps': 50000, 'pro_steps': 500, 'pro_total': 50000,
        'masking': 'gaussian', 'lmbd': 2.0},
        description='CARE Planaria 3D, conditions 1-3'),
]}


def get_dataset(name: str, data_dir: str) -> Dataset:
    """The data set called `name`; 'auto' is bsd68 when its files are in data_dir, else demo."""
    if name == 'auto':
        bsd68 = DATASETS['bsd68']
        return bsd68 if os.path.exists(os.path.join(bsd68.root(data_dir), BSD68.files['test'])) \
            else DATASETS['demo']
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)} or auto")
    return DATASETS[name]
