"""Export a trained model as a TensorFlow SavedModel (runs without this repository).

    python export.py --name N2S_PRO-8000-2 --output exported/n2sp
    # then, anywhere:  tf.saved_model.load('exported/n2sp').signatures['serving_default'](image=x)
"""
import os
from typing import List, Optional

from utils import cli


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('--model-dir', default=cli.MODEL_DIR, help='folder of the model directories')
    p.add_argument('--name', default='N2S_PRO-8000-2', help='model directory name')
    p.add_argument('--output', required=True, help='SavedModel folder to create (must not exist)')
    args = p.parse_args(argv)
    cli.require_checkpoint(args.model_dir, args.name, 'python train_pro.py')
    cli.start_tensorflow(training=False)
    from models import Noise2Same
    model = Noise2Same(args.model_dir, args.name)
    folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(folder):
        raise OSError(f"cannot write {args.output}: folder {folder} does not exist")
    print(f'wrote {model.export(args.output)}')


if __name__ == '__main__':
    cli.run(main)
