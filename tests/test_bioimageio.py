"""bioimage.io packages: bioimageio.core validates and runs them offline, and predicts as
Noise2Same.predict does; bad input leaves no partial package."""
import os
import shutil
import zipfile

import numpy as np
import pytest

import export
from conftest import REFERENCE_DIRS, ROOT, require_reference
from models import Noise2Same

if os.environ.get('N2S_REQUIRE_EXTRAS') != '1':  # CI sets it: there the test extra must be in
    pytest.importorskip('bioimageio.core', reason='pip install -r requirements-bioimageio.txt')


def package_of(model_dir, name, out):
    export.main(['--model-dir', str(model_dir), '--name', name, '--bioimageio', str(out),
                 '--data-dir', str(out.parent / 'no-data')])
    return out


def check_package(path, model_dir, name):
    """test_model passes offline, and bioimageio.core's prediction of a new image equals
    Noise2Same.predict within 1e-4 of the image's range. (bioimageio.core unzips the weights
    into the working directory: the tests run it in the package's folder.)"""
    from bioimageio.core import predict, test_model
    from bioimageio.spec.model.v0_5 import TensorId
    path, model_dir = os.path.abspath(path), os.path.abspath(model_dir)
    os.chdir(os.path.dirname(path))
    summary = test_model(str(path))
    assert summary.status == 'passed', summary.format()
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
    assert {'rdf.yaml', 'README.md', 'cover.png', 'test_input.npy', 'test_output.npy',
            'tf_saved_model_bundle.zip'} <= names
    model = Noise2Same(str(model_dir), name)
    rng = np.random.default_rng(7)
    shape = (16, 48, 56) if model.dim == 3 else (96, 136)
    image = (80 + 40 * rng.random(shape) + 20 * rng.normal(size=shape)).astype(np.float32)
    sample = predict(model=str(path), inputs={TensorId('input'): image[None, ..., None]})
    theirs = np.asarray(sample.members[TensorId('denoised')].data)[0, ..., 0]
    ours = model.predict(image)
    assert np.abs(theirs - ours).max() <= 1e-4 * np.ptp(image)


@pytest.fixture(autouse=True)
def _back_to_the_working_directory():
    cwd = os.getcwd()
    yield
    os.chdir(cwd)


def test_package_of_the_shipped_model(tmp_path):
    path = package_of(ROOT / 'trained_models', 'bsd68-N2S', tmp_path / 'bsd68.zip')
    check_package(path, ROOT / 'trained_models', 'bsd68-N2S')
    # the napari plugin's loader (n2s_app/model_source.py) predicts a whole image as the model
    from n2s_app.model_source import load_package
    loaded = load_package(str(path))
    assert (loaded.predictor.dim, loaded.predictor.in_channels, loaded.model) == (2, 1, None)
    image = (80 + 40 * np.random.default_rng(3).random((96, 136))).astype(np.float32)
    ours = Noise2Same(str(ROOT / 'trained_models'), 'bsd68-N2S').predict(image)
    np.testing.assert_allclose(loaded.predictor.predict(image), ours, atol=1e-3 * np.ptp(image))
    with pytest.raises(ValueError, match='no bioimage.io package'):
        load_package(str(tmp_path / 'no-package.zip'))
    readme = zipfile.ZipFile(path).read('README.md').decode()
    assert 'python train.py --dataset bsd68 --filters 32 --batch-size 16' in readme
    assert 'Noise2Same: Optimizing A Self-Supervised Bound' in readme


def test_package_of_an_original_tf1_checkpoint(tmp_path):
    require_reference()
    source = [d for d in REFERENCE_DIRS if d.name == 'n2s_2d_gray'][0]
    shutil.copytree(source / 'model', tmp_path / 'models' / 'tf1')  # never written into
    path = package_of(tmp_path / 'models', 'tf1', tmp_path / 'tf1.zip')
    check_package(path, tmp_path / 'models', 'tf1')
    assert 'original TF1 checkpoint' in zipfile.ZipFile(path).read('README.md').decode()


def test_bad_input_is_one_error_and_no_partial_package(tmp_path):
    (tmp_path / 'taken.zip').write_text('mine')
    with pytest.raises(FileExistsError, match='exists'):
        package_of(ROOT / 'trained_models', 'bsd68-N2S', tmp_path / 'taken.zip')
    assert (tmp_path / 'taken.zip').read_text() == 'mine'
    with pytest.raises(ValueError, match='no checkpoint'):
        package_of(tmp_path, 'nothing-here', tmp_path / 'a.zip')
    two = Noise2Same(str(tmp_path), 'two', in_channels=2, net_config={'first_output_filters': 4})
    two.train(np.zeros((2, 16, 16, 2), np.float32), [16, 16], batch_size=2, steps=1,
              verbose=False, seed=0)
    with pytest.raises(ValueError, match='2D grey, 2D RGB or 3D grey'):
        package_of(tmp_path, 'two', tmp_path / 'b.zip')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['taken.zip', 'two']
