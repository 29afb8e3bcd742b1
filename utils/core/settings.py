"""settings.json: the one module that reads, merges, validates and writes a model's settings.

A model directory holds its checkpoints and `settings.json`: what it was built and trained with
(dim, channels, network, masking, lmbd, learning-rate schedule, the training run's batch and
patch size, data set, seed), enough to rebuild it for prediction without repeating them. Every
default is in `DEFAULTS`; a setting given for an existing model must equal the saved one
(`resolve`), else `SettingConflict`: a model keeps the settings it was trained with.

Reading needs no TensorFlow, so the scripts can check settings before starting it.
"""
import json
import os
from typing import Any, Dict, Mapping, Optional

import numpy as np

from utils.core.errors import CheckpointError
from utils.core.files import to_builtin, write_json_atomic

SETTINGS_FILE = 'settings.json'
MASKINGS = ('gaussian', 'donut')
NORMALISATIONS = ('image', 'channel')
SEED = 666  # the scripts' seed of weights and input pipeline (the original's)

# the original's learning-rate schedule (models.py's `training_config` in the original)
TRAINING_CONFIG = {'base_learning_rate': 0.0004, 'lr_decay_steps': 5e3, 'lr_decay_rate': 0.5,
                   'lr_staircase': True}

# Every default of a model's settings: a setting left out (None) takes the saved value of an
# existing model, else this. lmbd None means 2 (2 * sigma with sigma = 1), as the original.
DEFAULTS: Dict[str, Any] = {
    'dim': 2, 'in_channels': 1, 'masking': 'gaussian', 'mask_perc': 0.5, 'lmbd': None,
    'normalisation': 'image', 'opt_config': {'lr_schedule': 'staircase', **TRAINING_CONFIG},
    # the training run (settings.json 'training'): the global batch when none is given
    'batch_size': 64,
    # Noise2SamePro
    'sigma_grad': True, 'guard': True, 'per_image': False, 'sigma_floor': None,
}
PRO_KEYS = ('sigma_grad', 'guard', 'sigma_floor', 'per_image')  # Noise2SamePro's own settings


class SettingConflict(CheckpointError):
    """A setting given for an existing model differs from the one it was trained with."""

    def __init__(self, key: str, given, saved, model_dir: str, where: Optional[str] = None):
        self.key, self.given, self.saved = key, given, saved
        where = where or f"saved in {os.path.join(model_dir, SETTINGS_FILE)}"
        super().__init__(
            f"{key} {given!r} differs from the {key} {saved!r} {where}: leave it out to "
            f"continue that model, or train a new one under another name (initialised from it "
            f"with --init-from / init_from)")


def read_settings(model_dir: str) -> Optional[dict]:
    """The settings.json of a model directory, or None when there is none; an unreadable one is
    a CheckpointError (a ValueError) that says how to repair it."""
    path = os.path.join(model_dir, SETTINGS_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {path} ({error}); repair or delete it (a TF2 "
                              f"model's settings cannot be inferred from its checkpoint)"
                              ) from None


def settings_in(model_dir: str) -> dict:
    """`read_settings`, with {} for a directory without settings (a new model)."""
    return read_settings(model_dir) or {}


def write_settings(model_dir: str, settings: Mapping) -> None:
    """Write settings.json atomically (numpy numbers as JSON numbers)."""
    write_json_atomic(os.path.join(model_dir, SETTINGS_FILE), dict(settings))


def resolve(key: str, given, saved: Mapping, model_dir: str):
    """A setting's value: the given one, else the saved one, else `DEFAULTS[key]`. A given value
    that differs from the saved one is a SettingConflict."""
    given, value = to_builtin(given), saved.get(key)
    if given is None:
        return value if value is not None else DEFAULTS[key]
    if value is not None and given != value:
        raise SettingConflict(key, given, value, model_dir)
    return given


def resolve_opt_config(given: Optional[Mapping], saved: Optional[Mapping],
                       model_dir: str) -> dict:
    """The saved learning-rate schedule (else the default) with `given`'s keys, which must
    agree with the saved ones; validated."""
    config = {**DEFAULTS['opt_config'], **(saved or {})}
    for key, value in (to_builtin(given) or {}).items():
        if saved is not None and key in config and value != config[key]:
            raise SettingConflict(key, value, config[key], model_dir)
        config[key] = value
    from network_configure import LR_SCHEDULES
    if config['lr_schedule'] not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got "
                         f"{config['lr_schedule']!r}")
    if not float(config['base_learning_rate']) > 0:
        raise ValueError(f"base_learning_rate must be positive, got "
                         f"{config['base_learning_rate']}")
    return config


def resolve_net_config(given: Optional[Mapping], saved: Optional[Mapping],
                       model_dir: str) -> dict:
    """The network configuration: the saved one (else the defaults of network_configure)
    with `given`'s keys, which must agree with the saved ones."""
    from network_configure import merged_net_config
    given = to_builtin(given)
    if not saved:
        return merged_net_config(given)
    saved_config = merged_net_config(saved)
    for key, value in (given or {}).items():
        if key in saved and list(np.atleast_1d(value)) != list(np.atleast_1d(saved_config[key])):
            raise CheckpointError(
                f"net_config {key}={value!r} was given but {model_dir} holds a model with "
                f"{key}={saved_config[key]!r}; drop it or use another model directory")
    return merged_net_config({**saved_config, **(given or {})})


def resolve_model(given: Mapping, saved: Mapping, model_dir: str) -> dict:
    """A model's settings from the constructor's arguments (`given`, None: left out) and its
    saved settings: dim, in_channels, masking, lmbd, mask_perc, normalisation, net_config and
    opt_config, validated. An existing model's dim and channels cannot change."""
    for key in ('dim', 'in_channels'):
        if saved and given.get(key) is not None and given[key] != saved[key]:
            raise CheckpointError(
                f"{key}={given[key]} was given but {model_dir} holds a model with "
                f"{key}={saved[key]}; drop the argument or use another model directory")
    resolved = {key: resolve(key, given.get(key), saved, model_dir) for key in (
        'dim', 'in_channels', 'masking', 'lmbd', 'mask_perc', 'normalisation')}
    resolved['mask_perc'] = float(resolved['mask_perc'])
    validate(resolved)
    resolved['net_config'] = resolve_net_config(given.get('net_config'),
                                                saved.get('net_config'), model_dir)
    resolved['opt_config'] = resolve_opt_config(given.get('opt_config'),
                                                saved.get('opt_config'), model_dir)
    return resolved


def validate(settings: Mapping) -> None:
    """ValueError naming the first setting out of its range."""
    checks = (('dim', settings['dim'] in (2, 3), '2 or 3'),
              ('masking', settings['masking'] in MASKINGS, f'one of {MASKINGS}'),
              ('normalisation', settings['normalisation'] in NORMALISATIONS,
               f'one of {NORMALISATIONS}'),
              ('mask_perc', 0 < settings['mask_perc'] <= 100, 'in (0, 100]'))
    for key, ok, expected in checks:
        if not ok:
            raise ValueError(f"{key} must be {expected}, got {settings[key]!r}")


def resolve_run(key: str, given, saved_run: Mapping, default, flag: str):
    """A setting of the training run (settings.json 'training', e.g. pro_steps): the given one,
    else the saved one, else `default`; a given one that differs from the saved one is a
    ValueError naming the command-line `flag`."""
    value = given or saved_run.get(key) or default
    if saved_run.get(key) not in (None, value):
        raise ValueError(f"{flag} {value} differs from the {saved_run[key]} of the saved run: "
                         f"leave it out to continue that model, or train a new one under "
                         f"another --name")
    return value


def run_settings(saved_run: Mapping, batch_size: Optional[int], patch_size, steps: int,
                 record: Optional[Mapping], model_dir: str, has_checkpoint: bool) -> dict:
    """settings.json's 'training' for a run: batch_size (None: the saved one, else the
    default) and patch_size must equal those saved when training resumes from a checkpoint;
    `record` adds facts about the run (data set, final step)."""
    patch_size = [int(p) for p in to_builtin(list(patch_size))]
    batch_size = int(to_builtin(batch_size)) if batch_size is not None else \
        saved_run.get('batch_size', DEFAULTS['batch_size'])
    for key, value in (('batch_size', batch_size), ('patch_size', patch_size)):
        if key in saved_run and saved_run[key] != value and has_checkpoint:
            raise SettingConflict(key, value, saved_run[key], model_dir)
    return {**saved_run, **to_builtin(dict(record or {})), 'batch_size': batch_size,
            'patch_size': patch_size, 'steps': int(steps)}
