"""bioimage.io packages (BioImage Model Zoo, format 0.5): a model as one zip that deepImageJ/Fiji,
ilastik, napari and bioimageio.core run without this repository.

The package holds `rdf.yaml` (written by bioimageio.spec), the weights as a
`tensorflow_saved_model_bundle` (a zip of this repository's SavedModel, whose `serve` function
takes a batch (b, [z,] y, x, c) and normalises, pads and crops inside the graph), a test input
made from a real image of the model's kind and the model's output on it, a cover (test image
before and after) and a README (training data, noise level, training command, measured PSNR,
citations). Sizes: y and x (and z) any multiple of 2**depth from 2**depth on
(`ParameterizedSize(min=m, step=m)`); the graph itself reflect-pads other sizes.
"""
import json
import os
import shutil
import tempfile
from typing import Dict, List, Optional

import numpy as np

from utils.core.files import atomic_write

NOISE2SAME = {'text': 'Xie, Y., Wang, Z. and Ji, S. Noise2Same: Optimizing A Self-Supervised '
                      'Bound for Image Denoising. NeurIPS 2020.',
              'doi': '10.48550/arXiv.2010.11971'}
NOISE2SAMEPRO = {'text': 'Noise2SamePro: Noise2Same with lambda estimated from the data '
                         '(2 sqrt of the reconstruction term), trained in two phases; README of '
                         'the Noise2Same repository.',
                 'url': 'https://github.com/divelab/Noise2Same'}
REPOSITORY = 'https://github.com/divelab/Noise2Same'
TEST_SIGMA = 25.0  # Gaussian noise of the test image, 0..255 scale


def check_describable(model) -> None:
    """Raise ValueError for a model a package here cannot describe (before any work)."""
    if (model.dim, model.in_channels) not in ((2, 1), (2, 3), (3, 1)):
        raise ValueError(f"a bioimage.io package is made for 2D grey, 2D RGB or 3D grey models; "
                         f"{model.model_dir} has dim {model.dim} and {model.in_channels} "
                         f"channels")


def test_image(dim: int, in_channels: int, seed: int = 0) -> np.ndarray:
    """A noisy test input of the model's kind, (spatial..., C) float32 on 0..255: scikit-image's
    bundled camera (grey 2D), astronaut (RGB 2D) or cell micrograph (3D: a stack of 16 crops,
    each shifted by 2 pixels), with Gaussian noise of TEST_SIGMA (numpy default_rng(seed))."""
    import skimage.data
    if dim == 2 and in_channels == 1:
        clean = skimage.data.camera()[64:320, 96:352, None]
    elif dim == 2 and in_channels == 3:
        clean = skimage.data.astronaut()[:256, 128:384]
    elif dim == 3 and in_channels == 1:
        cell = skimage.data.cell()
        clean = np.stack([cell[100 + 2 * z:196 + 2 * z, 200:296] for z in range(16)])[..., None]
    else:
        raise ValueError(f"no test image for dim {dim} with {in_channels} channels")
    rng = np.random.default_rng(seed)
    return (clean.astype(np.float64) + rng.normal(0, TEST_SIGMA, clean.shape)).astype(np.float32)


def cover(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """An 8-bit RGB picture, input left and output right ((H, 2W, 3); 3D: the middle slice),
    both scaled by the input's 1-99 percentiles."""
    if before.ndim == 4:  # (z, y, x, c)
        before, after = before[len(before) // 2], after[len(after) // 2]
    low, high = np.percentile(before, [1, 99])
    views = [np.clip((x - low) / max(high - low, 1e-12) * 255, 0, 255) for x in (before, after)]
    picture = np.concatenate(views, axis=1)
    if picture.shape[-1] == 1:
        picture = np.repeat(picture, 3, axis=-1)
    return np.round(picture).astype(np.uint8)


def training_command(settings: Dict) -> str:
    """A train.py (or train_pro.py) command that trains a model with these settings."""
    run = settings.get('training', {})
    script = 'train_pro.py' if settings.get('class') == 'Noise2SamePro' else 'train.py'
    parts = [f'python {script}']
    if run.get('dataset'):
        parts.append(f"--dataset {run['dataset']}")
    parts.append(f"--filters {settings['net_config']['first_output_filters']}")
    for flag, key in (('--batch-size', 'batch_size'), ('--seed', 'seed')):
        if key in run:
            parts.append(f'{flag} {run[key]}')
    if run.get('patch_size'):
        parts.append('--patch-size ' + ' '.join(map(str, run['patch_size'])))
    if settings.get('lmbd') is not None:
        parts.append(f"--lmbd {settings['lmbd']:.4g}")
    parts.append(f"--masking {settings['masking']} --mask-perc {settings['mask_perc']:g}")
    opt = settings.get('opt_config', {})
    parts.append(f"--lr {opt.get('base_learning_rate', 4e-4):g} --lr-schedule "
                 f"{opt.get('lr_schedule', 'staircase')}")
    steps = run.get('pro_total', run.get('steps'))
    if steps:
        parts.append(f'--steps {steps}')
    if run.get('pro_steps'):
        parts.append(f"--pro-steps {run['pro_steps']}")
    return ' '.join(parts)


def readme(name: str, settings: Dict, scores: Optional[str], dataset_text: str) -> str:
    """The package's documentation (markdown)."""
    kind = 'Noise2SamePro' if settings.get('class') == 'Noise2SamePro' else 'Noise2Same'
    dims = f"{settings['dim']}D, {settings['in_channels']} channel(s)"
    lines = [
        f'# {name}: {kind} denoiser ({dims})', '',
        f'{kind} is a self-supervised denoiser: it learned from noisy images alone. This package '
        'was written by `python export.py --bioimageio` of the TensorFlow 2 Noise2Same port.', '',
        '## Input and output', '',
        f"One image per batch entry, axes (batch, {'z, ' if settings['dim'] == 3 else ''}y, x, "
        'channel), float32 in any value range: the graph normalises each image by its own mean '
        f"and std ({'per channel' if settings.get('normalisation') == 'channel' else 'over all channels'}), "
        'reflect-pads the spatial axes to multiples of 2**depth '
        f"({2 ** settings['net_config']['depth']}), runs the network with its moving batch-norm "
        'statistics, crops back and de-normalises. The output has the input\'s shape and scale.', '',
        '## Training', '',
        f'- data: {dataset_text}',
        f"- lmbd: {settings.get('lmbd')} (2 x the noise std of the normalised training images; "
        'Noise2SamePro estimates it from the data)' if kind == 'Noise2Same' else
        f"- N2SP guard: {settings.get('guard')}, sigma floor {settings.get('sigma_floor')}",
        f'- an equivalent command: `{training_command(settings)}`',
        f"- settings: `{json.dumps({k: v for k, v in settings.items() if k != 'net_config'})}`", '',
        '## Validation', '',
        f'- {scores}' if scores else '- no test score was measured at export (its data set '
        'was not built where the export ran)',
        f'- test tensors: {test_image_text(settings)}', '',
        '## Cite', '', f"- {NOISE2SAME['text']} doi:{NOISE2SAME['doi']}",
    ]
    if kind == 'Noise2SamePro':
        lines.append(f"- {NOISE2SAMEPRO['text']} {NOISE2SAMEPRO['url']}")
    return '\n'.join(lines) + '\n'


def test_image_text(settings: Dict) -> str:
    what = {(2, 1): "scikit-image's camera, 256x256", (2, 3): "scikit-image's astronaut, 256x256",
            (3, 1): "16 shifted 96x96 crops of scikit-image's cell micrograph"}
    return (f"{what.get((settings['dim'], settings['in_channels']), 'a test image')} with "
            f"Gaussian noise sigma {TEST_SIGMA:g} (0..255); the output is the model's prediction")


def write_package(model, path: str, scores: Optional[str] = None, dataset_text: str = '',
                  authors: Optional[List[str]] = None, license_id: Optional[str] = None) -> str:
    """Write the bioimage.io package of `model` (a Noise2Same with restored weights) to the zip
    `path` (must not exist; written whole or not at all). Returns `path`."""
    import tensorflow as tf
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as bmz

    if os.path.exists(path):
        raise FileExistsError(f"{path} exists; remove it or choose another package path")
    if not path.endswith('.zip'):
        raise ValueError(f"a bioimage.io package is a .zip file, got {path}")
    check_describable(model)
    settings = model.settings()
    x = test_image(model.dim, model.in_channels)
    y = model.predict(x)
    multiple = 2 ** model.net.depth
    spatial = ['z', 'y', 'x'][-model.dim:]
    channels = ['grey'] if model.in_channels == 1 else ['red', 'green', 'blue']
    with tempfile.TemporaryDirectory() as tmp:
        bundle = model.export(os.path.join(tmp, 'saved_model'))
        weights = shutil.make_archive(os.path.join(tmp, 'tf_saved_model_bundle'), 'zip', bundle)
        np.save(os.path.join(tmp, 'test_input.npy'), x[None])
        np.save(os.path.join(tmp, 'test_output.npy'), y[None].astype(np.float32))
        import tifffile  # sample tensors: the same arrays as TIFF files, for viewers
        tifffile.imwrite(os.path.join(tmp, 'sample_input.tif'), x[None])
        tifffile.imwrite(os.path.join(tmp, 'sample_output.tif'), y[None].astype(np.float32))
        from PIL import Image
        Image.fromarray(cover(x, y)).save(os.path.join(tmp, 'cover.png'))
        with open(os.path.join(tmp, 'README.md'), 'w') as f:
            f.write(readme(model.name, settings, scores, dataset_text))

        def axes(output: bool):
            space = bmz.SpaceOutputAxis if output else bmz.SpaceInputAxis
            size = (lambda a: bmz.SizeReference(tensor_id=bmz.TensorId('input'),
                                                axis_id=bmz.AxisId(a))) if output else \
                (lambda a: bmz.ParameterizedSize(min=multiple, step=multiple))
            return [bmz.BatchAxis()] + [space(id=bmz.AxisId(a), size=size(a)) for a in spatial] + \
                [bmz.ChannelAxis(channel_names=[bmz.Identifier(c) for c in channels])]

        kind = type(model).__name__
        cite = [bmz.CiteEntry(**NOISE2SAME)] + (
            [bmz.CiteEntry(**NOISE2SAMEPRO)] if kind == 'Noise2SamePro' else [])
        description = bmz.ModelDescr(
            name=f'{kind} {model.name}'.replace('_', ' '),
            description=f'{kind} self-supervised denoiser ({model.dim}D, '
                        f"{'RGB' if model.in_channels == 3 else 'grey'}), TensorFlow 2 port",
            authors=[bmz.Author(name=a) for a in (authors or ['Noise2Same TF2 port'])],
            cite=cite, license=license_id,
            documentation=bmz.FileDescr(source=os.path.join(tmp, 'README.md')),
            covers=[bmz.FileDescr(source=os.path.join(tmp, 'cover.png'))], git_repo=REPOSITORY,
            tags=['denoising', 'self-supervised', 'noise2same', 'tensorflow',
                  f'{model.dim}d', 'rgb' if model.in_channels == 3 else 'grey'],
            inputs=[bmz.InputTensorDescr(
                id=bmz.TensorId('input'), axes=axes(False),
                test_tensor=bmz.FileDescr(source=os.path.join(tmp, 'test_input.npy')),
                sample_tensor=bmz.FileDescr(source=os.path.join(tmp, 'sample_input.tif')),
                description='noisy image(s), any value range')],
            outputs=[bmz.OutputTensorDescr(
                id=bmz.TensorId('denoised'), axes=axes(True),
                test_tensor=bmz.FileDescr(source=os.path.join(tmp, 'test_output.npy')),
                sample_tensor=bmz.FileDescr(source=os.path.join(tmp, 'sample_output.tif')),
                description='denoised image(s), the input\'s scale')],
            weights=bmz.WeightsDescr(tensorflow_saved_model_bundle=(
                bmz.TensorflowSavedModelBundleWeightsDescr(
                    source=weights, tensorflow_version=bmz.Version(tf.__version__)))))
        with atomic_write(path) as out:
            os.remove(out)  # the saver wants a new file
            save_bioimageio_package(description, output_path=out)
    return path
