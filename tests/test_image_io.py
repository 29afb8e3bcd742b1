"""Image files kept as they are (16-bit colour, EXIF orientation, JPEG quality, file mode),
tiles that equal whole-image prediction, and per-channel normalisation."""
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from utils.evaluation.figure import save_figure_atomic
from utils.core import image_io
from n2s_app import train_plan
from utils.prediction.predictor import Predictor


def png_bytes(pixels: np.ndarray) -> bytes:
    """A PNG written by hand (no image library): 8 or 16 bits, grey, RGB or RGBA, filter 0."""
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    depth = 16 if pixels.dtype == np.uint16 else 8
    rows = pixels.reshape(height, width * channels).astype('>u2' if depth == 16 else 'u1')
    raw = b''.join(b'\x00' + row.tobytes() for row in rows)

    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack(
            '>I', zlib.crc32(kind + data) & 0xffffffff)
    header = struct.pack('>IIBBBBB', width, height, depth, colour_type, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(raw))
            + chunk(b'IEND', b''))


def png_header(path):
    """(bit depth, colour type) from a PNG's IHDR chunk."""
    data = open(path, 'rb').read(33)
    return data[24], data[25]


@pytest.mark.parametrize('channels', [1, 3, 4])
def test_16_bit_png_is_read_and_written_losslessly(tmp_path, channels):
    rng = np.random.default_rng(channels)
    shape = (23, 31) if channels == 1 else (23, 31, channels)
    pixels = rng.integers(0, 65536, size=shape).astype(np.uint16)
    pixels.flat[0] = 65352  # a value far above 8 bits
    source = tmp_path / 'in.png'
    source.write_bytes(png_bytes(pixels))

    image = image_io.read_image(str(source))
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels, pixels)
    image_io.write_image_atomic(str(tmp_path / 'out.png'), image.pixels)
    assert png_header(tmp_path / 'out.png') == (16, {1: 0, 3: 2, 4: 6}[channels])
    np.testing.assert_array_equal(image_io.read_image(str(tmp_path / 'out.png')).pixels, pixels)


def test_8_bit_rgb_png_round_trip(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(9, 13, 3)).astype(np.uint8)
    (tmp_path / 'a.png').write_bytes(png_bytes(pixels))
    np.testing.assert_array_equal(image_io.read_image(str(tmp_path / 'a.png')).pixels, pixels)
    image_io.write_image_atomic(str(tmp_path / 'b.png'), pixels)
    assert png_header(tmp_path / 'b.png') == (8, 2)
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / 'b.png')), pixels)


def test_jpeg_exif_orientation_is_applied(tmp_path):
    # a 40x60 picture: left half dark, right half bright, top band mid-grey
    upright = np.zeros((40, 60), np.uint8)
    upright[:, 30:] = 250
    upright[:10] = 120
    stored = np.rot90(upright, 1)  # what a camera turned by 90 degrees stores
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / 'c.jpg', quality=95,
                                                       exif=exif.tobytes())
    pixels = image_io.read_image(str(tmp_path / 'c.jpg')).pixels
    assert pixels.shape == upright.shape
    assert np.abs(pixels.astype(float) - upright).mean() < 3


def test_jpeg_outputs_are_written_at_the_stated_quality(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, size=(32, 32)).astype(np.uint8)
    image_io.write_image_atomic(str(tmp_path / 'q.jpg'), pixels)
    # the IJG scaling of the standard luminance table (JPEG Annex K, first two rows) at
    # that quality; Pillow lists the tables in natural (row-major) order
    annex_k = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55]
    quality = image_io.JPEG_QUALITY
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    expected = [min(max((q * scale + 50) // 100, 1), 255) for q in annex_k]
    with Image.open(tmp_path / 'q.jpg') as im:
        assert list(im.quantization[0])[:16] == expected


def test_outputs_get_the_mode_of_a_plain_write(tmp_path):
    old = os.umask(0o022)
    try:
        image_io.write_image_atomic(str(tmp_path / 'o.png'), np.zeros((8, 8), np.uint8))
        save_figure_atomic(str(tmp_path / 'f.png'), np.zeros((8, 8)),
                                       np.zeros((8, 8)), show=False)
        from utils.core.files import write_csv_atomic, write_text_atomic
        write_csv_atomic(str(tmp_path / 'r.csv'), [{'a': 1}])
        write_text_atomic(str(tmp_path / 't.txt'), 'x')
        (tmp_path / 'plain').write_text('x')
    finally:
        os.umask(old)
    for name in ('o.png', 'f.png', 'r.csv', 't.txt'):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ['f.png', 'o.png', 'plain', 'r.csv',
                                                           't.txt']  # no temporary left


def test_tiles_equal_whole_image_prediction_of_a_trained_model():
    from models import Noise2Same
    model = Noise2Same(str(ROOT / 'trained_models'), 'bsd68-N2S')
    rng = np.random.default_rng(5)
    # an odd size: the last tile starts at length - size, not a multiple of 2**depth
    yy, xx = np.mgrid[:301, :263]
    x = 120 + 60 * np.sin(yy / 9.0) * np.cos(xx / 13.0) + 25 * rng.standard_normal((301, 263))
    whole = model.predict(x)
    for size, margin in ((128, 32), (100, 30)):  # the second is rounded to the network's grid
        tiled = model.crop_predict(x, size, margin)
        assert np.abs(tiled - whole).max() <= 1e-4 * np.ptp(x), (size, margin)


def test_colour_normalisation_per_channel_or_over_all_channels():
    network = lambda batch: np.tanh(batch)  # a non-linear stand-in for the U-Net
    rng = np.random.default_rng(2)
    image = rng.normal(size=(16, 24, 3)) * [1.0, 5.0, 20.0] + [0.0, 50.0, -30.0]
    for per_channel in (True, False):
        predictor = Predictor(network, 2, 3, 8, per_channel=per_channel)
        axes = (0, 1) if per_channel else None
        mean, std = image.mean(axis=axes), image.std(axis=axes)
        expected = np.tanh((image - mean) / std) * std + mean
        np.testing.assert_allclose(predictor.predict(image), expected, rtol=1e-5, atol=1e-4)
    # a mean given without a std: the given mean, the image's std
    predictor = Predictor(network, 2, 3, 8, per_channel=True)
    std = image.std(axis=(0, 1))
    np.testing.assert_allclose(predictor.predict(image, im_mean=np.array([1.0, 2.0, 3.0])),
                               np.tanh((image - [1, 2, 3]) / std) * std + [1, 2, 3],
                               rtol=1e-5, atol=1e-4)


def test_a_colour_model_records_and_uses_its_training_normalisation(tmp_path):
    from models import Noise2Same
    from utils.data.datasets import DATASETS
    args = type('Args', (), {'precision': 'float32', 'filters': 4})()
    kwargs = train_plan.model_kwargs(args, DATASETS['imagenet'])
    assert kwargs['normalisation'] == 'channel'
    model = Noise2Same(str(tmp_path), 'rgb', **kwargs)
    assert model.settings()['normalisation'] == 'channel' and model.predictor.per_channel
    assert not Noise2Same(str(tmp_path), 'grey', net_config={'first_output_filters': 4}
                          ).predictor.per_channel  # the original's, also for TF1 checkpoints
