"""What the scripts share: flags and their types, the parser, one-line errors and exit
statuses (`run`), the default folders and model (run planning: n2s_app/train_plan.py).

TensorFlow is imported only once the flags are parsed (`start_tensorflow`), so --help and flag
errors are instant, and quietly (utils/core/tf_setup.py; N2S_TF_LOGS=1 shows its log lines).
"""
import argparse
import os
import signal
import sys
import traceback
from typing import Callable, List, Optional

from network_configure import LR_SCHEDULES, PRECISIONS
from utils.core.settings import SEED
from utils.core.tf_setup import import_tensorflow, use_onednn
from utils.data.datasets import DATASETS
from utils.training.distribute import STRATEGIES

DATA_DIR = 'Denoising_data/'
MODEL_DIR = 'trained_models/'
# test_single.py's and the web demo's defaults: of the shipped models that predict at width 32
# (0.16 s per BSD68 image; width 64 takes 3.2-3.4x that), the setting best at every sigma 5..50 in
# `python -m benchmarks.noise_levels` (results/noise_levels/table.md: refined, above the
# network alone at every sigma; blind32-N2S 0.01-0.17 dB above bsd68-N2SP). blind-N2S
# refined is 0.12-0.31 dB better at 3.4x the time (docs/results.md, noise levels).
DEFAULT_MODEL = 'blind32-N2S'
DEFAULT_REFINE = True
# ... and for very noisy images (photon noise at a few photons a pixel, Gaussian noise above
# about sigma 35 on a photograph): where the image's relative noise (noise std / image std,
# `utils.core.noise.relative_noise`) is above NOISY_ABOVE, the model trained on Gaussian and
# Poisson-Gaussian noise, when the model folder has it. NOISY_ABOVE was chosen on the 4 BSD68
# validation images and 10 scikit-image photographs (Gaussian sigma 15-70, Poisson peaks
# 3-100 with and without read noise): 0.55-0.65 alike, +0.37 dB over the default alone there.
NOISY_MODEL, NOISY_ABOVE = 'mixed32-N2S', 0.6


def run(main: Callable[[Optional[List[str]]], None]) -> None:
    """Run a script's main; expected failures end in one line on stderr and exit status 2
    (set N2S_DEBUG=1 for the traceback), Ctrl-C in status 130."""
    def terminate(signum, frame):
        raise KeyboardInterrupt  # training saves a checkpoint on its way out

    signal.signal(signal.SIGTERM, terminate)
    try:
        main(None)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)
    except (ValueError, OSError) as error:  # CheckpointError and MissingDataError among them
        if os.environ.get('N2S_DEBUG') == '1':
            traceback.print_exc()
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f'error: {message}', file=sys.stderr)
        sys.exit(2)


def start_tensorflow(training: bool) -> None:
    """Import TensorFlow quietly, with oneDNN on for training jobs and TensorFlow's own choice
    for prediction jobs (utils/core/tf_setup.py says why)."""
    if training:
        use_onednn(True)
    import_tensorflow()


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written; '(default: X)' added to a flag's help only when the help does
    not already say its default and there is one to say."""

    def _get_help_string(self, action):
        text = action.help or ''
        if 'default' in text or action.default in (None, False, argparse.SUPPRESS) or \
                not action.option_strings:
            return text
        return super()._get_help_string(action)


def new_parser(doc: str, **kwargs) -> argparse.ArgumentParser:
    """An ArgumentParser whose description is a script docstring's first paragraph and whose
    epilog is the rest (the usage examples)."""
    first, _, rest = doc.strip().partition('\n\n')
    if rest.startswith(' '):
        rest = 'examples:\n' + rest
    return argparse.ArgumentParser(description=first, epilog=rest.rstrip() or None,
                                   formatter_class=HelpFormatter, **kwargs)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and TensorFlow (the initial weights)."""
    import keras
    keras.utils.set_random_seed(seed)


def exit_if_nothing_trained(steps_trained: int) -> None:
    """Exit with status 1 when training had nothing to do (the library said why)."""
    if steps_trained == 0:
        sys.exit(1)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be a positive integer, got {text}')
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text}") from None
    if not 0 < value < float('inf'):
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def noise_sigma(text: str):
    """--noise-sigma: a positive number, or 'auto'."""
    if text == 'auto':
        return text
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a positive number or auto, got {text}") from None


def parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The flags every script has: where data and models are, which model, which data set."""
    p = new_parser(doc)
    p.add_argument('--data-dir', default=DATA_DIR, help='folder of the data sets')
    p.add_argument('--model-dir', default=MODEL_DIR, help='folder of the model directories')
    p.add_argument('--name', default=name, help='model directory name under --model-dir')
    p.add_argument('--dataset', default='auto', choices=['auto'] + sorted(DATASETS),
                   help="data set; auto: bsd68 when its files are in --data-dir, else the "
                        "offline demo set")
    p.add_argument('--filters', type=positive_int, default=None,
                   help='first_output_filters (network width); default: the saved model\'s, '
                        'else 96. Stored with the model.')
    add_precision_flag(p)
    return p


def add_precision_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument('--precision', default='float32', choices=PRECISIONS,
                   help='arithmetic of the convolutions: float32 (as the original), bfloat16 '
                        '(CPUs with AVX512-BF16 or AMX, recent GPUs) or float16 (GPUs; training '
                        'with loss scaling); weights stay float32')


def add_training_flags(p: argparse.ArgumentParser, steps_help: str) -> None:
    """Training flags. A flag left out (None) means the model's saved setting when its
    directory holds a model, else the data set's published one (`training_settings`)."""
    p.add_argument('--images', nargs='+', metavar='PATH', default=None,
                   help='train on your own image files instead of --dataset: files, folders '
                        'and globs of PNG, JPEG or TIFF (grey or RGB, 8/16-bit or float, any '
                        'sizes; multi-page TIFFs are frames, or volumes with --dim 3)')
    p.add_argument('--val-images', nargs='+', metavar='PATH', default=None,
                   help='with --images: validation files (default: a --val-fraction of them)')
    p.add_argument('--val-fraction', type=float, default=None,
                   help='with --images: share of the files held out for validation, drawn '
                        'with --seed (default 0.1; 0: none)')
    p.add_argument('--dim', type=int, choices=[2, 3], default=None,
                   help='with --images: 3 trains a 3D model on TIFF volumes (Z, Y, X) '
                        '(default 2)')
    p.add_argument('--masking', choices=['gaussian', 'donut'], default=None,
                   help='masking; default: the data set\'s (gaussian)')
    lmbd = p.add_mutually_exclusive_group()
    lmbd.add_argument('--lmbd', type=float, default=None,
                      help='lambda of the N2S loss (2 x sigma); default: the data set\'s (2)')
    lmbd.add_argument('--noise-sigma', type=noise_sigma, default=None,
                      help='std of the noise in the training images\' units (25 for bsd68 and '
                           'demo), or auto to estimate it per image: sets lmbd to 2 x the '
                           'normalised noise std (bsd68, demo, --images)')
    p.add_argument('--mask-perc', type=float, default=None,
                   help='percent of pixels masked (default 0.5)')
    p.add_argument('--batch-size', type=positive_int, default=None,
                   help='default: the data set\'s (64 for bsd68 and demo)')
    p.add_argument('--patch-size', type=positive_int, nargs='+', default=None,
                   help='one size for every axis or one per axis; default: the data set\'s '
                        '(64 for bsd68 and demo)')
    p.add_argument('--steps', type=positive_int, default=None, help=steps_help)
    p.add_argument('--lr', type=float, default=None,
                   help='base learning rate (default: the original 4e-4)')
    p.add_argument('--lr-schedule', choices=LR_SCHEDULES, default=None,
                   help='staircase: the original, halved every 5000 steps (default); cosine or '
                        'linear: decay from --lr to 0 at the last step (--steps)')
    p.add_argument('--save-steps', type=positive_int, default=100, help='checkpoint every')
    p.add_argument('--keep-checkpoints', type=int, default=2,
                   help='newest checkpoints kept; 0 keeps all (e.g. for a learning curve: '
                        'python -m benchmarks.curve)')
    p.add_argument('--log-steps', type=positive_int, default=100, help='TensorBoard log every')
    p.add_argument('--seed', type=int, default=None,
                   help=f'seed of weights and input pipeline (default {SEED})')
    p.add_argument('--init-from', default=None,
                   help='model directory (TF2 or original TF1) whose weights initialise a new '
                        'model; nothing is copied or written there')
    p.add_argument('--strategy', choices=STRATEGIES,
                   default='default', help='tf.distribute strategy: one device, all local GPUs '
                   '(or --cpu-devices logical CPUs), or the TF_CONFIG cluster')
    p.add_argument('--cpu-devices', type=positive_int, default=1,
                   help='split the CPU into this many logical devices (to try --strategy '
                        'mirrored without GPUs)')
    p.add_argument('--sync-batch-norm', action='store_true',
                   help='batch statistics of the global batch, all-reduced over replicas '
                        '(default: each replica its own, as usual with MirroredStrategy)')


def require_checkpoint(model_dir: str, name: str, how: str) -> None:
    """Exit early, with the command that makes one, when a model directory has no checkpoint."""
    import_tensorflow()  # quietly, before utils.model_io.checkpoints imports it
    from utils.core.errors import CheckpointError
    from utils.model_io.checkpoints import latest_checkpoint
    path = os.path.join(model_dir, name)
    if latest_checkpoint(path) is None:
        raise CheckpointError(f"no checkpoint in {path}: train one with '{how}' or pass "
                              f"--model-dir/--name of an existing model")
