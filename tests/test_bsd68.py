"""BSD68 built from its public PNGs (../shared/data/bsd68): the build, its errors, loading, and
the test protocol on a few real images."""
import hashlib
import re
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from utils.data import bsd68_build
from n2s_app import cli
from utils.data.datasets import DATASETS
from utils.evaluation.metrics import PSNR

PNGS = Path(os.environ.get('N2S_BSD68_PNGS', ROOT.parent / 'shared' / 'data' / 'bsd68'))


def require_pngs():
    if not (PNGS / 'train400').is_dir():
        message = f"BSD68 PNGs not found under {PNGS}"
        if os.environ.get('N2S_REQUIRE_REFERENCE') == '1':
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    """The data set built once from the real PNGs: (data dir, BSD68 folder)."""
    require_pngs()
    data_dir = tmp_path_factory.mktemp('data')
    assert bsd68_build.build_bsd68(str(PNGS), str(data_dir / 'BSD68'))
    return data_dir, data_dir / 'BSD68'


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path), np.float64)


def test_layout_and_noise_against_an_independent_draw(built):
    _, folder = built
    train = np.load(folder / 'train/DCNN400_train_gaussian25.npy')
    val = np.load(folder / 'val/DCNN400_validation_gaussian25.npy')
    noisy = np.load(folder / 'test/bsd68_gaussian25.npy', allow_pickle=True)
    clean = np.load(folder / 'test/bsd68_groundtruth.npy', allow_pickle=True)
    assert train.shape == (396, 180, 180) and val.shape == (4, 180, 180)
    assert train.dtype == val.dtype == np.float32
    assert noisy.dtype == object and len(noisy) == len(clean) == 68
    assert {x.shape for x in noisy} == {(321, 481), (481, 321)}
    # documented draw: image i of split s gets 25 * default_rng([68, s, i]).standard_normal
    for split, index, array, source in (
            (0, 0, train[0], 'train400/test_001.png'), (0, 396, val[0], 'train400/test_397.png'),
            (1, 67, noisy[67], 'test68/test068.png')):
        expected = png(PNGS / source) + 25 * np.random.default_rng([68, split, index]).standard_normal(
            array.shape)
        np.testing.assert_array_equal(array, expected.astype(np.float32))
    np.testing.assert_array_equal(clean[5], png(PNGS / 'test68/test006.png').astype(np.float32))
    residual = np.concatenate([(n - c).ravel() for n, c in zip(noisy, clean)])
    assert abs(residual.std() - 25) < 0.1 and abs(residual.mean()) < 0.1  # unclipped


def test_the_build_is_identical_on_every_machine(built):
    """Digests of the arrays as built on the development machine: numpy's PCG64 and its normal
    sampler give the same draw everywhere, so any change here changes the benchmark."""
    _, folder = built
    digest = lambda path: hashlib.sha256(np.ascontiguousarray(
        np.concatenate([np.ravel(x) for x in np.load(path, allow_pickle=True)])).tobytes()).hexdigest()[:16]
    assert digest(folder / 'train/DCNN400_train_gaussian25.npy') == TRAIN_DIGEST
    assert digest(folder / 'test/bsd68_gaussian25.npy') == TEST_DIGEST


TRAIN_DIGEST = '4b2780ae3f2d25db'
TEST_DIGEST = 'd5328f642539f83f'


def test_loading_through_the_dataset_table(built):
    data_dir, _ = built
    bsd = DATASETS['bsd68']
    images, validation = bsd.training_data(str(data_dir))
    assert images.shape == (396, 180, 180, 1) and validation.shape == (4, 180, 180, 1)
    np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    tests = bsd.test_images(str(data_dir))
    assert len(tests) == 68 and tests[0].noisy.dtype == np.float32


def test_the_test_protocol_on_three_images(built):
    """test.py's protocol: the image normalised by its own mean and std, predicted whole, PSNR on
    0..255 against the clean PNG (recomputed here with numpy)."""
    data_dir, _ = built
    from models import Noise2Same
    model = Noise2Same(str(ROOT / 'trained_models'), 'demo32-N2S')
    bsd = DATASETS['bsd68']
    for image in bsd.test_images(str(data_dir))[:3]:
        scores = bsd.score(model, image)
        pred = model.predict(image.noisy)
        mse = np.mean((image.clean.astype(np.float64) - pred) ** 2)
        assert scores['psnr'] == pytest.approx(10 * np.log10(255 ** 2 / mse), abs=1e-6)
        assert scores['psnr'] > PSNR(image.clean, image.noisy) + 2  # it denoises


def copy_pngs(tmp_path) -> Path:
    require_pngs()
    source = tmp_path / 'pngs'
    shutil.copytree(PNGS, source)
    return source


@pytest.mark.parametrize('damage, message', [
    (lambda d: os.remove(d / 'train400/test_123.png'), 'missing .*test_123.png'),
    (lambda d: shutil.copy(d / 'test68/test001.png', d / 'test68/test069.png'),
     'unexpected PNG .*test069.png'),
    (lambda d: Image.new('L', (180, 170)).save(d / 'train400/test_002.png'),
     r'test_002.png is 180x170, expected 180x180'),
    (lambda d: Image.new('RGB', (481, 321)).save(d / 'test68/test010.png'), 'test010.png is not 8-bit grey'),
])
def test_bad_png_folders_fail_in_one_line_naming_the_file(tmp_path, capsys, damage, message):
    import download
    source = copy_pngs(tmp_path)
    damage(source)
    with pytest.raises(SystemExit) as exit_info:
        cli.run(lambda argv: download.main(['--dataset', 'bsd68', '--from', str(source),
                                            '--data-dir', str(tmp_path / 'data')]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err
    assert not (tmp_path / 'data' / 'BSD68').exists()  # nothing half-written


def test_a_complete_data_set_is_never_overwritten(tmp_path, capsys):
    import download
    require_pngs()
    folder = tmp_path / 'data' / 'BSD68'
    download.main(['--dataset', 'bsd68', '--from', str(PNGS), '--data-dir', str(tmp_path / 'data')])
    stamp = (folder / 'train/DCNN400_train_gaussian25.npy').stat().st_mtime_ns
    download.main(['--dataset', 'bsd68', '--from', str(PNGS), '--data-dir', str(tmp_path / 'data')])
    assert 'already in' in capsys.readouterr().out
    assert (folder / 'train/DCNN400_train_gaussian25.npy').stat().st_mtime_ns == stamp
    assert not bsd68_build.build_bsd68(str(PNGS), str(folder))
    partial = tmp_path / 'partial' / 'BSD68'
    (partial / 'train').mkdir(parents=True)
    with pytest.raises(FileExistsError, match='no complete BSD68'):
        bsd68_build.build_bsd68(str(PNGS), str(partial))


def test_a_dncnn_checkout_layout_is_found(tmp_path):
    train = tmp_path / 'TrainingCodes/DnCNN_TrainingCodes_v1.0/data/Train400'
    test = tmp_path / 'testsets/BSD68'
    train.mkdir(parents=True)
    test.mkdir(parents=True)
    assert bsd68_build.find_png_folders(str(tmp_path)) == (str(train), str(test))
    with pytest.raises(FileNotFoundError, match='no BSD68 PNG folders'):
        bsd68_build.find_png_folders(str(tmp_path / 'testsets'))


def test_the_blind_variant_gives_each_training_image_its_documented_sigma(tmp_path):
    """bsd68-blind: training image i gets sigma_i = 55 * default_rng([68, 2, i]).random() times
    the same standard normal draw as BSD68; the test images are BSD68's (sigma 25)."""
    require_pngs()
    from utils.data.datasets import BLIND_SIGMA
    folder = tmp_path / 'BSD68-blind'
    assert bsd68_build.build_bsd68(str(PNGS), str(folder), BLIND_SIGMA)
    train = np.load(folder / 'train/DCNN400_train_gaussian25.npy')
    val = np.load(folder / 'val/DCNN400_validation_gaussian25.npy')
    sigmas = []
    for index, array, source in ((0, train[0], 'test_001.png'), (7, train[7], 'test_008.png'),
                                 (399, val[3], 'test_400.png')):
        sigma = BLIND_SIGMA[0] + (BLIND_SIGMA[1] - BLIND_SIGMA[0]) * np.random.default_rng(
            [68, 2, index]).random()
        expected = png(PNGS / 'train400' / source) + sigma * np.random.default_rng(
            [68, 0, index]).standard_normal(array.shape)
        np.testing.assert_array_equal(array, expected.astype(np.float32))
        sigmas.append(sigma)
    assert len({round(s, 3) for s in sigmas}) == 3
    drawn = [bsd68_build.training_sigma(i, BLIND_SIGMA) for i in range(400)]
    assert 0 <= min(drawn) < 3 and 52 < max(drawn) <= 55  # spread over the range
    noisy = np.load(folder / 'test/bsd68_gaussian25.npy', allow_pickle=True)
    clean = np.load(folder / 'test/bsd68_groundtruth.npy', allow_pickle=True)
    residual = np.concatenate([(n - c).ravel() for n, c in zip(noisy, clean)])
    assert abs(residual.std() - 25) < 0.1
    assert DATASETS['bsd68-blind'].training_data(str(tmp_path))[0].shape == (396, 180, 180, 1)


def test_another_noise_level_is_built_beside_sigma_25_and_never_mixed_with_it(
        tmp_path, capsys, monkeypatch):
    """download.py --sigma 10: training and test images carry the same fixed draws scaled to
    sigma 10, in DATA_DIR/sigma10 by default; a folder of another noise is refused."""
    import download
    require_pngs()
    monkeypatch.setattr(cli, 'DATA_DIR', str(tmp_path / 'data') + '/')
    download.main(['--dataset', 'bsd68', '--from', str(PNGS), '--sigma', '10'])
    folder = tmp_path / 'data' / 'sigma10' / 'BSD68'
    assert bsd68_build.built_noise(str(folder)) == {'sigma': 10.0, 'seed': 68}
    assert 'train and test with --data-dir' in capsys.readouterr().out
    train = np.load(folder / 'train/DCNN400_train_gaussian25.npy')
    expected = png(PNGS / 'train400' / 'test_002.png') + 10 * np.random.default_rng(
        [68, 0, 1]).standard_normal((180, 180))
    np.testing.assert_array_equal(train[1], expected.astype(np.float32))
    noisy = np.load(folder / 'test/bsd68_gaussian25.npy', allow_pickle=True)
    clean = np.load(folder / 'test/bsd68_groundtruth.npy', allow_pickle=True)
    expected = clean[5] + 10 * np.random.default_rng([68, 1, 5]).standard_normal(clean[5].shape)
    np.testing.assert_allclose(noisy[5], expected, atol=1e-4)
    data_dir = str(tmp_path / 'data' / 'sigma10')
    with pytest.raises(SystemExit) as exit_info:  # sigma 25 asked of the sigma-10 folder
        cli.run(lambda argv: download.main(['--dataset', 'bsd68', '--from', str(PNGS),
                                            '--data-dir', data_dir]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'noise sigma 10.0' in err[0] and '--data-dir' in err[0], err
    download.main(['--dataset', 'bsd68', '--from', str(PNGS), '--sigma', '10'])
    assert 'already in' in capsys.readouterr().out
    with pytest.raises(SystemExit):  # --sigma is for bsd68 built from PNGs only
        download.main(['--dataset', 'bsd68-blind', '--from', str(PNGS), '--sigma', '10'])


def test_the_mixed_variant_gives_half_its_images_poisson_gaussian_noise(tmp_path):
    """bsd68-mixed: image i is Poisson-Gaussian when default_rng([68, 4, i]).random() < 0.5,
    peak log-uniform in 1..100 and read noise uniform in 0..3 photons from default_rng([68,
    3, i]), then Poisson and normal draws from the same generator; else bsd68-blind's image."""
    require_pngs()
    from utils.data.datasets import BLIND_SIGMA, MIXED_NOISE
    folder = tmp_path / 'BSD68-mixed'
    assert bsd68_build.build_bsd68(str(PNGS), str(folder), MIXED_NOISE)
    train = np.load(folder / 'train/DCNN400_train_gaussian25.npy')
    kinds = []
    for index in range(12):
        clean = png(PNGS / 'train400' / f'test_{index + 1:03d}.png')
        if np.random.default_rng([68, 4, index]).random() < 0.5:
            rng = np.random.default_rng([68, 3, index])
            peak = float(np.exp(np.log(100.0) * rng.random()))
            read = 3.0 * rng.random()
            counts = rng.poisson(clean / 255.0 * peak) + rng.normal(0, read, clean.shape)
            expected = counts / peak * 255.0
            kinds.append('poisson')
        else:
            sigma = BLIND_SIGMA[1] * np.random.default_rng([68, 2, index]).random()
            expected = clean + sigma * np.random.default_rng([68, 0, index]).standard_normal(
                clean.shape)
            kinds.append('gaussian')
        np.testing.assert_allclose(train[index], expected.astype(np.float32), rtol=1e-6)
    assert 3 <= kinds.count('poisson') <= 9
    assert bsd68_build.built_noise(str(folder))['mixed']['peak'] == [1.0, 100.0]
    assert DATASETS['bsd68-mixed'].training_data(str(tmp_path))[0].shape == (396, 180, 180, 1)
