"""Denoising one image as read from a file: channels, colour with grey models, tiling when large."""
from typing import List, Optional, Tuple

import numpy as np

from utils.core.image_io import LoadedImage, to_dtype
from utils.prediction.predictor import PredictOptions, Predictor

TILE_ABOVE = 1024 * 1024  # pixels; larger images are denoised tile by tile
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as PIL's 'L' conversion
# orthonormal luminance / red-green / blue-yellow transform (rows); its inverse is its transpose
OPPONENT = np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]]) / np.sqrt([[3], [2], [6]])
COLOUR_MODES = ('opponent', 'channels')  # how a grey model denoises colour (`denoise_array`)


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


def output_pixels(denoised: np.ndarray, image: LoadedImage) -> np.ndarray:
    """The array to save: the input's dtype, its alpha channel re-attached."""
    out = to_dtype(denoised, image.pixels)
    if image.alpha is not None:
        alpha = image.alpha[..., None]
        out = np.concatenate([out[..., None] if out.ndim == 2 else out, alpha], axis=-1)
    return out


def denoise(predictor: Predictor, image: LoadedImage,
            options: PredictOptions = PredictOptions(),
            reports: Optional[List] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(model input, denoised float array of its shape) of an image file's pixels
    (`model_input`, `denoise_array`)."""
    x = model_input(image, predictor.in_channels)
    return x, denoise_array(predictor, x, options, reports)


def denoise_array(predictor: Predictor, x: np.ndarray,
                  options: PredictOptions = PredictOptions(),
                  reports: Optional[List] = None) -> np.ndarray:
    """Denoise (H, W) or (H, W, C) float pixels, any value range, with a model's `predictor`
    (`Noise2Same.restored_predictor()`); images over TILE_ABOVE pixels in options.tile_size
    tiles overlapping by 2 * options.margin; options.refine: utils/prediction/refine.py.

    A grey model denoises a colour image channel by channel, in the colour space `colour`:
    'channels' the RGB channels, each normalised by its own mean and std; 'opponent' (three
    channels only) the orthonormal luminance/chrominance channels OPPONENT @ rgb, which keep
    Gaussian RGB noise white and of the same std, each normalised by its own mean and by the
    std of the RGB mean (so the network sees the noise level relative to the image's contrast
    as in a grey photograph; chrominance, of low contrast, is smoothed more). Returns float32
    of x's shape; a constant image (an empty frame) unchanged. reports: a list that receives
    the refinement's `Refinement` of each channel denoised (with options.refine)."""
    colour = options.colour
    if colour not in COLOUR_MODES:
        raise ValueError(f"unknown colour mode {colour!r}; choose from {', '.join(COLOUR_MODES)}")
    if x.size and np.ptp(x) == 0:  # constant (an empty frame): nothing to denoise, once the
        grey = x.ndim == 3 and predictor.in_channels == 1  # image is checked (size, NaN)
        predictor.channels_last(x[..., 0] if grey else x)
        return np.array(x, np.float32)

    def one(z, im_mean=None, im_std=None):
        tiled = z.shape[0] * z.shape[1] > TILE_ABOVE
        return (predictor.crop_predict if tiled else predictor.predict)(
            z, options, im_mean, im_std, reports=reports)

    if predictor.in_channels != 1 or x.ndim == 2:
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
