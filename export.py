"""Export a trained model as a TensorFlow SavedModel (runs without this repository), as a
bioimage.io package (BioImage Model Zoo: deepImageJ/Fiji, ilastik, napari, bioimageio.core) or
as a weights-only model folder (to share or ship a model: a third of the size).

    python export.py --name N2S_PRO-8000-2 --output exported/n2sp
    # then, anywhere:  tf.saved_model.load('exported/n2sp').signatures['serving_default'](image=x)
    python export.py --name bsd68-N2S --bioimageio bsd68-N2S.zip
    # then:            bioimageio test bsd68-N2S.zip ; bioimageio predict ...
    python export.py --model-dir runs --name bsd68-w64 --checkpoint trained_models/bsd68-w64
    # then:            test.py / test_single.py --name bsd68-w64, or train.py --init-from it

A weights-only folder holds the newest checkpoint without its Adam slots, and settings.json:
prediction and --init-from give what the full folder gives; training in it continues with a
fresh optimizer (not the exact resume of the original folder).

A bioimage.io package needs the extra requirements-bioimageio.txt (pip install -r
requirements-bioimageio.txt); utils/model_io/bioimageio.py says what it holds. Its README gives the
model's test PSNR when the data set it was trained on is built under --data-dir.
"""
import os
from typing import List, Optional

from n2s_app import cli
from utils.core import environment
from utils.model_io import bioimageio


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('--model-dir', default=cli.MODEL_DIR, help='folder of the model directories')
    p.add_argument('--data-dir', default=cli.DATA_DIR, help='folder of the data sets (for the '
                                                            'test PSNR in a package\'s README)')
    p.add_argument('--name', default='N2S_PRO-8000-2', help='model directory name')
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument('--output', help='SavedModel folder to create (must not exist)')
    target.add_argument('--bioimageio', metavar='OUT.zip',
                        help='bioimage.io package to create (must not exist)')
    target.add_argument('--checkpoint', metavar='FOLDER',
                        help='weights-only model folder to create (must not exist)')
    p.add_argument('--license', default=None,
                   help='SPDX license id written into the package (default: none stated)')
    p.add_argument('--author', action='append', default=None,
                   help='author name for the package (repeatable)')
    args = p.parse_args(argv)
    out = args.output or args.bioimageio or args.checkpoint
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise OSError(f"cannot write {out}: folder {folder} does not exist")
    if os.path.exists(out):
        raise FileExistsError(f"{out} exists; remove it or choose another path")
    if args.bioimageio:
        environment.import_extra('bioimageio.spec', 'a bioimage.io package',
                                 'requirements-bioimageio.txt')
        if not args.bioimageio.endswith('.zip'):
            raise ValueError(f"a bioimage.io package is a .zip file, got {args.bioimageio}")
    cli.require_checkpoint(args.model_dir, args.name, f'python train.py --name {args.name}')
    cli.start_tensorflow(training=False)
    from models import Noise2Same
    model = Noise2Same(args.model_dir, args.name)
    if args.output:
        print(f'wrote {model.export(args.output)}')
        return
    if args.checkpoint:
        print(f'wrote {model.export_checkpoint(args.checkpoint)} (weights only, step '
              f'{int(model.global_step.numpy())})')
        return
    bioimageio.check_describable(model)
    scores, data = test_scores(model, args.data_dir)
    bioimageio.write_package(model, args.bioimageio, scores=scores, dataset_text=data,
                             authors=args.author, license_id=args.license)
    print(f'wrote {args.bioimageio} (check it with: bioimageio test {args.bioimageio})')


def test_scores(model, data_dir: str):
    """(the model's test PSNR on its training data set, or None; a description of that data)."""
    from utils.data.datasets import DATASETS
    name = model.training.get('dataset')
    if name not in DATASETS:
        return None, ('not recorded (e.g. an original TF1 checkpoint, or trained through the '
                      'Python API)')
    dataset = DATASETS[name]
    text = f'{name}: {dataset.description}'
    try:
        dataset.test_images(data_dir)
    except (OSError, ValueError):
        return None, text
    import numpy as np
    rows = list(dataset.evaluate(model, data_dir))
    return (f"{name} test set ({len(rows)} images): PSNR {np.mean([r['psnr'] for r in rows]):.2f}"
            f" dB, SSIM {np.mean([r['ssim'] for r in rows]):.4f} (test.py's protocol, at "
            f"export)"), text


if __name__ == '__main__':
    cli.run(main)
