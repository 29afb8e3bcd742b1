"""Axes of napari image layers as the stack code names them (utils/core/stack_io.py)."""
import numpy as np


def layer_axes(ndim: int, rgb: bool, dim: int) -> str:
    """OME axis names of a napari image layer of `ndim` axes (the colour axis of an RGB layer
    last, as 'S'): the last two Y and X, Z before them for 3D models, T and C further out."""
    spatial = ndim - (1 if rgb else 0)
    if spatial < 2:
        raise ValueError(f"the layer has {spatial} spatial axes; Noise2Same denoises images of "
                         f"2 or more")
    names = 'ZYX' if dim == 3 else 'YX'
    lead = 'TCZ' if dim == 2 else 'TC'
    if spatial - len(names) > len(lead):
        raise ValueError(f"the layer has {ndim} axes; at most {len(names) + len(lead)} are "
                         f"taken")
    if spatial < len(names):
        raise ValueError(f"a {dim}D model needs a layer of {dim} spatial axes, this one has "
                         f"{spatial}")
    return lead[:spatial - len(names)] + names + ('S' if rgb else '')


def middle_frame(data, axes: str, dim: int) -> np.ndarray:
    """The frame `--adapt` trains on: the middle of every axis but the model's spatial ones
    (and an RGB layer's colour, kept)."""
    spatial = 'ZYX' if dim == 3 else 'YX'
    index = tuple(slice(None) if a in spatial or a == 'S' else n // 2
                  for a, n in zip(axes, data.shape))
    return np.asarray(data[index], np.float64)
