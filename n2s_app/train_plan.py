"""Planning a training run from the flags: data set, settings, model arguments, training data."""
import argparse
import os
from typing import Dict, List, Optional

from utils.core.noise import lmbd_estimated, lmbd_for_noise
from utils.core.settings import DEFAULTS, SEED, settings_in
from utils.data.datasets import Dataset, get_dataset
from utils.data.user_images import ImageFiles, from_files


def distribution(args: argparse.Namespace) -> Dict:
    """train() arguments `strategy` and `sync_batch_norm` from the flags; call it before
    creating a model (splitting the CPU must precede TensorFlow's start)."""
    from utils.training.distribute import make_strategy
    return {'strategy': make_strategy(args.strategy, args.cpu_devices),
            'sync_batch_norm': args.sync_batch_norm}


def saved_settings(args: argparse.Namespace) -> Dict:
    """The settings.json of the model directory --model-dir/--name ({} for a new model)."""
    return settings_in(os.path.join(args.model_dir, args.name))


def training_settings(args: argparse.Namespace, dataset: Dataset, saved: Dict,
                      steps_key: str = 'steps') -> Dict:
    """The run's settings from the flags. For a new model a flag left out means the data
    set's published setting; for an existing one (`saved` settings) the saved setting, and
    a flag that differs from it is refused by the model (models.SettingConflict).

    Returns masking, lmbd, mask_perc, seed, opt_config (changes only), patch_size,
    batch_size and steps (the final step: --steps, else the saved run's `steps_key`, else
    the data set's), each None where the model's saved value applies.
    """
    defaults = {} if saved else {**dataset.training, 'seed': SEED,
                                 'mask_perc': DEFAULTS['mask_perc']}
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
    from utils.data.user_images import training_defaults
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
    from utils.data.pipeline import check_training_images
    from utils.evaluation.fit import record_noise_range
    if isinstance(dataset, ImageFiles):
        images, validation = dataset.training_data(patch_size=patch_size, verbose=True)
    else:
        images, validation = dataset.training_data(data_dir)
    check_training_images(images, dataset.dim, dataset.in_channels, patch_size)  # before measuring
    record_noise_range(record, images, dataset.dim)
    return images, validation
