"""What the scripts share: flags, settings resolved from the data set, one-line errors.

TensorFlow is imported only once the flags are parsed (`start_tensorflow`), so --help and flag
errors are instant, and quietly (utils/tf_setup.py; N2S_TF_LOGS=1 shows its log lines).
"""
import argparse
import csv
import itertools
import os
import signal
import sys
import traceback
from typing import Callable, Dict, List, Optional

from network_configure import LR_SCHEDULES, PRECISIONS

from .datasets import DATASETS, Dataset, get_dataset, lmbd_estimated, lmbd_for_noise
from .image_files import ImageFiles, from_files
from .distribute import STRATEGIES
from .files import atomic_write
from .tf_setup import import_tensorflow, use_onednn

DATA_DIR = 'Denoising_data/'
MODEL_DIR = 'trained_models/'
SEED = 666
# test_single.py's and the web demo's defaults: of the shipped models that predict at width 32
# (0.16 s per BSD68 image; width 64 takes 3.2-3.4x that), the setting best at every sigma 5..50 in
# `python -m benchmarks.noise_levels` (results/noise_levels/table.md: refined, above the
# network alone at every sigma; blind32-N2S 0.01-0.17 dB above bsd68-N2SP). blind-N2S
# refined is 0.12-0.31 dB better at 3.4x the time (docs/results.md, noise levels).
DEFAULT_MODEL = 'blind32-N2S'
DEFAULT_REFINE = True


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


def import_extra(module: str, purpose: str, requirements: str = 'requirements-extra.txt'):
    """Import a package of an extra requirements file, or fail with one line saying how to get
    it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        make = " (or 'make extras')" if requirements == 'requirements-extra.txt' else ''
        raise OSError(f"{purpose} needs the package {module}, an extra: install it with 'pip "
                      f"install -r {requirements}'{make}") from None


def start_tensorflow(training: bool) -> None:
    """Import TensorFlow quietly, with oneDNN on for training jobs and TensorFlow's own choice
    for prediction jobs (utils/tf_setup.py says why)."""
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


def distribution(args: argparse.Namespace) -> Dict:
    """train() arguments `strategy` and `sync_batch_norm` from the flags; call it before
    creating a model (splitting the CPU must precede TensorFlow's start)."""
    from .distribute import make_strategy
    return {'strategy': make_strategy(args.strategy, args.cpu_devices),
            'sync_batch_norm': args.sync_batch_norm}


def saved_settings(args: argparse.Namespace) -> Dict:
    """The settings.json of the model directory --model-dir/--name ({} for a new model)."""
    return settings_in(os.path.join(args.model_dir, args.name))


def settings_in(folder: str) -> Dict:
    """The settings.json of a model directory ({} without one); read without TensorFlow."""
    import json
    path = os.path.join(folder, 'settings.json')
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise OSError(f"cannot read {path} ({error}); repair or delete it") from None


def training_settings(args: argparse.Namespace, dataset: Dataset, saved: Dict,
                      steps_key: str = 'steps') -> Dict:
    """The run's settings from the flags. For a new model a flag left out means the data
    set's published setting; for an existing one (`saved` settings) the saved setting, and
    a flag that differs from it is refused by the model (models.SettingConflict).

    Returns masking, lmbd, mask_perc, seed, opt_config (changes only), patch_size,
    batch_size and steps (the final step: --steps, else the saved run's `steps_key`, else
    the data set's), each None where the model's saved value applies.
    """
    defaults = {} if saved else {**dataset.training, 'seed': SEED, 'mask_perc': 0.5}
    record = saved.get('training', {})
    patch = args.patch_size or record.get('patch_size') or dataset.training['patch_size']
    if len(patch) == 1:
        patch = patch * dataset.dim
    if len(patch) != dataset.dim:
        raise ValueError(f"--patch-size needs 1 or {dataset.dim} values for {dataset.name}, "
                         f"got {len(patch)}")
    lmbd = args.lmbd
    if args.noise_sigma == 'auto':
        lmbd = lmbd_estimated(dataset.raw_training_images(args.data_dir), dataset.dim)
        print(f"lmbd {lmbd:.3f}: 2 x the estimated noise std / image std, root mean square "
              f"over the training images")
    elif args.noise_sigma is not None:
        lmbd = lmbd_for_noise(dataset.raw_training_images(args.data_dir), args.noise_sigma)
        print(f"lmbd {lmbd:.3f}: 2 x noise sigma {args.noise_sigma:g} / image std, root mean "
              f"square over the training images")
    steps = args.steps or record.get(steps_key) or dataset.training[steps_key]
    opt_config = {}
    if args.lr is not None:
        if not args.lr > 0:
            raise ValueError(f"--lr must be positive, got {args.lr}")
        opt_config['base_learning_rate'] = args.lr
    if args.lr_schedule is not None:
        opt_config['lr_schedule'] = args.lr_schedule
        if args.lr_schedule != 'staircase':
            opt_config['lr_decay_steps'] = float(steps)
    pick = lambda flag, key: flag if flag is not None else defaults.get(key)
    if saved:
        print(f"continuing {os.path.join(args.model_dir, args.name)} with its saved settings "
              f"(a flag that would change one is refused)")
    return {'masking': pick(args.masking, 'masking'), 'lmbd': pick(lmbd, 'lmbd'),
            'mask_perc': pick(args.mask_perc, 'mask_perc'), 'seed': pick(args.seed, 'seed'),
            'opt_config': opt_config, 'patch_size': list(patch),
            'batch_size': pick(args.batch_size, 'batch_size'), 'steps': steps}


def model_kwargs(args: argparse.Namespace, dataset: Dataset) -> Dict:
    """Constructor arguments of a model for `dataset` from the flags. A new model trained
    --init-from a model directory without --filters gets that model's network configuration."""
    net_config = {'first_output_filters': args.filters} if args.filters else None
    init_from = getattr(args, 'init_from', None)
    if net_config is None and init_from and not saved_settings(args):
        net_config = initial_net_config(init_from)
    return {'dim': dataset.dim, 'in_channels': dataset.in_channels, 'precision': args.precision,
            'normalisation': dataset.normalisation, 'net_config': net_config}


def initial_net_config(init_from: str) -> Optional[Dict]:
    """The network configuration in init_from's settings.json (None without one, e.g. an
    original TF1 directory, whose width is the default 96)."""
    net_config = settings_in(init_from).get('net_config')
    if net_config:
        print(f"network of --init-from {init_from}: width {net_config['first_output_filters']}")
    return net_config


def resolve_dataset(args: argparse.Namespace, saved: Optional[Dict] = None) -> Dataset:
    """The data set of --dataset or --images; 'auto' is the one an existing model (`saved`
    settings) was trained on, else bsd68 when built, else demo. Another than the saved one is
    refused."""
    trained_on = (saved or {}).get('training', {}).get('dataset')
    if getattr(args, 'images', None) or trained_on == 'files':
        return files_dataset(args, saved or {})
    if trained_on and args.dataset not in ('auto', trained_on):
        raise ValueError(f"--dataset {args.dataset} differs from the data set {trained_on} that "
                         f"{os.path.join(args.model_dir, args.name)} was trained on: leave it out "
                         f"to continue that model, or train a new one under another --name")
    dataset = get_dataset(trained_on or args.dataset, args.data_dir)
    if args.dataset == 'auto':
        print(f'dataset: {dataset.name} ({dataset.description})')
    return dataset


def files_dataset(args: argparse.Namespace, saved: Dict) -> ImageFiles:
    """The --images data set; for a model trained on files, its saved paths and split."""
    record = saved.get('training', {})
    files = record.get('images', {}) if record.get('dataset') == 'files' else {}
    if saved and not files:
        raise ValueError(f"{os.path.join(args.model_dir, args.name)} was trained on "
                         f"{record.get('dataset', 'a data set')}, not on --images: train a new "
                         f"model under another --name (--init-from it to start from its weights)")
    if args.dataset != 'auto':
        raise ValueError("--images and --dataset exclude each other: give one of them")
    paths = args.images or files.get('paths')
    if not paths:
        raise ValueError(f"{os.path.join(args.model_dir, args.name)}/settings.json does not say "
                         f"which images it was trained on: pass --images")
    val_paths = args.val_images or ([] if args.images else files.get('val_paths', []))
    fraction = args.val_fraction if args.val_fraction is not None else \
        files.get('val_fraction', 0.1)
    seed = args.seed if args.seed is not None else record.get('seed', SEED)
    dim = args.dim or saved.get('dim', 2)
    from .image_files import training_defaults
    dataset = from_files(paths, val_paths, fraction, seed, dim, training_defaults(dim))
    if files:
        print(f"training images: those {os.path.join(args.model_dir, args.name)} was trained on")
    return dataset


def dataset_record(dataset: Dataset, saved: Dict) -> Dict:
    """What settings.json records of the training data (`Dataset.record`); files other than
    those a continued model was trained on (their digest) are refused."""
    record = dataset.record()
    before = saved.get('training', {}).get('images', {}).get('digest')
    if before and record.get('images', {}).get('digest') != before:
        raise ValueError(f"the --images files differ from those the saved model was trained on "
                         f"(content digest {record['images']['digest'][:12]} != {before[:12]}): "
                         f"train a new model under another --name, with --init-from to start "
                         f"from this one")
    return record


def training_data(dataset: Dataset, data_dir: str, patch_size: List[int], record: Dict):
    """(training images, validation images or None) of a data set, normalised; image files
    are checked against the patch size and summarised first. Adds the range of the images'
    relative noise to `record` (settings.json training.relative_noise, `fit.noise_range`)."""
    from .fit import noise_range
    if isinstance(dataset, ImageFiles):
        images, validation = dataset.training_data(patch_size=patch_size, verbose=True)
    else:
        images, validation = dataset.training_data(data_dir)
    record['relative_noise'] = noise_range(images, dataset.dim)
    return images, validation


def require_checkpoint(model_dir: str, name: str, how: str) -> None:
    """Exit early, with the command that makes one, when a model directory has no checkpoint."""
    import_tensorflow()  # quietly, before checkpoint_utils imports it
    from .checkpoint_utils import CheckpointError, latest_checkpoint
    path = os.path.join(model_dir, name)
    if latest_checkpoint(path) is None:
        raise CheckpointError(f"no checkpoint in {path}: train one with '{how}' or pass "
                              f"--model-dir/--name of an existing model")


def machine_label() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else `platform`) and core count, for labelling
    measured figures."""
    import platform
    name = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            name = next(line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return f'{name}, {os.cpu_count()} cores'


def write_text_atomic(path: str, text: str) -> None:
    """Write a text file through a temporary file and a rename."""
    with atomic_write(path) as tmp, open(tmp, 'w') as f:
        f.write(text)


def write_csv_atomic(path: str, rows: List[Dict]) -> None:
    """Write rows (dicts with the same keys) as CSV through a temporary file and a rename."""
    with atomic_write(path) as tmp, open(tmp, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_main(argv: Optional[List[str]], doc: str, name: str, train_command: str) -> None:
    """test.py and test_pro.py: mean PSNR (and SSIM) of a model on a data set's test images."""
    import numpy as np
    from tqdm.auto import tqdm

    p = parser(doc, name=name)
    p.add_argument('--verbose', action='store_true', help='print PSNR and SSIM per image')
    p.add_argument('--csv', default=None, help='write per-image PSNR and SSIM to this CSV file')
    p.add_argument('--tta', action='store_true',
                   help='test-time self-ensemble: average over the 8 flips and 90-degree '
                        'rotations (8x the time; off in the original protocol)')
    p.add_argument('--refine', action='store_true',
                   help='also score the outputs refined by utils/refine.py (a Wiener filter on '
                        'what the network removed; not the original protocol), printed beside')
    args = p.parse_args(argv)
    start_tensorflow(training=False)
    from models import Noise2Same

    dataset = resolve_dataset(args)
    dataset.test_images(args.data_dir)  # fail early on missing data
    require_checkpoint(args.model_dir, args.name, train_command)
    if args.csv:
        from .image_utils import check_writable
        check_writable(args.csv)
    kwargs = model_kwargs(args, dataset)
    model = Noise2Same(args.model_dir, args.name, net_config=kwargs['net_config'],
                       precision=args.precision)
    progress = lambda images: tqdm(images, desc=f'testing {args.name}', unit='image',
                                   mininterval=1 if sys.stderr.isatty() else 30)
    rows = list(dataset.evaluate(model, args.data_dir, progress=progress, tta=args.tta,
                                 refine=args.refine))
    kinds = [('', '')] + ([('_refined', ' --refine')] if args.refine else [])
    if args.verbose:
        for row in rows:
            print(f"{row['group'] + ' ' if row['group'] else ''}{row['image']}: " + ', '.join(
                f"PSNR{label} {row['psnr' + key]:.2f} dB, SSIM{label} {row['ssim' + key]:.4f}"
                for key, label in kinds))
    groups = sorted({row['group'] for row in rows})
    for group, (key, label) in itertools.product(groups, kinds):
        chosen = [row for row in rows if row['group'] == group]
        name = f'{dataset.name} {group}'.strip()
        print(f"{name}{label}: mean PSNR {np.mean([r['psnr' + key] for r in chosen]):.2f} dB, "
              f"mean SSIM {np.mean([r['ssim' + key] for r in chosen]):.4f} over {len(chosen)} "
              f"images ({args.model_dir.rstrip('/')}/{args.name}{', TTA' if args.tta else ''}"
              f"{', refined: not the original protocol' if key else ''})")
    if args.csv:
        write_csv_atomic(args.csv, rows)
