"""Training on a user's own image files (`--images`) and denoising many files with
test_single.py: reading, normalisation (numpy recomputation), the validation split, every
bad-input error, resume with the saved files, 3D stacks, the multi-file exit status."""
import json
import os

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from conftest import ROOT
from test_scripts import error_lines, run
from utils.data.user_images import from_files, ImageFileError, read_training_file, training_defaults
from utils.core.image_io import find_images

TINY = ['--filters', 2, '--batch-size', 2, '--patch-size', 16, '--save-steps', 1]


def noisy(rng, shape, scale=1.0):
    """A smooth ramp plus Gaussian noise (std 20 x scale) on 0..255 x scale."""
    ramp = np.linspace(40, 200, shape[1])[None, :] * np.ones(shape[:2])
    if len(shape) == 3:
        ramp = ramp[..., None] * np.ones(shape)
    return np.clip(ramp + rng.normal(0, 20, shape), 0, 255) * scale


@pytest.fixture
def folder(tmp_path):
    """Mixed sizes and types: 8-bit PNG, 16-bit PNG, float TIFF, JPEG, a 3-frame TIFF stack."""
    rng = np.random.default_rng(5)
    root = tmp_path / 'photos'
    root.mkdir()
    cv2.imwrite(str(root / 'a.png'), noisy(rng, (40, 52)).astype(np.uint8))
    cv2.imwrite(str(root / 'b.png'), (noisy(rng, (36, 44)) * 257).astype(np.uint16))
    tifffile.imwrite(root / 'c.tif', noisy(rng, (33, 47), 1 / 255).astype(np.float32))
    Image.fromarray(noisy(rng, (48, 40)).astype(np.uint8)).save(root / 'd.jpg', quality=95)
    tifffile.imwrite(root / 'e.tif', noisy(rng, (3, 32, 36)).astype(np.uint16),
                     photometric='minisblack')
    (root / 'notes.txt').write_text('not an image')
    return root


def files_dataset(paths, **kwargs):
    return from_files([str(p) for p in paths], training=training_defaults(2), **kwargs)


def test_find_images_takes_files_folders_and_globs_once_each(folder):
    found = find_images([str(folder / 'c.tif'), str(folder), str(folder / '*.png')])
    names = [os.path.basename(f) for f in found]
    assert names == ['c.tif', 'a.png', 'b.png', 'd.jpg', 'e.tif']  # notes.txt is no image
    with pytest.raises(ValueError, match='matches no PNG'):
        find_images([str(folder / '*.bmp')])
    (folder / 'empty').mkdir()
    with pytest.raises(ValueError, match='no PNG, JPEG or TIFF files or Zarr folders in the folder'):
        find_images([str(folder / 'empty')])


def test_images_are_read_at_their_depth_and_each_normalised(folder):
    train, val = files_dataset([folder], val_fraction=0).training_data(patch_size=[16, 16])
    assert val is None
    raw = [cv2.imread(str(folder / 'a.png'), cv2.IMREAD_UNCHANGED),
           cv2.imread(str(folder / 'b.png'), cv2.IMREAD_UNCHANGED),
           tifffile.imread(folder / 'c.tif'), np.array(Image.open(folder / 'd.jpg')),
           *tifffile.imread(folder / 'e.tif')]
    assert raw[1].dtype == np.uint16 and raw[1].max() > 255
    assert len(train) == len(raw) == 7
    for got, pixels in zip(train, raw):
        x = pixels.astype(np.float64)
        np.testing.assert_allclose(got[..., 0], (x - x.mean()) / x.std(), atol=1e-5)


def test_rgb_images_are_normalised_per_channel(tmp_path):
    rng = np.random.default_rng(1)
    pixels = noisy(rng, (30, 34, 3)).astype(np.uint8)
    pixels[..., 2] //= 4
    cv2.imwrite(str(tmp_path / 'rgb.png'), pixels[..., ::-1])  # OpenCV writes BGR
    dataset = files_dataset([tmp_path / 'rgb.png'], val_fraction=0)
    assert dataset.in_channels == 3 and dataset.normalisation == 'channel'
    got = dataset.training_data()[0][0]
    x = pixels.astype(np.float64)
    np.testing.assert_allclose(got, (x - x.mean((0, 1))) / x.std((0, 1)), atol=1e-5)


def test_planar_rgb_tiff_is_one_colour_image(tmp_path):
    rng = np.random.default_rng(7)
    planes = noisy(rng, (3, 30, 34)).astype(np.uint8)
    tifffile.imwrite(tmp_path / 'rgb.tif', planes, photometric='rgb', planarconfig='separate')
    (image,), dtype = read_training_file(str(tmp_path / 'rgb.tif'))
    np.testing.assert_array_equal(image, np.moveaxis(planes, 0, -1).astype(np.float32))


def test_validation_split_is_seeded_and_cropped_to_a_common_shape(tmp_path):
    rng = np.random.default_rng(2)
    for i in range(10):
        cv2.imwrite(str(tmp_path / f'{i}.png'), noisy(rng, (30 + i, 40 - i)).astype(np.uint8))
    split = lambda seed: files_dataset([tmp_path], val_fraction=0.3, seed=seed).files()
    assert split(1) == split(1)
    assert len(split(1)['val']) == 3 and len(split(1)['train']) == 7
    assert any(split(s)['val'] != split(1)['val'] for s in range(2, 6))
    train, val = files_dataset([tmp_path], val_fraction=0.3, seed=1).training_data()
    sizes = [tuple(cv2.imread(f).shape[:2]) for f in split(1)['val']]
    assert val.shape == (3, min(s[0] for s in sizes), min(s[1] for s in sizes), 1)
    given = files_dataset([tmp_path / '0.png', tmp_path / '1.png'],
                          val_paths=[str(tmp_path / '1.png')])
    assert [os.path.basename(f) for f in given.files()['val']] == ['1.png']
    assert [os.path.basename(f) for f in given.files()['train']] == ['0.png']


def bad_case(tmp_path, case):
    rng = np.random.default_rng(3)
    good = tmp_path / 'good.png'
    cv2.imwrite(str(good), noisy(rng, (32, 32)).astype(np.uint8))
    bad = tmp_path / ('bad.tif' if case in ('nan', 'stack3d') else 'bad.png')
    if case == 'unreadable':
        bad.write_bytes(b'\x89PNG but not really')
    elif case == 'small':
        cv2.imwrite(str(bad), noisy(rng, (12, 40)).astype(np.uint8))
    elif case == 'channels':
        cv2.imwrite(str(bad), noisy(rng, (32, 32, 3)).astype(np.uint8))
    elif case == 'nan':
        pixels = noisy(rng, (32, 32)).astype(np.float32)
        pixels[3, 4] = np.nan
        tifffile.imwrite(bad, pixels)
    return [good, bad]


@pytest.mark.parametrize('case, words', [
    ('unreadable', 'cannot read'), ('small', 'smaller than the patch'),
    ('channels', 'channel(s), the other training images 1'), ('nan', 'NaN or Inf')])
def test_bad_files_are_named_in_one_line_errors(tmp_path, case, words):
    with pytest.raises(ImageFileError) as error:
        files_dataset(bad_case(tmp_path, case), val_fraction=0).training_data(patch_size=[16, 16])
    assert words in str(error.value) and 'bad.' in str(error.value)
    assert '\n' not in str(error.value)


def test_data_larger_than_free_memory_is_refused(tmp_path, monkeypatch):
    import utils.data.user_images as user_images
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((64, 64), np.uint8))
    monkeypatch.setattr(user_images, 'available_memory', lambda: 1000)
    with pytest.raises(ImageFileError, match='GB in memory.*train on fewer or smaller'):
        files_dataset([tmp_path]).training_data()


def test_estimated_lmbd_matches_the_known_noise_level_in_any_units():
    from utils.core.noise import lmbd_estimated, lmbd_for_noise
    rng = np.random.default_rng(4)
    images = [noisy(rng, (120, 140)) for _ in range(4)] + \
        [noisy(rng, (100, 90)) * 257 for _ in range(2)]  # 16-bit units: noise std 20 x 257
    known = lmbd_for_noise(images[:4], 20)
    assert abs(lmbd_estimated(images[:4]) - known) / known < 0.1
    sigmas = np.array([20] * 4 + [20 * 257] * 2) / np.array([np.std(x) for x in images])
    mixed = 2 * np.sqrt(np.mean(sigmas ** 2))
    assert abs(lmbd_estimated(images) - mixed) / mixed < 0.1


@pytest.mark.slow
def test_train_on_a_folder_records_the_files_and_resumes_with_them(folder, tmp_path):
    models = tmp_path / 'models'
    result = run(ROOT / 'train.py', '--images', folder, '--model-dir', models, '--name', 'mine',
                 '--steps', 2, '--val-fraction', 0.2, *TINY)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'training on 6 image(s) from 4 file(s)' in result.stdout  # 1 of 5 files held out
    assert 'uint16' in result.stdout and 'uint8' in result.stdout
    settings = json.loads((models / 'mine' / 'settings.json').read_text())
    record = settings['training']
    assert record['dataset'] == 'files' and record['images']['paths'] == [str(folder)]
    assert record['images']['files'] == 4 and record['images']['val_files'] == 1
    assert len(record['images']['digest']) == 64

    result = run(ROOT / 'train.py', '--model-dir', models, '--name', 'mine', '--steps', 3,
                 '--save-steps', 1)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'those' in result.stdout and os.path.exists(models / 'mine' / 'ckpt-3.index')

    before = (models / 'mine' / 'settings.json').read_bytes()
    cv2.imwrite(str(folder / 'a.png'), np.full((40, 52), 7, np.uint8))  # the data changed
    result = run(ROOT / 'train.py', '--model-dir', models, '--name', 'mine', '--steps', 4)
    assert result.returncode == 2
    assert 'differ from those the saved model was trained on' in error_lines(result)[0]
    assert (models / 'mine' / 'settings.json').read_bytes() == before
    assert not os.path.exists(models / 'mine' / 'ckpt-4.index')


def test_bad_file_stops_train_py_before_anything_is_written(tmp_path):
    paths = bad_case(tmp_path, 'unreadable')
    result = run(ROOT / 'train.py', '--images', *paths, '--model-dir', tmp_path / 'models',
                 '--steps', 1, *TINY)
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and 'bad.png' in lines[0] and 'Traceback' not in result.stderr
    assert not os.path.exists(tmp_path / 'models')
    result = run(ROOT / 'train.py', '--images', tmp_path, '--dataset', 'demo', '--steps', 1)
    assert result.returncode == 2 and 'exclude each other' in error_lines(result)[0]


@pytest.mark.slow
def test_a_tiff_stack_trains_a_3d_model_with_train_pro(tmp_path):
    rng = np.random.default_rng(6)
    tifffile.imwrite(tmp_path / 'stack.tif', noisy(rng, (8, 24, 28)).astype(np.uint16))
    models = tmp_path / 'models'
    result = run(ROOT / 'train_pro.py', '--images', tmp_path / 'stack.tif', '--dim', 3,
                 '--model-dir', models, '--name', 'vol', '--steps', 2, '--pro-steps', 1,
                 '--filters', 2, '--batch-size', 1, '--patch-size', 4, 16, 16, '--val-fraction', 0)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'training on 1 image(s) from 1 file(s): 8 x 24 x 28 pixels' in result.stdout
    settings = json.loads((models / 'vol' / 'settings.json').read_text())
    assert settings['dim'] == 3 and settings['class'] == 'Noise2SamePro'
    assert settings['training']['pro_steps'] == 1 and os.path.exists(models / 'vol' / 'ckpt-2.index')


def test_test_single_denoises_many_files_and_reports_the_failed_ones(folder, tmp_path):
    (folder / 'z.png').write_bytes(b'broken')
    inputs = sorted(folder.iterdir())
    before = {p: p.read_bytes() for p in inputs}
    out = tmp_path / 'out'
    result = run(ROOT / 'test_single.py', folder / 'a.png', folder / 'd.jpg', folder / 'z.png',
                 folder / 'b.png', '--output-dir', out)
    assert result.returncode == 1
    assert 'denoised 3 of 4 files' in result.stdout
    assert f"failed (1): {folder / 'z.png'}" in result.stderr
    assert sorted(os.listdir(out)) == ['a_denoised.png', 'b_denoised.png', 'd_denoised.jpg']
    assert cv2.imread(str(out / 'b_denoised.png'), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert {p: p.read_bytes() for p in inputs} == before  # inputs untouched

    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'a.png').write_bytes((folder / 'a.png').read_bytes())
    result = run(ROOT / 'test_single.py', folder / 'a.png', tmp_path / 'other' / 'a.png',
                 '--output-dir', tmp_path / 'out2')
    assert result.returncode == 2 and 'would both write' in error_lines(result)[0]
    assert not os.path.exists(tmp_path / 'out2')


def test_test_single_notes_unfit_images_once_and_sums_them_up(tmp_path):
    # noise std 1 on a 40..200 ramp: ~0.02 x the image's std, far below the default model's
    # training range (utils/evaluation/fit.py), so each of the three images is outside it
    rng = np.random.default_rng(6)
    quiet = tmp_path / 'quiet'
    quiet.mkdir()
    for name in ('p.png', 'q.png', 'r.png'):
        ramp = np.linspace(40, 200, 48)[None, :] * np.ones((40, 1))
        cv2.imwrite(str(quiet / name), np.rint(ramp + rng.normal(0, 1, ramp.shape)).astype(np.uint8))
    result = run(ROOT / 'test_single.py', quiet, '--output-dir', tmp_path / 'out')
    assert result.returncode == 0, result.stderr[-2000:]
    notes = [line for line in result.stdout.splitlines() if line.startswith('note:')]
    assert len(notes) == 2, result.stdout  # the first image in full, then the summary
    assert notes[0].startswith(f"note: {quiet / 'p.png'}: estimated noise") and 'below' in notes[0]
    assert notes[1].startswith('note: 3 of 3 images lie outside the noise range')
    assert notes[1].endswith(f"{quiet / 'p.png'}, {quiet / 'q.png'}, {quiet / 'r.png'}")
