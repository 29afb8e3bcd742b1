"""The published data sets' layouts and test protocols, on small synthetic files."""
import numpy as np
import pytest

from models import Noise2Same
from utils.data.datasets import DATASETS, get_dataset
from utils.core.errors import MissingDataError
from utils.core.noise import lmbd_for_noise
from utils.evaluation.metrics import get_scores, PSNR
from utils.core.normalisation import PercentileNormaliser


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """Untrained-but-saved tiny models: grey 2D, RGB 2D and grey 3D."""
    base = tmp_path_factory.mktemp('models')
    rng = np.random.default_rng(0)
    for name, dim, channels in (('grey', 2, 1), ('rgb', 2, 3), ('vol', 3, 1)):
        images = rng.normal(size=(2, *[16] * dim, channels)).astype(np.float32)
        Noise2Same(str(base), name, dim=dim, in_channels=channels,
                   net_config={'first_output_filters': 2}).train(
            images, [8] * dim, batch_size=2, steps=1, verbose=False, seed=0)
    return base


def test_auto_picks_bsd68_only_when_its_files_are_there(tmp_path):
    assert get_dataset('auto', str(tmp_path)).name == 'demo'
    for sub in ('BSD68/test',):
        (tmp_path / sub).mkdir(parents=True)
    np.save(tmp_path / 'BSD68/test/bsd68_gaussian25.npy', np.zeros(1))
    assert get_dataset('auto', str(tmp_path)).name == 'bsd68'
    with pytest.raises(ValueError, match='unknown dataset'):
        get_dataset('mnist', str(tmp_path))


def test_bsd68_without_subfolder_and_missing_files(tmp_path):
    bsd = DATASETS['bsd68']
    with pytest.raises(MissingDataError, match='python download.py --dataset bsd68'):
        bsd.training_data(str(tmp_path))
    rng = np.random.default_rng(1)
    for sub in ('train', 'val', 'test'):
        (tmp_path / sub).mkdir()
    np.save(tmp_path / 'train/DCNN400_train_gaussian25.npy', rng.uniform(0, 255, (3, 20, 20)))
    np.save(tmp_path / 'val/DCNN400_validation_gaussian25.npy', rng.uniform(0, 255, (2, 20, 20)))
    X, X_val = bsd.training_data(str(tmp_path))
    assert X.shape == (3, 20, 20, 1) and X_val.shape == (2, 20, 20, 1)
    np.testing.assert_allclose(X.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(X.std(axis=(1, 2, 3)), 1, atol=1e-4)



def test_lmbd_for_noise_is_twice_the_rms_normalised_noise_std(tmp_path):
    # stds 50 and 100 exactly: normalised sigmas 0.5 and 0.25, rms sqrt((0.25 + 0.0625) / 2)
    images = [np.tile([100.0, 0.0], 8), np.tile([300.0, 100.0], (3, 4))]
    assert lmbd_for_noise(images, 25) == pytest.approx(2 * np.sqrt(0.15625), rel=1e-12)
    with pytest.raises(ValueError, match="images' units"):
        lmbd_for_noise(images, 60)  # above one image's std: sigma given on another scale
    with pytest.raises(ValueError, match='positive'):
        lmbd_for_noise(images, 0)
    rng = np.random.default_rng(3)
    (tmp_path / 'train').mkdir()
    raw = rng.uniform(0, 255, (3, 20, 20))
    np.save(tmp_path / 'train/DCNN400_train_gaussian25.npy', raw)
    np.testing.assert_array_equal(DATASETS['bsd68'].raw_training_images(str(tmp_path)), raw)
    with pytest.raises(ValueError, match='pass --lmbd instead'):
        DATASETS['hanzi'].raw_training_images(str(tmp_path))

def test_imagenet_layout_and_protocol(tmp_path, models):
    rng = np.random.default_rng(2)
    (tmp_path / 'ImageNet/test').mkdir(parents=True)
    np.save(tmp_path / 'ImageNet/train.npy', rng.uniform(0, 255, (3, 2, 24, 24, 3)))
    clean = rng.uniform(0, 255, (24, 24, 3))
    np.save(tmp_path / 'ImageNet/test/a.npy', np.stack([clean, clean + rng.normal(0, 30, clean.shape)]))
    dataset = DATASETS['imagenet']
    X, X_val = dataset.training_data(str(tmp_path))
    assert X.shape == (3, 24, 24, 3) and X_val is None
    np.testing.assert_allclose(X.mean(axis=(1, 2)), 0, atol=1e-5)  # per channel
    (row,) = dataset.evaluate(Noise2Same(str(models), 'rgb'), str(tmp_path))
    image = dataset.test_images(str(tmp_path))[0]
    pred = Noise2Same(str(models), 'rgb').predict(image.noisy, im_mean=image.noisy.mean((0, 1)),
                                                   im_std=image.noisy.std((0, 1)))
    pred = (pred - pred.min()) / (pred.max() - pred.min()) * 255
    assert row['psnr'] == pytest.approx(PSNR(clean, pred), rel=1e-6)


def test_hanzi_layout_and_protocol(tmp_path, models):
    rng = np.random.default_rng(3)
    (tmp_path / 'Hanzi/tiles').mkdir(parents=True)
    for split, n in (('training', 4), ('validation', 2), ('testing', 3)):
        np.save(tmp_path / f'Hanzi/tiles/{split}.npy', rng.uniform(0, 1, (n, 4, 16, 16)))
    dataset = DATASETS['hanzi']
    X, X_val = dataset.training_data(str(tmp_path))
    assert X.shape == (4, 16, 16, 1) and X_val.shape == (2, 16, 16, 1)
    rows = list(dataset.evaluate(Noise2Same(str(models), 'grey'), str(tmp_path)))
    tiles = np.load(tmp_path / 'Hanzi/tiles/testing.npy')
    preds = Noise2Same(str(models), 'grey').batch_predict(tiles[:, 3])
    for row, tile, pred in zip(rows, tiles, preds):
        pred = (pred - pred.min()) / (pred.max() - pred.min()) * 255
        assert row['psnr'] == pytest.approx(PSNR(tile[0] * 255, pred), rel=1e-5)


def test_planaria_layout_and_protocol(tmp_path, models):
    import tifffile
    rng = np.random.default_rng(4)
    root = tmp_path / 'Denoising_Planaria'
    (root / 'train_data').mkdir(parents=True)
    np.savez(root / 'train_data/data_label.npz', X=rng.normal(size=(10, 1, 8, 16, 16)),
             Y=rng.normal(size=(10, 1, 8, 16, 16)))
    gt = rng.uniform(0, 1000, (8, 40, 36)).astype(np.float32)
    for folder in ('GT', 'condition_1', 'condition_2', 'condition_3'):
        (root / 'test_data' / folder).mkdir(parents=True)
        noisy = gt if folder == 'GT' else gt + rng.normal(0, 100, gt.shape).astype(np.float32)
        tifffile.imwrite(root / 'test_data' / folder / 'v.tif', noisy)
    dataset = DATASETS['planaria']
    X, X_val = dataset.training_data(str(tmp_path))
    assert X.shape == (9, 8, 16, 16, 1) and X_val.shape == (1, 8, 16, 16, 1)
    model = Noise2Same(str(models), 'vol')
    rows = list(dataset.evaluate(model, str(tmp_path)))
    assert [r['group'] for r in rows] == ['condition_1', 'condition_2', 'condition_3']
    image = dataset.test_images(str(tmp_path))[0]
    x = PercentileNormaliser(2, 99.8).before(image.noisy, 'ZYX')
    expected = get_scores(gt, model.crop_predict(x, 256, 32, im_mean=0, im_std=1))
    assert rows[0]['psnr'] == pytest.approx(expected[1], rel=1e-6)


def test_offline_download_fails_with_one_line_saying_where_to_put_files(tmp_path, monkeypatch,
                                                                         capsys):
    import gdown
    import download
    from n2s_app import cli

    def offline(*args, **kwargs):
        raise ConnectionError('no route to host')

    monkeypatch.setattr(gdown, 'download_folder', offline)
    monkeypatch.setattr('sys.argv', ['download.py', '--dataset', 'hanzi', '--data-dir',
                                     str(tmp_path / 'data')])
    with pytest.raises(SystemExit) as exit_info:
        cli.run(download.main)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'download failed' in err[0] and 'by hand' in err[0]
    assert not (tmp_path / 'data').exists()
