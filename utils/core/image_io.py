"""Single image files for test_single.py and the web demo: reading and writing PNG, JPEG, TIFF
(8/16-bit, float TIFF; grey, RGB, RGBA, palette; JPEG orientation applied); denoising one is in
utils/prediction/photo.py. Arrays are (H, W) or (H, W, C), channels last."""
import glob
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from utils.core.files import atomic_write, check_writable
from utils.core.stack_io import is_zarr

TIFF_SUFFIXES = ('.tif', '.tiff')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg') + TIFF_SUFFIXES  # what folders and globs match
JPEG_QUALITY = 95  # of JPEG outputs (Pillow's scale 1-95)


@dataclass
class LoadedImage:
    """Pixels as read (dtype kept), the colour part as float64, and the alpha channel if any."""
    pixels: np.ndarray
    colour: np.ndarray
    alpha: Optional[np.ndarray]

    @property
    def dtype(self):
        return self.pixels.dtype


def find_images(paths: Sequence[str], what: str = '--images') -> List[str]:
    """The image files (and OME-Zarr folders) named by files, folders and globs, in order, each
    once."""
    found: List[str] = []
    seen = set()
    for path in paths:
        if is_zarr(path):  # an OME-Zarr image is a folder
            files = [path]
        elif os.path.isdir(path):
            files = sorted(os.path.join(path, f) for f in os.listdir(path)
                           if f.lower().endswith(IMAGE_SUFFIXES)
                           or is_zarr(os.path.join(path, f)))
            if not files:
                raise ValueError(f"{what}: no PNG, JPEG or TIFF files or Zarr folders in the "
                                 f"folder {path}")
        elif os.path.isfile(path):
            files = [path]
        else:
            files = sorted(f for f in glob.glob(path) if os.path.isfile(f)
                           and f.lower().endswith(IMAGE_SUFFIXES))
            if not files:
                raise ValueError(f"{what}: {path} is no file or folder and matches no PNG, "
                                 f"JPEG or TIFF file")
        found += [f for f in files if f not in seen]
        seen.update(files)
    if not found:
        raise ValueError(f"{what}: no images given")
    return found


def read_image(path: str) -> LoadedImage:
    """Read an image file losslessly: TIFF with tifffile, PNG with OpenCV (8- and 16-bit grey,
    RGB and RGBA; Pillow would cut 16-bit colour to 8 bits), other formats (JPEG, ...) with
    Pillow, turned upright by their EXIF orientation. Palette images become RGB(A).
    Raises ValueError for non-images."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such image file: {path}")
    try:
        if path.lower().endswith(TIFF_SUFFIXES):
            import tifffile
            pixels = tifffile.imread(path)
        else:
            from PIL import Image, ImageOps
            with Image.open(path) as im:
                if im.format == 'PNG':
                    pixels = _read_png(path)
                else:
                    im = ImageOps.exif_transpose(im)
                    if im.mode == 'P':
                        im = im.convert('RGBA' if 'transparency' in im.info else 'RGB')
                    elif im.mode in ('1', 'CMYK', 'YCbCr', 'LAB', 'HSV'):
                        im = im.convert('RGB' if im.mode != '1' else 'L')
                    pixels = np.array(im)
    except Exception as error:  # PIL, OpenCV and tifffile raise many types for unreadable files
        raise ValueError(f"cannot read {path} as an image ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}); give a PNG, "
                         f"JPEG or TIFF file") from None
    if pixels.ndim == 3 and pixels.shape[-1] in (2, 4):  # grey+alpha or RGBA
        colour, alpha = pixels[..., :-1], pixels[..., -1]
    else:
        colour, alpha = pixels, None
    if colour.ndim == 3 and colour.shape[-1] == 1:
        colour = colour[..., 0]
    if colour.ndim not in (2, 3) or (colour.ndim == 3 and colour.shape[-1] != 3):
        raise ValueError(f"{path} has shape {pixels.shape}; expected a 2D grey, RGB or RGBA image")
    return LoadedImage(pixels, colour.astype(np.float64), alpha)


def _read_png(path: str) -> np.ndarray:
    """A PNG's pixels at their bit depth, channels RGB(A) (OpenCV reads BGR(A))."""
    import cv2
    pixels = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ValueError('OpenCV could not decode it')
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA if pixels.shape[-1] == 4
                              else cv2.COLOR_BGR2RGB)
    return pixels


def image_size(path: str) -> Tuple[int, int]:
    """(height, width) of an image file from its header, without decoding the pixels."""
    try:
        if path.lower().endswith(TIFF_SUFFIXES):
            import tifffile
            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
            return int(shape[0]), int(shape[1])
        from PIL import Image
        with Image.open(path) as im:
            return im.height, im.width
    except Exception as error:  # as in read_image
        raise ValueError(f"cannot read {os.path.basename(path)} as an image "
                         f"({type(error).__name__}); give a PNG, JPEG or TIFF file") from None


def to_dtype(pixels: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Round and clip to the value range of `like`'s dtype (integers), or to its min..max
    (floats), and cast: no wrap-around."""
    if np.issubdtype(like.dtype, np.integer):
        info = np.iinfo(like.dtype)
        return np.clip(np.round(pixels), info.min, info.max).astype(like.dtype)
    return np.clip(pixels, like.min(), like.max()).astype(like.dtype)


def check_format(path: str, dtype) -> None:
    """Raise ValueError when the file type of `path` cannot hold pixels of `dtype` (float
    needs TIFF, 16 bits TIFF or PNG, JPEG takes 8 bits only)."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in TIFF_SUFFIXES:
        return
    kind = 'JPEG' if suffix in ('.jpg', '.jpeg') else 'PNG'
    dtype = np.dtype(dtype)
    if not (dtype == np.uint8 or (kind == 'PNG' and dtype == np.uint16)):
        raise ValueError(f"{dtype} pixels cannot be saved as {kind} ({path}); write a TIFF "
                         f"instead (an output path ending in .tif)")


def write_image_atomic(path: str, pixels: np.ndarray) -> None:
    """Save (H, W) or (H, W, C) pixels through a temporary file and a rename (no partial
    files): TIFF any dtype (tifffile), PNG 8 or 16 bits (OpenCV), JPEG 8 bits at quality
    JPEG_QUALITY (Pillow)."""
    check_writable(path)
    suffix = os.path.splitext(path)[1].lower()
    with atomic_write(path) as tmp:
        if suffix in TIFF_SUFFIXES:
            import tifffile
            tifffile.imwrite(tmp, pixels)
        elif suffix in ('.jpg', '.jpeg'):
            from PIL import Image
            Image.fromarray(pixels).save(tmp, format='JPEG', quality=JPEG_QUALITY)
        else:
            _write_png(tmp, pixels)


def _write_png(path: str, pixels: np.ndarray) -> None:
    """A PNG of (H, W[, C]) uint8 or uint16 pixels (OpenCV; C = 3 or 4 is RGB(A), and grey +
    alpha (C = 2), which OpenCV cannot write, becomes RGBA with the grey in R, G and B)."""
    import cv2
    if pixels.ndim == 3 and pixels.shape[-1] == 2:
        pixels = np.concatenate([np.repeat(pixels[..., :1], 3, axis=-1), pixels[..., 1:]], -1)
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA if pixels.shape[-1] == 4
                              else cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode('.png', pixels)
    if not ok:
        raise OSError(f"OpenCV could not encode {path} as PNG")
    encoded.tofile(path)
