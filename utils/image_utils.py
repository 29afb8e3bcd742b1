"""Single image files for test_single.py and the web demo: reading and writing PNG, JPEG, TIFF
(8/16-bit, float TIFF; grey, RGB, RGBA, palette; JPEG orientation applied) and denoising one with a model, tiled when large.
Arrays are (H, W) or (H, W, C), channels last."""
import glob
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .files import atomic_write, check_writable

TIFF_SUFFIXES = ('.tif', '.tiff')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg') + TIFF_SUFFIXES  # what folders and globs match
TILE_ABOVE = 1024 * 1024  # pixels; larger images are denoised tile by tile
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as PIL's 'L' conversion
# orthonormal luminance / red-green / blue-yellow transform (rows); its inverse is its transpose
OPPONENT = np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]]) / np.sqrt([[3], [2], [6]])
COLOUR_MODES = ('opponent', 'channels')  # how a grey model denoises colour (`denoise_array`)
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
    """The image files named by files, folders and globs, in order, each once."""
    found: List[str] = []
    seen = set()
    for path in paths:
        if os.path.isdir(path):
            files = sorted(os.path.join(path, f) for f in os.listdir(path)
                           if f.lower().endswith(IMAGE_SUFFIXES))
            if not files:
                raise ValueError(f"{what}: no PNG, JPEG or TIFF files in the folder {path}")
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


def model_input(image: LoadedImage, in_channels: int, keep_colour: bool = True) -> np.ndarray:
    """The array a model of `in_channels` denoises: a colour image stays colour (H, W, 3) for
    grey models too (`denoise_array` then denoises its channels), or becomes its luminance
    (H, W) with keep_colour=False (what a grey model is adapted on); colour models get RGB,
    a grey image repeated for them."""
    colour = image.colour
    if in_channels == 1:
        return colour @ LUMA if colour.ndim == 3 and not keep_colour else colour
    if in_channels == 3:
        return colour if colour.ndim == 3 else np.repeat(colour[..., None], 3, axis=-1)
    raise ValueError(f"test_single.py handles grey or RGB models, this one has {in_channels} "
                     f"channels")


def to_dtype(pixels: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Round and clip to the value range of `like`'s dtype (integers), or to its min..max
    (floats), and cast: no wrap-around."""
    if np.issubdtype(like.dtype, np.integer):
        info = np.iinfo(like.dtype)
        return np.clip(np.round(pixels), info.min, info.max).astype(like.dtype)
    return np.clip(pixels, like.min(), like.max()).astype(like.dtype)


def output_pixels(denoised: np.ndarray, image: LoadedImage) -> np.ndarray:
    """The array to save: the input's dtype, its alpha channel re-attached."""
    out = to_dtype(denoised, image.pixels)
    if image.alpha is not None:
        alpha = image.alpha[..., None]
        out = np.concatenate([out[..., None] if out.ndim == 2 else out, alpha], axis=-1)
    return out


def denoise(model, image: LoadedImage, tile_size: int = 512, margin: int = 32,
            tta: bool = False, refine: bool = False,
            colour: str = 'opponent') -> Tuple[np.ndarray, np.ndarray]:
    """(model input, denoised float array of its shape) of an image file's pixels
    (`model_input`, `denoise_array`)."""
    x = model_input(image, model.in_channels)
    return x, denoise_array(model, x, tile_size, margin, tta, refine, colour)


def denoise_array(model, x: np.ndarray, tile_size: int = 512, margin: int = 32,
                  tta: bool = False, refine: bool = False, colour: str = 'opponent') -> np.ndarray:
    """Denoise (H, W) or (H, W, C) float pixels, any value range, with `model`; images over
    TILE_ABOVE pixels in tile_size tiles overlapping by 2 * margin; refine: `utils.refine`.

    A grey model denoises a colour image channel by channel, in the colour space `colour`:
    'channels' the RGB channels, each normalised by its own mean and std; 'opponent' (three
    channels only) the orthonormal luminance/chrominance channels OPPONENT @ rgb, which keep
    Gaussian RGB noise white and of the same std, each normalised by its own mean and by the
    std of the RGB mean (so the network sees the noise level relative to the image's contrast
    as in a grey photograph; chrominance, of low contrast, is smoothed more). Returns float32
    of x's shape."""
    if colour not in COLOUR_MODES:
        raise ValueError(f"unknown colour mode {colour!r}; choose from {', '.join(COLOUR_MODES)}")

    def one(z, im_mean=None, im_std=None):
        if z.shape[0] * z.shape[1] > TILE_ABOVE:
            return model.crop_predict(z, tile_size, margin, im_mean=im_mean, im_std=im_std,
                                      tta=tta, refine=refine)
        return model.predict(z, im_mean=im_mean, im_std=im_std, tta=tta, refine=refine)

    if model.in_channels != 1 or x.ndim == 2:
        return one(x)
    if np.all(x == x[..., :1]):  # grey stored as colour: one channel, repeated
        return np.repeat(one(x[..., 0])[..., None], x.shape[-1], axis=-1)
    if colour == 'channels' or x.shape[-1] != 3:
        return np.stack([one(x[..., c]) for c in range(x.shape[-1])], axis=-1)
    opponent = x @ OPPONENT.T
    contrast = float(np.std(x.mean(axis=-1)))
    out = np.stack([one(opponent[..., c], im_mean=float(opponent[..., c].mean()),
                        im_std=contrast) for c in range(3)], axis=-1)
    return (out @ OPPONENT).astype(np.float32)


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


def save_figure_atomic(path: str, noisy: np.ndarray, denoised: np.ndarray, show: bool,
                       title: str = '') -> None:
    """Side-by-side figure of input and output (matplotlib, Agg unless `show`)."""
    import matplotlib
    if not show:
        matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    low, high = float(np.min(noisy)), float(np.max(noisy))
    scale = lambda x: np.clip((x - low) / max(high - low, 1e-12), 0, 1)
    fig, axes = plt.subplots(1, 2, figsize=(12, 6 * noisy.shape[0] / max(noisy.shape[1], 1) + 1))
    for ax, image, label in zip(axes, (noisy, denoised), ('input', 'denoised')):
        ax.imshow(scale(image), cmap='gray' if image.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(label)
        ax.axis('off')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=100)
    if show:
        plt.show()
    plt.close(fig)
