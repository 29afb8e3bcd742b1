"""Where a GUI finds a model: the folders of a model directory (`trained_models/` by default),
any model folder (TF2 or the original TF1 checkpoints), or a bioimage.io package written by
`export.py --bioimageio` (its TensorFlow SavedModel).
"""
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from typing import List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED_MODELS = os.path.join(ROOT, 'trained_models')  # the clone's models, whatever the cwd


def find_models(model_dir: str = SHIPPED_MODELS) -> List[str]:
    """Names of the folders of `model_dir` that hold a checkpoint (TF2 or TF1), sorted."""
    if not os.path.isdir(model_dir):
        return []
    def trained(folder: str) -> bool:
        return os.path.isdir(folder) and any(
            f == 'checkpoint' or f.endswith('.index') for f in os.listdir(folder))
    return [name for name in sorted(os.listdir(model_dir))
            if trained(os.path.join(model_dir, name))]


def default_model_for(noise: Optional[float], model_dir: str) -> str:
    """The model test_single.py uses without --name for an image of relative noise `noise`
    (`utils.core.noise.measured_noise`; None: not measurable): cli.NOISY_MODEL above
    cli.NOISY_ABOVE when `model_dir` has it trained, else cli.DEFAULT_MODEL."""
    from n2s_app.cli import DEFAULT_MODEL, NOISY_ABOVE, NOISY_MODEL
    noisy = noise is not None and noise > NOISY_ABOVE
    return NOISY_MODEL if noisy and NOISY_MODEL in find_models(model_dir) else DEFAULT_MODEL


@dataclass
class LoadedModel:
    """A model ready to denoise: `predictor` (utils.prediction.predictor.Predictor), `model`
    (the Noise2Same it came from; None for a bioimage.io package, which cannot be adapted),
    and a label for layer names and messages."""
    predictor: object
    model: Optional[object]
    label: str


def load(path: str, precision: Optional[str] = None) -> LoadedModel:
    """The model of a model folder or a bioimage.io package (.zip); ValueError naming what is
    wrong otherwise."""
    from n2s_app import cli
    path = os.path.abspath(os.path.expanduser(path))
    if path.endswith('.zip'):
        return load_package(path)
    if not os.path.isdir(path):
        raise ValueError(f"no model folder or bioimage.io package at {path}")
    cli.start_tensorflow(training=False)
    from models import load_model
    from utils.model_io.checkpoints import latest_checkpoint
    if latest_checkpoint(path) is None:
        raise ValueError(f"{path} holds no checkpoint; choose a trained model's folder")
    kwargs = {'precision': precision} if precision else {}
    model = load_model(os.path.dirname(path), os.path.basename(path), **kwargs)
    return LoadedModel(model.restored_predictor(), model, os.path.basename(path))


def load_package(path: str) -> LoadedModel:
    """A bioimage.io package of this project (`export.py --bioimageio`): its SavedModel's
    'serve' signature, which normalises each image it gets by its own mean and std and pads
    it, wrapped as a Predictor. Tiles of a large image are each normalised by themselves, so
    give such packages a large tile size (or use the model folder)."""
    import numpy as np
    import yaml
    from n2s_app import cli
    from utils.prediction.predictor import Predictor
    if not os.path.isfile(path):
        raise ValueError(f"no bioimage.io package at {path}")
    tmp = tempfile.mkdtemp(prefix='.n2s-package-')
    try:
        with zipfile.ZipFile(path) as package:
            rdf = yaml.safe_load(package.read('rdf.yaml'))
            bundle = rdf['weights']['tensorflow_saved_model_bundle']['source']
            package.extract(bundle, tmp)
        axes = rdf['inputs'][0]['axes']
        dim = sum(1 for a in axes if a.get('type') == 'space')
        channels = next((len(a['channel_names']) for a in axes if a.get('type') == 'channel'),
                        1)
        multiple = next((a['size']['step'] for a in axes if a.get('type') == 'space'
                         and isinstance(a.get('size'), dict) and 'step' in a['size']), 1)
        cli.start_tensorflow(training=False)
        import tensorflow as tf
        folder = os.path.join(tmp, 'saved_model')
        with zipfile.ZipFile(os.path.join(tmp, bundle)) as weights:
            weights.extractall(folder)
        serving = tf.saved_model.load(folder)  # the variables are read into memory
    except (KeyError, IndexError, TypeError, AttributeError, zipfile.BadZipFile,
            yaml.YAMLError) as error:
        raise ValueError(f"{path} is no bioimage.io package with TensorFlow weights of this "
                         f"project ({type(error).__name__}: {error})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    serve = lambda batch: serving.serve(tf.constant(batch, tf.float32))['denoised'].numpy()
    predictor = Predictor(lambda batch: np.asarray(serve(batch)), dim, channels, multiple)
    predictor.source = serving  # kept alive with the predictor
    return LoadedModel(predictor, None, rdf.get('name', os.path.basename(path)))
