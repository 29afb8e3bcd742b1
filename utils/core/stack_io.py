"""Stacks larger than memory: multi-page, BigTIFF and OME-TIFF files and OME-Zarr folders opened
lazily (nothing is read until sliced), and denoised stacks written to Zarr, OME-Zarr or
(Big/OME-)TIFF page by page. Denoising them: utils/prediction/stack.py.

Axes are named as OME names them, outermost first: T (time), C (channel), Z, Y, X and S (the
samples of an RGB pixel, innermost); tifffile's other letters (I, Q: pages of unknown meaning)
become T, Z or C, whichever is free. Physical pixel sizes (`Stack.scale`, e.g. {'Z': 2.0,
'Y': 0.5, 'X': 0.5} with units {'Z': 'micrometer', ...}) are kept in the output.
"""
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from utils.core.files import atomic_write, atomic_folder

OME_AXES = 'TCZYXS'
ZARR_MARKERS = ('zarr.json', '.zattrs', '.zgroup', '.zarray')  # files of a Zarr folder
BIGTIFF_ABOVE = 2 ** 31  # bytes: larger TIFF outputs are BigTIFF (classic TIFF ends at 4 GB)
CHUNK = 512  # pixels along Y and X of an output Zarr chunk


@dataclass
class Stack:
    """A lazily read n-D image. data: an array-like sliced on demand (a zarr.Array);
    axes: one letter per axis of OME_AXES; scale / units: physical size of a pixel along an
    axis, and its unit; kind: 'tiff' or 'zarr' (the format it came from)."""
    data: object
    axes: str
    path: str
    kind: str
    scale: Dict[str, float] = field(default_factory=dict)
    units: Dict[str, str] = field(default_factory=dict)

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(int(n) for n in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    def describe(self) -> str:
        sizes = ' x '.join(f'{n} {a}' for a, n in zip(self.axes, self.shape))
        return f"{os.path.basename(self.path.rstrip('/'))}: {sizes}, {self.dtype}"


def is_zarr(path: str) -> bool:
    """Whether `path` is a Zarr folder (an OME-Zarr image among them)."""
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, m))
                                       for m in ZARR_MARKERS)


def is_stack(path: str) -> bool:
    """Whether `path` is more than one 2D image: a Zarr folder, or a TIFF whose first series has
    more axes than Y, X and the samples of a colour pixel (pages of a z-stack or a time
    series, channels)."""
    if is_zarr(path):
        return True
    if not path.lower().endswith(('.tif', '.tiff')) or not os.path.isfile(path):
        return False
    import tifffile
    try:
        with tifffile.TiffFile(path) as tif:
            axes = _series_axes(tif)
            return sum(1 for a, n in zip(axes, tif.series[0].shape) if a != 'S' and n > 1) > 2
    except Exception:  # not a TIFF: read_image says why
        return False


def _series_axes(tif) -> str:
    """The OME axes of a TIFF's first series; samples that are no RGB colour or planar (tifffile
    reads a (3 or 4, H, W) stack written without metadata as planar RGB) are channels."""
    import tifffile
    axes = tif.series[0].axes.upper()
    if 'S' in axes and (not axes.endswith('S')
                        or tif.pages[0].photometric != tifffile.PHOTOMETRIC.RGB):
        axes = axes.replace('S', 'C' if 'C' not in axes else 'Q')
    return _ome_axes(axes)


def _ome_axes(axes: str) -> str:
    """tifffile's axis letters as OME_AXES (I, Q and other page axes to a free one of T, Z, C)."""
    out = []
    free = [a for a in 'TZC' if a not in axes]
    for a in axes.upper():
        if a in OME_AXES and a not in out:
            out.append(a)
        elif free:
            out.append(free.pop(0))
        else:
            raise ValueError(f"cannot name the axes {axes!r} as OME axes (T, C, Z, Y, X, S)")
    return ''.join(out)


def open_stack(path: str) -> Stack:
    """Open a TIFF (tifffile: multi-page, BigTIFF, OME-TIFF, ImageJ hyperstacks; compressed or
    not) or an OME-Zarr folder (zarr; its full-resolution level) without reading its pixels.
    Raises ValueError for anything else."""
    if is_zarr(path):
        return _open_ome_zarr(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such image file or Zarr folder: {path}")
    if not path.lower().endswith(('.tif', '.tiff')):
        raise ValueError(f"{path}: stacks are read from TIFF files or OME-Zarr folders")
    import tifffile
    import zarr
    try:
        with tifffile.TiffFile(path) as tif:
            axes = _series_axes(tif)
            scale, units = _tiff_scale(tif, axes)
        store = tifffile.imread(path, aszarr=True, series=0, level=0)
        data = zarr.open(store, mode='r')
    except Exception as error:  # tifffile raises many types for broken files
        raise ValueError(f"cannot read {path} as a TIFF stack ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''})") from None
    return Stack(data, axes, path, 'tiff', scale, units)


def _tiff_scale(tif, axes: str) -> Tuple[Dict[str, float], Dict[str, str]]:
    """Physical pixel sizes of a TIFF: OME's PhysicalSize{X,Y,Z}, else ImageJ's resolution and
    spacing."""
    scale: Dict[str, float] = {}
    units: Dict[str, str] = {}
    if tif.is_ome and tif.ome_metadata:
        import tifffile
        image = tifffile.xml2dict(tif.ome_metadata)['OME']['Image']
        pixels = (image[0] if isinstance(image, list) else image)['Pixels']
        for a in 'XYZ':
            if f'PhysicalSize{a}' in pixels and a in axes:
                scale[a] = float(pixels[f'PhysicalSize{a}'])
                units[a] = str(pixels.get(f'PhysicalSize{a}Unit', 'µm'))
    elif tif.is_imagej:
        meta = tif.imagej_metadata or {}
        unit = str(meta.get('unit', '')).replace('\\u00B5', 'µ') or 'pixel'
        tags = tif.pages[0].tags
        for a, tag in (('X', 'XResolution'), ('Y', 'YResolution')):
            if tag in tags:
                numerator, denominator = tags[tag].value
                if numerator and a in axes:
                    scale[a], units[a] = denominator / numerator, unit
        if 'spacing' in meta and 'Z' in axes:
            scale['Z'], units['Z'] = float(meta['spacing']), unit
    return scale, units


def _open_ome_zarr(path: str) -> Stack:
    """The full-resolution array of an OME-Zarr image (NGFF 0.4 or 0.5), or a plain Zarr
    array (axes then guessed: the last two Y, X); ValueError for anything else."""
    try:
        return _read_ome_zarr(path)
    except (KeyError, IndexError, TypeError) as error:
        raise ValueError(f"{path} is no readable OME-Zarr image ({type(error).__name__}: "
                         f"{error}); give the folder of one image") from None


def _read_ome_zarr(path: str) -> Stack:
    import zarr
    node = zarr.open(path, mode='r')
    if isinstance(node, zarr.Array):
        axes = _ome_axes('Q' * (node.ndim - 2) + 'YX')
        return Stack(node, axes, path, 'zarr')
    attrs = dict(node.attrs)
    multiscales = attrs.get('ome', attrs).get('multiscales')
    if not multiscales:
        raise ValueError(f"{path} is a Zarr group but no OME-Zarr image (no 'multiscales' "
                         f"metadata); give the folder of one image")
    first = multiscales[0]
    dataset = first['datasets'][0]
    axes_meta = first.get('axes') or [{'name': a} for a in 'tczyx'[-node[dataset['path']].ndim:]]
    names = [(a['name'] if isinstance(a, dict) else a) for a in axes_meta]
    axes = _ome_axes(''.join(n[0].upper() for n in names))
    scale: Dict[str, float] = {}
    units: Dict[str, str] = {}
    for transform in dataset.get('coordinateTransformations', []):
        if transform.get('type') == 'scale':
            for a, meta, s in zip(axes, axes_meta, transform['scale']):
                if a in 'XYZ':
                    scale[a] = float(s)
                    if isinstance(meta, dict) and meta.get('unit'):
                        units[a] = meta['unit']
    return Stack(node[dataset['path']], axes, path, 'zarr', scale, units)


# ----------------------------------------------------------------------------- writing

def check_zarr_output(like: Stack) -> None:
    """ValueError when `like` cannot be written as OME-Zarr: NGFF wants its axes in the order
    T, C, Z, Y, X and has no RGB sample axis (tifffile reads ImageJ hyperstacks as ZCYX)."""
    order = [OME_AXES.index(a) for a in like.axes]
    if 'S' in like.axes or order != sorted(order):
        raise ValueError(f"{like.describe()}: OME-Zarr takes axes in the order T, C, Z, Y, X "
                         f"without RGB samples, these are {like.axes}; write a TIFF instead "
                         f"(--stack-format tiff)")


@contextmanager
def zarr_output(path: str, like: Stack, dtype=None) -> Iterator[object]:
    """Yield a new zarr.Array of `like`'s shape (dtype: like's by default), chunked by frames of
    CHUNK x CHUNK pixels, in a temporary folder beside `path`; on success the folder becomes
    the OME-Zarr image `path` (axes, physical sizes), replacing an older one. ValueError first
    when the stack's axes cannot be OME-Zarr's (`check_zarr_output`)."""
    import zarr
    from ome_zarr.writer import write_multiscales_metadata
    check_zarr_output(like)
    with _replacing_folder(path) as tmp:
        group = zarr.open_group(tmp, mode='w')
        chunks = tuple(min(n, CHUNK) if a in 'YX' else (n if a == 'S' else 1)
                       for a, n in zip(like.axes, like.shape))
        array = group.create_array('0', shape=like.shape, chunks=chunks,
                                   dtype=dtype or like.dtype, fill_value=0)
        yield array
        axes = [{'name': a.lower(), 'type': _AXIS_TYPES[a],
                 **({'unit': _ngff_unit(like.units[a])} if like.units.get(a) else {})}
                for a in like.axes]
        scale = [like.scale.get(a, 1.0) for a in like.axes]
        write_multiscales_metadata(group, [{'path': '0', 'coordinateTransformations': [
            {'type': 'scale', 'scale': scale}]}], axes=axes,
            name=os.path.basename(path.rstrip('/')))


@contextmanager
def scratch_array(folder: str, like: Stack, dtype=None) -> Iterator[object]:
    """Yield an uncompressed zarr.Array of `like`'s shape in a temporary folder in `folder`,
    removed afterwards (where a TIFF output is assembled before it is written page by page)."""
    import tempfile

    import zarr
    tmp = tempfile.mkdtemp(prefix='.n2s-stack-', suffix='.zarr', dir=folder)
    try:
        chunks = tuple(n if a in 'YXS' else 1 for a, n in zip(like.axes, like.shape))
        yield zarr.create_array(tmp, shape=like.shape, chunks=chunks, dtype=dtype or like.dtype,
                                compressors=None, fill_value=0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_AXIS_TYPES = {'T': 'time', 'C': 'channel', 'Z': 'space', 'Y': 'space', 'X': 'space'}
_NGFF_UNITS = {'µm': 'micrometer', 'um': 'micrometer', 'micron': 'micrometer',
               'nm': 'nanometer', 'mm': 'millimeter', 's': 'second', 'ms': 'millisecond'}


_OME_UNITS = {'micrometer': 'µm', 'nanometer': 'nm', 'millimeter': 'mm', 'second': 's',
              'millisecond': 'ms'}  # OME-TIFF's symbols of NGFF's unit names


def _ngff_unit(unit: str) -> str:
    return _NGFF_UNITS.get(unit, unit)


@contextmanager
def _replacing_folder(path: str) -> Iterator[str]:
    """atomic_folder that replaces an existing folder at `path` (moved aside first, deleted once
    the new one is in place)."""
    old = None
    path = path.rstrip('/')
    if os.path.exists(path):
        if not is_zarr(path):
            raise ValueError(f"{path} exists and is no Zarr folder; choose another output")
        old = f"{path}.old-{os.getpid()}"
        shutil.rmtree(path + '.new', ignore_errors=True)  # left by an interrupted replacement
    with atomic_folder(path + '.new' if old else path) as tmp:
        yield tmp
    if old:
        os.rename(path, old)
        os.rename(path + '.new', path)
        shutil.rmtree(old, ignore_errors=True)


def write_tiff_pages(path: str, data, like: Stack, bigtiff: Optional[bool] = None) -> None:
    """Write the array-like `data` (like's axes, any shape of them) to the OME-TIFF `path`
    page by page (a page: Y x X [x S]), through a temporary file; BigTIFF above
    BIGTIFF_ABOVE bytes or when asked. The axes and physical sizes of `like` are kept."""
    import tifffile
    shape = tuple(int(n) for n in data.shape)
    dtype = np.dtype(data.dtype)
    page_axes = 3 if like.axes.endswith('S') else 2
    nbytes = int(np.prod(shape)) * dtype.itemsize
    metadata = {'axes': like.axes}
    for a, s in like.scale.items():
        metadata[f'PhysicalSize{a}'] = s
        if like.units.get(a):
            metadata[f'PhysicalSize{a}Unit'] = _OME_UNITS.get(like.units[a], like.units[a])

    def pages() -> Iterator[np.ndarray]:
        for index in np.ndindex(*shape[:len(shape) - page_axes]):
            yield np.asarray(data[index])

    with atomic_write(path) as tmp:
        tifffile.imwrite(tmp, data=pages(), shape=shape, dtype=dtype, ome=True,
                         bigtiff=nbytes > BIGTIFF_ABOVE if bigtiff is None else bigtiff,
                         photometric='rgb' if like.axes.endswith('S') and shape[-1] == 3
                         else 'minisblack', metadata=metadata)


def output_name(path: str, suffix: Optional[str] = None) -> str:
    """The default output of the stack `path`: <stem>_denoised<suffix>, keeping a double
    suffix such as .ome.tif or .ome.zarr; suffix replaces the input's ('.zarr', '.ome.tif')."""
    base = os.path.basename(path.rstrip('/'))
    lower = base.lower()
    for ext in ('.ome.tiff', '.ome.tif', '.ome.zarr', '.tiff', '.tif', '.zarr'):
        if lower.endswith(ext):
            stem, ext = base[:-len(ext)], base[-len(ext):]
            break
    else:
        stem, ext = os.path.splitext(base)
    return f'{stem}_denoised{suffix or ext}'


