"""A user's own image files as a training set: `train.py --images PATH ...`.

PATHs are files, folders (their image files, sorted, not recursive) and globs of PNG, JPEG and
TIFF images: grey or RGB, 8-bit, 16-bit or float, of any sizes. A multi-page TIFF (Z, Y, X) is
a stack of 2D frames, or one 3D volume (axes ZYX) for a 3D model (`--dim 3`). Each image (or
frame) is normalised by its own mean and std ('image'; each channel's for RGB: 'channel'), as
the original does for BSD68. Everything is read into memory.
"""
import hashlib
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from utils.core.image_io import TIFF_SUFFIXES, find_images, read_image
from utils.core.noise import relative_noise
from utils.core.normalisation import normalise
from utils.data.datasets import BSD_TRAINING, PLANARIA_PATCHES, Dataset, TestImage

VALIDATION_CROP = 256  # largest validation crop per axis (the loss of whole crops, each save)
MEMORY_FACTOR = 3  # float32 copies held while training: raw, normalised, the pipeline's constant


class ImageFileError(ValueError):
    """A training file cannot be used; the message names it and says what to do."""


def read_training_file(path: str, dim: int = 2) -> Tuple[List[np.ndarray], np.dtype]:
    """(the training images of one file, each (spatial..., C) float32 in the file's units,
    the pixel type stored in the file).

    2D: an image is one; a TIFF stack (Z, Y, X) or (Z, Y, X, 3) gives Z frames. 3D: a TIFF
    (Z, Y, X) or (Z, Y, X, 3) is one volume. The alpha channel of PNGs is dropped."""
    if path.lower().endswith(TIFF_SUFFIXES):
        import tifffile
        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                pixels, axes = series.asarray(), series.axes
        except Exception as error:  # tifffile raises many types for unreadable files
            raise ImageFileError(f"cannot read {path} as a TIFF ({type(error).__name__}); "
                                 f"remove it or give a PNG, JPEG or TIFF file") from None
        if 'S' in axes and pixels.shape[axes.index('S')] in (3, 4):  # RGB(A) samples, planar too
            pixels = np.moveaxis(pixels, axes.index('S'), -1)[..., :3]
        pixels = np.squeeze(pixels)
        rgb = pixels.ndim >= 3 and pixels.shape[-1] == 3
        spatial = pixels.ndim - rgb
        if dim == 2 and spatial == 3:
            images = list(pixels)
        elif spatial == dim:
            images = [pixels]
        else:
            raise ImageFileError(f"{path} has shape {pixels.shape}: a {dim}D model needs "
                                 f"{'a 2D image or a stack of frames (Z, Y, X)' if dim == 2 else 'a 3D volume (Z, Y, X)'}")
        images = [im if rgb else im[..., None] for im in images]
    else:
        if dim == 3:
            raise ImageFileError(f"{path}: a 3D model trains on TIFF volumes (Z, Y, X)")
        try:
            loaded = read_image(path)
        except ValueError as error:
            raise ImageFileError(f"{error}; remove it from the training files") from None
        pixels, colour = loaded.pixels, loaded.colour
        images = [colour if colour.ndim == 3 else colour[..., None]]
    return [np.asarray(im, np.float32) for im in images], pixels.dtype


def file_digest(paths: Sequence[str]) -> str:
    """SHA-256 over the files' names and bytes: the same files give the same digest."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.path.basename(path).encode() + b'\0')
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                digest.update(block)
    return digest.hexdigest()


def central_crop(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    starts = [(s - c) // 2 for s, c in zip(image.shape, shape)]
    return image[tuple(slice(a, a + c) for a, c in zip(starts, shape))]


def available_memory() -> Optional[int]:
    """Bytes of memory free for new data (Linux), else None."""
    try:
        return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError, AttributeError):
        return None


@dataclass(frozen=True)
class ImageFiles(Dataset):
    """Training images from files (`--images`), with a validation part: `val_paths`, else
    the fraction `val_fraction` of the training files, drawn with `seed`. No test set."""
    paths: Tuple[str, ...] = ()
    val_paths: Tuple[str, ...] = ()
    val_fraction: float = 0.1
    seed: int = 666

    def _split(self) -> Tuple[List[str], List[str]]:
        files = find_images(self.paths)
        if self.val_paths:
            val = find_images(self.val_paths, '--val-images')
            return [f for f in files if f not in val], val
        if not 0 <= self.val_fraction < 1:
            raise ImageFileError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        count = int(round(len(files) * self.val_fraction)) if len(files) > 1 else 0
        order = np.random.default_rng(self.seed).permutation(len(files))
        val = sorted(order[:count])
        return [f for i, f in enumerate(files) if i not in val], [files[i] for i in val]

    def _read(self, files: Sequence[str]) -> Tuple[List[np.ndarray], List[str], List[str]]:
        """(images, the file of each, the file pixel types), each image checked."""
        images, sources, dtypes = [], [], []
        for path in files:
            frames, dtype = read_training_file(path, self.dim)
            dtypes.append(str(dtype))
            for image in frames:
                if not np.all(np.isfinite(image)):
                    raise ImageFileError(f"{path} holds {image.size - np.isfinite(image).sum()} "
                                         f"NaN or Inf values; clean or remove it")
                if image.shape[-1] != self.in_channels:
                    raise ImageFileError(
                        f"{path} has {image.shape[-1]} channel(s), the other training images "
                        f"{self.in_channels}: train grey and RGB images separately")
                images.append(image)
                sources.append(path)
        return images, sources, dtypes

    def files(self) -> Dict[str, List[str]]:
        train, val = self._split()
        if not train:
            raise ImageFileError("no training images left after the validation split; give "
                                 "more files or a smaller --val-fraction")
        return {'train': train, 'val': val}

    def record(self) -> Dict:
        files = self.files()
        return {'dataset': self.name, 'images': {
            'paths': [os.path.abspath(p) for p in self.paths],
            'val_paths': [os.path.abspath(p) for p in self.val_paths],
            'val_fraction': self.val_fraction, 'files': len(files['train']),
            'val_files': len(files['val']),
            'digest': file_digest(files['train'] + files['val'])}}

    def raw_training_images(self, data_dir: str = '') -> List[np.ndarray]:
        return self._read(self.files()['train'])[0]

    def training_data(self, data_dir: str = '', patch_size: Optional[Sequence[int]] = None,
                      verbose: bool = False):
        files = self.files()
        train, sources, dtypes = self._read(files['train'])
        val = self._read(files['val'])[0]
        if patch_size is not None:
            for image, path in zip(train, sources):
                if any(s < p for s, p in zip(image.shape[:-1], patch_size)):
                    raise ImageFileError(f"{path} of size {image.shape[:-1]} is smaller than the "
                                         f"patch {tuple(patch_size)}: remove it or give a smaller "
                                         f"--patch-size")
        needed = self._check_memory(train + val)
        if verbose:
            print(self.summary(train, dtypes, val, files) +
                  f"; about {needed / 2 ** 20:.0f} MB in memory")
        per_channel = self.normalisation == 'channel'
        train = [normalise(x, per_channel) for x in train]
        if not val:
            return train, None
        shape = [min(VALIDATION_CROP, *(v.shape[axis] for v in val)) for axis in range(self.dim)]
        val = np.stack([normalise(central_crop(v, shape + [v.shape[-1]]), per_channel)
                        for v in val])
        return train, val

    def _check_memory(self, images: List[np.ndarray]) -> int:
        """Bytes the images need while training (padded to the largest, MEMORY_FACTOR
        copies); more than the free memory is an ImageFileError."""
        largest = np.max([im.shape[:-1] for im in images], axis=0)
        needed = MEMORY_FACTOR * len(images) * int(np.prod(largest)) * self.in_channels * 4
        free = available_memory()
        if free is not None and needed > free:
            raise ImageFileError(
                f"the {len(images)} images need about {needed / 2 ** 30:.1f} GB in memory "
                f"(padded to the largest, {tuple(largest)}), {free / 2 ** 30:.1f} GB are free: "
                f"train on fewer or smaller images (e.g. crops of the large ones)")
        return needed

    def summary(self, train: List[np.ndarray], dtypes: List[str], val: List[np.ndarray],
                files: Dict[str, List[str]]) -> str:
        """One paragraph on the data: counts, sizes, channels, dtypes, range, noise level."""
        shapes = np.array([im.shape[:-1] for im in train])
        dtypes = sorted(set(dtypes))
        low = min(float(im.min()) for im in train)
        high = max(float(im.max()) for im in train)
        size = lambda axis: f"{shapes[:, axis].min()}" + (
            f"-{shapes[:, axis].max()}" if shapes[:, axis].min() != shapes[:, axis].max() else '')
        sample = train[:: max(1, len(train) // 20)]
        relative = np.median([relative_noise(im, self.dim) for im in sample])
        return (f"training on {len(train)} image(s) from {len(files['train'])} file(s): "
                f"{' x '.join(size(a) for a in range(self.dim))} pixels, "
                f"{self.in_channels} channel(s), {', '.join(dtypes)}, values {low:g}..{high:g}; "
                f"estimated noise std {100 * relative:.1f} % of the image std (median of "
                f"{len(sample)}; --noise-sigma auto sets lmbd from it); validation: {len(val)} "
                f"image(s) from {len(files['val'])} file(s)")

    def test_images(self, data_dir: str = '') -> List[TestImage]:
        raise ValueError("a model trained on --images has no test set: denoise files with "
                         "'python test_single.py FILES --name NAME'")


def training_defaults(dim: int) -> Dict:
    """The published defaults of a data set of files: BSD68's in 2D, Planaria's patch and
    batch in 3D (REFERENCE.md section 7)."""
    return dict(BSD_TRAINING) if dim == 2 else {**BSD_TRAINING, **PLANARIA_PATCHES}


def from_files(paths: Sequence[str], val_paths: Sequence[str] = (), val_fraction: float = 0.1,
               seed: int = 666, dim: int = 2, training: Optional[Dict] = None) -> ImageFiles:
    """The ImageFiles data set of these paths; its channel count is the first file's."""
    first = read_training_file(find_images(paths)[0], dim)[0][0]
    channels = int(first.shape[-1])
    return ImageFiles('files', '', dim=dim, in_channels=channels, training=dict(training or {}),
                      description=f'{len(paths)} path(s) of image files',
                      normalisation='channel' if channels > 1 else 'image',
                      paths=tuple(paths), val_paths=tuple(val_paths),
                      val_fraction=float(val_fraction), seed=int(seed))
