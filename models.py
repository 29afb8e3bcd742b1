"""Noise2Same and Noise2SamePro: the method of the two papers, masking, the loss terms and the
loss, over the U-Net of network.py.

Shapes: a batch is (B, spatial..., C) with 2 or 3 spatial axes and C = in_channels; `features`
are normalised noisy patches, `mask` is 1 at masked pixels, `noise` the replacement values of
'gaussian' masking (REFERENCE.md sections 1 and 2).

The work behind the public methods lives in one module each: training (the step, tf.distribute,
logging, validation, checkpoints) in utils/training_loop.py, prediction (normalisation, padding,
tiling, self-ensemble) in utils/predict_utils.py, export in utils/serving.py, checkpoint reading
in utils/checkpoint_utils.py.

Example
-------
>>> model = Noise2Same('trained_models/', 'N2S-3000', dim=2, in_channels=1)
>>> model.train(X[..., None], patch_size=[64, 64], validation=X_val[..., None], steps=3000)
>>> denoised = model.predict(noisy_image)          # (H, W) float, same scale as the input
"""
import functools
import os
from contextlib import contextmanager
from typing import Dict, Mapping, Optional, Sequence

from utils.tf_setup import import_tensorflow

tf = import_tensorflow()  # quietly, once; oneDNN as set by the caller (utils/tf_setup.py)

import numpy as np  # noqa: E402

from network import DenoisingNetwork  # noqa: E402
from network_configure import LR_SCHEDULES, PRECISIONS, merged_net_config  # noqa: E402
from utils import serving, training_loop  # noqa: E402
from utils.checkpoint_utils import (  # noqa: E402
    SETTINGS_FILE, CheckpointError, SettingConflict, infer_settings, is_tf1_checkpoint,
    latest_checkpoint, read_checkpoint, read_settings, tf1_variable_names, to_builtin,
    write_json_atomic)
from utils.files import atomic_folder  # noqa: E402
from utils.predict_utils import PadAndCropResizer, Predictor  # noqa: E402
from utils.train_utils import TF1Adam, donut_average, mask_box_size, training_dataset  # noqa: E402

training_config = {'base_learning_rate': 0.0004,
                   'lr_decay_steps': 5e3,
                   'lr_decay_rate': 0.5,
                   'lr_staircase': True}

MASKINGS = ('gaussian', 'donut')
NORMALISATIONS = ('image', 'channel')
_DEFAULTS = {'dim': 2, 'in_channels': 1, 'masking': 'gaussian', 'mask_perc': 0.5}
TERMS = training_loop.TERMS
PER_IMAGE = training_loop.PER_IMAGE


def haar_noise_std(x: tf.Tensor) -> tf.Tensor:
    """Blind noise std of each image of a batch (B, spatial..., C) -> (B,): the median absolute
    finest diagonal Haar coefficient over the last two spatial axes / 0.6745 (Donoho's MAD
    estimate, as skimage's estimate_sigma does with another wavelet); exact for white noise
    on a flat image, above it where the image has fine texture."""
    h, w = x.shape[-3] // 2 * 2, x.shape[-2] // 2 * 2
    diagonal = (x[..., 0:h:2, 0:w:2, :] - x[..., 0:h:2, 1:w:2, :]
                - x[..., 1:h:2, 0:w:2, :] + x[..., 1:h:2, 1:w:2, :]) / 2.0
    values = tf.sort(tf.reshape(tf.abs(diagonal), [tf.shape(x)[0], -1]), axis=-1)
    return tf.stop_gradient(values[:, tf.shape(values)[1] // 2] / 0.6745)


def safe_sqrt(x: tf.Tensor) -> tf.Tensor:
    """sqrt(x) for x > 0, else 0 with a zero gradient (sqrt'(0) is infinite: a batch without
    masked pixels would otherwise turn the loss or its gradient into NaN)."""
    positive = x > 0
    return tf.where(positive, tf.sqrt(tf.where(positive, x, tf.ones_like(x))), tf.zeros_like(x))


def noise2same_loss(terms: Mapping[str, tf.Tensor], lmbd: float) -> tf.Tensor:
    """Noise2Same's loss rec + lmbd * sqrt(inv) of the loss terms (REFERENCE.md section 1)."""
    return terms['reconstruction'] + lmbd * safe_sqrt(terms['invariance'])


class Noise2Same:
    """Noise2Same (Xie, Wang & Ji, NeurIPS 2020): loss = rec + lmbd * sqrt(inv).

    Parameters
    ----------
    base_dir, name : the model directory is base_dir/name; it holds the checkpoints (TF2 ones
        written here, or an ORIGINAL TF1 Estimator checkpoint) and `settings.json`.
    dim : 2 or 3 spatial axes. Default: the saved model's, else 2.
    in_channels : image channels. Default: the saved model's, else 1.
    lmbd : weight of sqrt(invariance); None means 2 (2 * sigma with sigma = 1), as the original.
    masking : 'gaussian' (masked pixels replaced by N(0, 0.2) noise) or 'donut' (by the mean of
        their neighbours). Default: the saved model's, else 'gaussian'.
    mask_perc : percentage of pixels masked, nominally (0.5 gives 14x14 cells, ~0.5 %).
    opt_config : changes to the learning-rate schedule (keys of `training_config`, and
        'lr_schedule': 'staircase', 'cosine' or 'linear'; see utils.train_utils.learning_rate).
        Default: the saved model's, else `training_config`.
    net_config : dict merged over `network_configure.conf_unet` (and `conf_basic_ops`).
        Default: the saved model's, else the defaults (width 96).
    normalisation : how the training images were normalised, and so how `predict` normalises
        an image unless given im_mean and im_std: 'image' (its mean and std over all channels;
        the original's prediction, and what original TF1 checkpoints get) or 'channel' (each
        channel by its own, as ImageNet training). Default: the saved model's, else 'image'.
    precision : 'float32' (default, as the original), 'mixed_bfloat16' (CPU or GPU) or
        'mixed_float16' (GPU; with dynamic loss scaling in training): the U-Net's convolutions in
        16 bits, weights, batch norm and loss in float32. A run-time choice, not saved: any
        checkpoint can be trained further or used in any precision.

    An existing model keeps what settings.json saved: an argument left out (None) means the
    saved value, and an explicit one that differs from it (architecture, lmbd, masking,
    mask_perc, opt_config) raises CheckpointError. Numbers may be Python or numpy scalars.
    """

    def __init__(self, base_dir: str, name: str, dim: Optional[int] = None,
                 in_channels: Optional[int] = None, lmbd: Optional[float] = None,
                 masking: Optional[str] = None, mask_perc: Optional[float] = None,
                 opt_config: Optional[Mapping] = None, net_config: Optional[Mapping] = None,
                 precision: str = 'float32', normalisation: Optional[str] = None):
        self.base_dir, self.name = base_dir, name
        self.model_dir = os.path.join(base_dir, name)
        self.saved = self._saved_settings() or {}
        given = to_builtin({'dim': dim, 'in_channels': in_channels, 'masking': masking,
                            'mask_perc': mask_perc, 'lmbd': lmbd})
        for key in ('dim', 'in_channels'):
            if self.saved and given[key] is not None and given[key] != self.saved[key]:
                raise CheckpointError(
                    f"{key}={given[key]} was given but {self.model_dir} holds a model with "
                    f"{key}={self.saved[key]}; drop the argument or use another model directory")
        self.dim, self.in_channels = (self._setting(k, given[k], _DEFAULTS[k])
                                      for k in ('dim', 'in_channels'))
        self.masking = self._setting('masking', given['masking'], _DEFAULTS['masking'])
        self.mask_perc = float(self._setting('mask_perc', given['mask_perc'],
                                             _DEFAULTS['mask_perc']))
        self.lmbd = self._setting('lmbd', given['lmbd'], None)
        self.normalisation = self._setting('normalisation', normalisation, 'image')
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got "
                             f"{self.normalisation!r}")
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim!r}")
        if self.masking not in MASKINGS:
            raise ValueError(f"masking must be one of {MASKINGS}, got {self.masking!r}")
        if not 0 < self.mask_perc <= 100:
            raise ValueError(f"mask_perc must be in (0, 100], got {self.mask_perc}")
        self.net_config = self._resolve_net_config(to_builtin(net_config), self.saved)
        self.opt_config = self._resolve_opt_config(to_builtin(opt_config))
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.strategy: Optional[tf.distribute.Strategy] = None  # set by training
        self.loaded: Optional[str] = None  # the checkpoint the variables hold
        self.training: Dict = dict(self.saved.get('training', {}))  # batch, patch, steps, data
        self.build()

    def build(self) -> None:
        """Create the network and the training state (optimizer, global step, input-pipeline
        seed, loss scale), all of which a checkpoint holds, in the current tf.distribute
        strategy's scope; `state` maps their TF1 checkpoint names to the variables."""
        self.model = DenoisingNetwork(self.dim, self.in_channels, self.net_config,
                                      precision=self.precision)
        self.net = self.model.unet
        named = list(tf1_variable_names(self.model))
        self.optimizer = TF1Adam([(n, v) for n, v in named if v.trainable])
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name='global_step')
        self.seed = tf.Variable(0, dtype=tf.int64, trainable=False, name='seed')
        self.state = {**{n: v for n, v in named}, **self.optimizer.named_state(),
                      'global_step': self.global_step, 'input_pipeline/seed': self.seed}
        self.loss_scale = None  # dynamic loss scale of mixed_float16, and finite steps since
        if self.precision == 'mixed_float16':
            self.loss_scale = tf.Variable(training_loop.LOSS_SCALE['initial'], trainable=False,
                                          name='loss_scale')
            self.finite_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.state.update({'loss_scale/scale': self.loss_scale,
                               'loss_scale/finite_steps': self.finite_steps})
        self._train_step_fn = functools.partial(training_loop.train_step, self)
        self._train_step = tf.function(self._train_step_fn)
        infer = tf.function(lambda x: self.model(x, training=False), input_signature=[
            tf.TensorSpec([None] * (self.dim + 1) + [self.in_channels], tf.float32)])
        self.predictor = Predictor(lambda x: infer(tf.constant(x, tf.float32)).numpy(),
                                   self.dim, self.in_channels, 2 ** self.net.depth,
                                   per_channel=self.normalisation == 'channel')

    # ---------------------------------------------------------------- settings

    def _saved_settings(self) -> Optional[dict]:
        """Settings of the model directory: its JSON, else inferred from an original checkpoint."""
        settings = read_settings(self.model_dir)
        if settings is not None:
            return settings
        path = latest_checkpoint(self.model_dir)
        if path is not None and is_tf1_checkpoint(path):
            return infer_settings(read_checkpoint(path))
        return None

    def _resolve_net_config(self, net_config: Optional[Mapping], saved: Optional[dict]) -> dict:
        if not saved:
            return merged_net_config(net_config)
        saved_config = merged_net_config(saved['net_config'])
        for key, value in (net_config or {}).items():
            if key in saved['net_config'] and list(np.atleast_1d(value)) != list(
                    np.atleast_1d(saved_config[key])):
                raise CheckpointError(
                    f"net_config {key}={value!r} was given but {self.model_dir} holds a model "
                    f"with {key}={saved_config[key]!r}; drop it or use another model directory")
        return merged_net_config({**saved_config, **(net_config or {})})

    def _setting(self, key: str, given, default):
        """A setting's value: the given one, else the saved one, else `default`. A given value
        that differs from the saved one is a CheckpointError: a model keeps the settings it
        was trained with (train a new model, e.g. with init_from, to change them)."""
        saved = self.saved.get(key)
        if given is None:
            return saved if saved is not None else default
        if saved is not None and given != saved:
            raise SettingConflict(key, given, saved, self.model_dir)
        return given

    def _resolve_opt_config(self, opt_config: Optional[Mapping]) -> dict:
        """The saved learning-rate schedule (else `training_config`) with `opt_config`'s keys,
        which must agree with the saved ones."""
        saved = self.saved.get('opt_config')
        config = {'lr_schedule': 'staircase', **(saved or training_config)}
        for key, value in (opt_config or {}).items():
            if saved is not None and key in config and value != config[key]:
                raise SettingConflict(key, value, config[key], self.model_dir)
            config[key] = value
        if config['lr_schedule'] not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got "
                             f"{config['lr_schedule']!r}")
        if not float(config['base_learning_rate']) > 0:
            raise ValueError(f"base_learning_rate must be positive, got "
                             f"{config['base_learning_rate']}")
        return config

    def settings(self) -> dict:
        """What settings.json records: enough to rebuild this model for prediction."""
        return {'class': type(self).__name__, 'dim': self.dim, 'in_channels': self.in_channels,
                'masking': self.masking, 'lmbd': self.lmbd, 'mask_perc': self.mask_perc,
                'normalisation': self.normalisation,
                'net_config': self.net_config, 'opt_config': self.opt_config,
                'training': self.training}

    # ---------------------------------------------------------------- the method

    def masked_input(self, features: tf.Tensor, noise: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """features with masked pixels replaced: by `noise` ('gaussian') or the donut mean."""
        replacement = noise if self.masking == 'gaussian' else donut_average(features)
        return (1.0 - mask) * features + mask * replacement

    def loss_sums(self, features, noise, mask, training: bool):
        """Both forward passes and the sums the loss terms are ratios of (REFERENCE.md section 1).

        The masked pass runs first, then the raw pass; with training=True each normalises by its
        own batch statistics and updates the moving averages (two updates per step).
        Returns (sums (5,): [sum (raw - x)^2, number of values, sum (raw - masked)^2 * mask,
        sum (x - masked)^2 * mask, number of masked values], raw prediction, masked prediction).
        Sums, unlike means, add up over the replicas of a distributed batch.
        """
        masked_pred = self.model(self.masked_input(features, noise, mask), training=training)
        raw_pred = self.model(features, training=training)
        return self.sums(features, mask, raw_pred, masked_pred), raw_pred, masked_pred

    @staticmethod
    def sums(features, mask, raw_pred, masked_pred, per_image: bool = False) -> tf.Tensor:
        """The five sums of `loss_sums` over the batch (5,), or with per_image over each
        image's own pixels (B, 5)."""
        axes = list(range(1, features.shape.rank)) if per_image else None
        count = (tf.cast(tf.size(features), tf.float32) if not per_image else
                 tf.fill(tf.shape(features)[:1], tf.cast(tf.size(features[0]), tf.float32)))
        return tf.stack([tf.reduce_sum(tf.square(raw_pred - features), axes), count,
                         tf.reduce_sum(tf.square(raw_pred - masked_pred) * mask, axes),
                         tf.reduce_sum(tf.square(features - masked_pred) * mask, axes),
                         tf.reduce_sum(mask, axes)], axis=-1)

    @staticmethod
    def terms_from_sums(sums: tf.Tensor) -> Dict[str, tf.Tensor]:
        """{'reconstruction', 'invariance', 'blind_spot'}: the means of `loss_sums`' sums;
        from per-image rows (B, 6) (Noise2SamePro per_image) the batch's, and under
        PER_IMAGE each image's reconstruction, invariance and estimated noise std (B,)."""
        if sums.shape.rank == 2:
            terms = Noise2Same.terms_from_sums(tf.reduce_sum(sums[:, :5], 0))
            terms[PER_IMAGE] = {'reconstruction': sums[:, 0] / sums[:, 1],
                                'invariance': sums[:, 2] / tf.maximum(sums[:, 4], 1.0),
                                'noise_std': sums[:, 5]}
            return terms
        n_masked = tf.maximum(sums[4], 1.0)
        return {'reconstruction': sums[0] / sums[1], 'invariance': sums[2] / n_masked,
                'blind_spot': sums[3] / n_masked}

    def loss_terms(self, features, noise, mask, training: bool):
        """The three terms of one batch: ({'reconstruction', 'invariance', 'blind_spot'},
        raw prediction, masked prediction); see `loss_sums`."""
        sums, raw_pred, masked_pred = self.loss_sums(features, noise, mask, training)
        return self.terms_from_sums(sums), raw_pred, masked_pred

    def loss(self, terms: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """rec + lmbd * sqrt(inv), lmbd = 2 when not given."""
        return noise2same_loss(terms, 2.0 if self.lmbd is None else float(self.lmbd))

    def compute_losses(self, features, noise, mask, training: bool = False) -> Dict[str, float]:
        """The loss and its terms on one given batch, from the newest checkpoint.

        features, noise, mask: (B, spatial..., C). training=True normalises with batch statistics
        (as in a training step) but updates nothing; False uses the moving averages.
        Returns floats 'loss', 'reconstruction', 'invariance', 'blind_spot'.
        """
        self._restore_latest()
        return self._current_losses(features, noise, mask, training)

    def _current_losses(self, features, noise, mask, training: bool) -> Dict[str, float]:
        """`compute_losses` with the weights the variables hold now."""
        args = [tf.convert_to_tensor(np.asarray(a, np.float32)) for a in (features, noise, mask)]
        with self._frozen_statistics():
            terms, _, _ = self.loss_terms(*args, training=training)
            terms['loss'] = self.loss(terms)
        terms.pop(PER_IMAGE, None)
        return {k: float(v) for k, v in terms.items()}

    @contextmanager
    def _frozen_statistics(self):
        """Restore the batch-norm moving averages on exit."""
        saved = [(v, v.numpy()) for v in self.model.non_trainable_weights]
        try:
            yield
        finally:
            for variable, value in saved:
                variable.assign(value)

    # ---------------------------------------------------------------- checkpoints

    def restore(self, path: str, optimizer: bool = True) -> None:
        """Load a checkpoint (TF1 or TF2 prefix): weights and BN statistics, and with `optimizer`
        the Adam slots, beta powers, global step and input-pipeline seed it holds."""
        values = read_checkpoint(path)
        for name, variable in self.state.items():
            is_weight = name.startswith('main_unet/') and '/Adam' not in name
            if name not in values:
                if is_weight:
                    raise CheckpointError(f"checkpoint {path} lacks {name}: it holds another "
                                          f"network configuration than {self.net_config}")
                continue
            if not (is_weight or optimizer):
                continue
            value = values[name]
            if tuple(value.shape) != tuple(variable.shape):
                raise CheckpointError(
                    f"checkpoint {path} holds {name} of shape {tuple(value.shape)}, this model "
                    f"needs {tuple(variable.shape)}: dim, in_channels or widths differ")
            variable.assign(tf.cast(value, variable.dtype))
        self.loaded = path

    def _restore_latest(self, checkpoint_path: Optional[str] = None) -> None:
        path = checkpoint_path or latest_checkpoint(self.model_dir)
        if path is None:
            if self.loaded is None:
                raise CheckpointError(f"no checkpoint in {self.model_dir}; train a model there "
                                      f"first or point at a directory that holds one")
            return
        if path != self.loaded:
            self.restore(path, optimizer=False)

    # ---------------------------------------------------------------- training

    def train(self, source_lst, patch_size: Sequence[int], validation=None,
              batch_size: Optional[int] = None, save_steps: int = 100, log_steps: int = 100,
              steps: int = 50000, seed: Optional[int] = None, init_from: Optional[str] = None,
              verbose: bool = True, strategy: Optional[tf.distribute.Strategy] = None,
              sync_batch_norm: bool = False, record: Optional[Mapping] = None,
              keep_checkpoints: int = 2) -> int:
        """Train until global step `steps`, resuming from the model directory's newest checkpoint
        (the loop: utils/training_loop.py).

        Parameters
        ----------
        source_lst : training images, (N, spatial..., C) array or list of (spatial..., C)
            arrays (sizes may differ; each at least `patch_size`), normalised by the caller.
        patch_size : spatial size of the training patches, e.g. [64, 64] or [16, 64, 64].
        validation : optional (N, spatial..., C) array; its loss terms (BN in inference mode)
            are logged after each checkpoint.
        batch_size : default the saved model's, else 64. It and patch_size must equal the saved
            ones when training resumes (settings.json 'training'; else CheckpointError).
        steps : the global step to stop at. NOTE: the original stopped at `steps` with
            validation but trained `steps` MORE steps without it; here it is always the step
            to stop at, so a resumed or two-phase run continues to exactly `steps`.
        seed : seed of the input pipeline (None: the checkpoint's, else a fresh one); on resume
            a seed other than the checkpoint's is a CheckpointError.
        init_from : a model directory (TF1 or TF2) whose newest weights and batch-norm
            statistics initialise this model when its own directory holds no checkpoint; the
            optimizer and the step counter start fresh, and nothing is written there.
        strategy : a tf.distribute.Strategy (None: one device; see utils.distribute). The
            global batch `batch_size` is split over its replicas and the loss is that of the
            global batch. In a cluster only the chief writes checkpoints and summaries.
        sync_batch_norm : normalise by the statistics of the global batch (all-reduced) instead
            of each replica's own (the usual MirroredStrategy behaviour, the default).
        record : facts about the run kept in settings.json under 'training' beside batch_size,
            patch_size and steps (the scripts put the data set and their final step there).

        Checkpoints (the newest `keep_checkpoints` kept; 0 keeps all) every `save_steps`, at the end and on KeyboardInterrupt
        (then re-raised); TensorBoard scalars every `log_steps` into the model directory,
        validation into its 'eval' folder. Returns the number of steps trained (0: nothing to do).
        """
        return training_loop.fit(self, source_lst, patch_size, validation, batch_size, save_steps,
                                 log_steps, steps, seed, init_from, verbose, strategy,
                                 sync_batch_norm, record, keep_checkpoints)

    def before_training(self, images, patch_size: Sequence[int], batch_size: int) -> None:
        """Called by the training loop once the checkpoint is loaded, before the first step."""

    # ---------------------------------------------------------------- prediction

    def predict(self, image: np.ndarray, resizer: Optional[PadAndCropResizer] = None,
                checkpoint_path: Optional[str] = None, im_mean=None, im_std=None,
                tta: bool = False, refine: bool = False) -> np.ndarray:
        """Denoise one image: (spatial...) for one channel, or (spatial..., C).

        Normalised by its own mean and std (per channel for normalisation='channel') unless
        given (scalars, or per channel; either may be given alone); reflect-padded
        to multiples of 2**depth, run with moving BN statistics, cropped and de-normalised.
        tta: average over the 8 flips and 90-degree rotations (8x the time).
        refine: put back the signal in what the network removed (`utils.refine`; a Wiener
        filter at the noise level estimated from the image, per channel; not in the original).
        Returns float32 of the input's shape.
        """
        self._restore_latest(checkpoint_path)
        return self.predictor.predict(image, im_mean, im_std, resizer, tta, refine)

    def batch_predict(self, images: np.ndarray, resizer: Optional[PadAndCropResizer] = None,
                      checkpoint_path: Optional[str] = None, im_mean=None, im_std=None,
                      batch_size: int = 32) -> np.ndarray:
        """Denoise a stack of equally sized images: (N, spatial...) or (N, spatial..., C),
        normalised together by the stack's mean and std unless given."""
        self._restore_latest(checkpoint_path)
        return self.predictor.batch_predict(images, im_mean, im_std, resizer, batch_size)

    def crop_predict(self, image: np.ndarray, size: int, margin: int,
                     resizer: Optional[PadAndCropResizer] = None,
                     checkpoint_path: Optional[str] = None, im_mean=None, im_std=None,
                     batch_size: int = 4, tta: bool = False, refine: bool = False) -> np.ndarray:
        """Denoise a large image tile by tile: the last two spatial axes are cut into
        size x size tiles overlapping by 2*margin, of which each keeps its centre.

        image: (spatial...) or (spatial..., C) as in `predict`; normalised as a whole, refined
        (see `predict`) as a whole.
        """
        self._restore_latest(checkpoint_path)
        return self.predictor.crop_predict(image, size, margin, im_mean, im_std, resizer,
                                           batch_size, tta, refine)

    # ---------------------------------------------------------------- export

    def export(self, path: str, checkpoint_path: Optional[str] = None) -> str:
        """Write a SavedModel that needs neither this repository nor Keras to run; its
        `serving_default` signature maps 'image' (spatial..., C) float32 to {'denoised': same
        shape} (utils/serving.py). An existing `path` is an error."""
        self._restore_latest(checkpoint_path)
        return serving.export(self.model, self.dim, self.in_channels, 2 ** self.net.depth, path,
                              per_channel=self.normalisation == 'channel')

    def export_checkpoint(self, folder: str, checkpoint_path: Optional[str] = None) -> str:
        """Write a weights-only model folder: the newest checkpoint's weights, batch-norm
        statistics, global step and input-pipeline seed without the Adam slots (a third of the
        size), beside a copy of settings.json. It predicts, exports and initialises training
        (`init_from`) exactly as the full one; training in it continues from those weights with
        a fresh optimizer (and says so). An existing `folder` is an error; the folder appears
        complete or not at all. Returns `folder`."""
        path = checkpoint_path or latest_checkpoint(self.model_dir)
        if path is None:
            raise CheckpointError(f"no checkpoint in {self.model_dir} to export")
        if os.path.exists(folder):
            raise FileExistsError(f"{folder} exists; remove it or choose another folder")
        self.restore(path, optimizer=True)
        model_variables = {name for name, _ in tf1_variable_names(self.model)}
        state = {name: variable for name, variable in self.state.items()
                 if name in model_variables or name in ('global_step', 'input_pipeline/seed')}
        with atomic_folder(folder) as partial:
            tf.train.CheckpointManager(tf.train.Checkpoint(state=state), partial, max_to_keep=1,
                                       checkpoint_name='ckpt').save(
                checkpoint_number=int(self.global_step.numpy()))
            write_json_atomic(os.path.join(partial, SETTINGS_FILE),
                              read_settings(self.model_dir) or self.settings())
        return folder


class Noise2SamePro(Noise2Same):
    """Noise2SamePro: lmbd replaced by 2 * sqrt(rec), an estimate of 2 * sigma from the data.

    loss = rec + 2 * sigma * sqrt(inv), sigma = sqrt(rec). With sigma_grad=True (the original)
    the gradient flows through the sigma estimate too; False stops it there. Train it on a
    directory where Noise2Same trained first to run the original two-phase schedule.

    guard=True (this port's default; False is the original loss) floors sigma at its value
    when N2SP training starts, sigma_floor = sqrt(mean rec) over GUARD_BATCHES training
    batches: N2SP can then lower its sigma estimate but not below the phase-one level, which
    stops the collapse to the identity (rec -> 0, sigma -> 0) seen from an N2S model trained
    with a small lmbd. The floor is stored in settings.json and kept when training resumes.
    sigma_grad and guard default to the saved model's (an N2SP one), else True.

    per_image=True (not in the original; for training images of mixed noise levels): one sigma
    per image of the batch, loss = mean_i(rec_i + 2 sigma_i sqrt(inv_i)), sigma_i = sqrt(rec_i)
    over image i's own pixels; its guard floors sigma_i at GUARD_FRACTION of the image's own
    blind noise estimate (`haar_noise_std`) instead of at one level for all. Default: the saved
    model's, else False.
    """

    GUARD_BATCHES = 8
    GUARD_FRACTION = 0.5

    def __init__(self, *args, sigma_grad: Optional[bool] = None, guard: Optional[bool] = None,
                 sigma_floor: Optional[float] = None, per_image: Optional[bool] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if self.saved.get('class') != type(self).__name__:  # e.g. phase one's Noise2Same
            self.saved = {k: v for k, v in self.saved.items()
                          if k not in ('sigma_grad', 'guard', 'sigma_floor', 'per_image')}
        self.sigma_grad = bool(self._setting('sigma_grad', sigma_grad, True))
        self.guard = bool(self._setting('guard', guard, True))
        self.per_image = bool(self._setting('per_image', per_image, False))
        floor = self._setting('sigma_floor', to_builtin(sigma_floor), None)
        self.sigma_floor = floor if self.guard and not self.per_image else None

    def loss_sums(self, features, noise, mask, training: bool):
        """As Noise2Same's; with per_image one row per image (B, 6): its five sums and its
        blind noise estimate (`haar_noise_std`, for the guard)."""
        sums, raw_pred, masked_pred = super().loss_sums(features, noise, mask, training)
        if self.per_image:
            sums = tf.concat([self.sums(features, mask, raw_pred, masked_pred, per_image=True),
                              haar_noise_std(features)[:, None]], axis=1)
        return sums, raw_pred, masked_pred

    def loss(self, terms: Mapping[str, tf.Tensor]) -> tf.Tensor:
        each = terms.get(PER_IMAGE)
        rec, inv = (each or terms)['reconstruction'], (each or terms)['invariance']
        sigma = safe_sqrt(rec)
        if not self.sigma_grad:
            sigma = tf.stop_gradient(sigma)
        if each is not None and self.guard:
            sigma = tf.maximum(sigma, self.GUARD_FRACTION * each['noise_std'])
        elif self.sigma_floor is not None:
            sigma = tf.maximum(sigma, float(self.sigma_floor))
        return tf.reduce_mean(rec + 2.0 * sigma * safe_sqrt(inv))

    def before_training(self, images, patch_size: Sequence[int], batch_size: int) -> None:
        """With the guard on and no floor yet: measure it on the coming training batches."""
        if self.guard and self.sigma_floor is None and not self.per_image:
            self.sigma_floor = self.sigma_estimate(images, patch_size, batch_size)
            print(f"N2SP guard: sigma estimate floored at {self.sigma_floor:.4f} (sqrt of the "
                  f"reconstruction term at step {int(self.global_step.numpy())})")

    def sigma_estimate(self, images, patch_size: Sequence[int], batch_size: int) -> float:
        """sqrt(mean reconstruction term) of the current weights over the training batches of
        the next GUARD_BATCHES steps (batch statistics as in training, nothing updated)."""
        step, seed = int(self.global_step.numpy()), int(self.seed.numpy())
        batches = training_dataset(images, patch_size, batch_size, mask_box_size(self.mask_perc),
                                   seed, step, step + self.GUARD_BATCHES)
        recs = [self._current_losses(features, noise, mask, training=True)['reconstruction']
                for features, noise, mask in batches]
        return float(np.sqrt(np.mean(recs)))

    def settings(self) -> dict:
        return {**super().settings(), 'sigma_grad': self.sigma_grad, 'guard': self.guard,
                'sigma_floor': self.sigma_floor, 'per_image': self.per_image}


def load_model(base_dir: str, name: str, **kwargs) -> Noise2Same:
    """The model in base_dir/name as the class it was trained as (settings.json 'class':
    Noise2Same or Noise2SamePro, whose loss differs), e.g. for `utils.adapt`; kwargs such as
    precision go to the constructor."""
    import json
    path = os.path.join(base_dir, name, 'settings.json')
    saved = {}
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
    cls = Noise2SamePro if saved.get('class') == Noise2SamePro.__name__ else Noise2Same
    return cls(base_dir, name, **kwargs)
