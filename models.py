"""Noise2Same and Noise2SamePro: masking, the loss, training, checkpoints and prediction.

Shapes: a batch is (B, spatial..., C) with 2 or 3 spatial axes and C = in_channels; `features`
are normalised noisy patches, `mask` is 1 at masked pixels, `noise` the replacement values of
'gaussian' masking (REFERENCE.md sections 1 and 2).

Example
-------
>>> model = Noise2Same('trained_models/', 'N2S-3000', dim=2, in_channels=1)
>>> model.train(X[..., None], patch_size=[64, 64], validation=X_val[..., None], steps=3000)
>>> denoised = model.predict(noisy_image)          # (H, W) float, same scale as the input
"""
import os
import shutil
import sys
import tempfile

# oneDNN CPU kernels on, as in utils/__init__.py (whichever is imported first sets it).
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')

from contextlib import contextmanager, nullcontext  # noqa: E402
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from network import DenoisingNetwork
from network_configure import PRECISIONS, merged_net_config
from utils.checkpoint_utils import (CheckpointError, backup_tf1_state, infer_settings,
                                    is_tf1_checkpoint, latest_checkpoint, read_checkpoint,
                                    read_settings, tf1_variable_names, write_json_atomic,
                                    SETTINGS_FILE)
from utils.distribute import is_chief
from utils.predict_utils import PadAndCropResizer, get_coord
from utils.train_utils import (TF1Adam, batch_maker, check_training_images, donut_average,
                               learning_rate, mask_box_size, training_dataset,
                               validation_batches)

training_config = {'base_learning_rate': 0.0004,
                   'lr_decay_steps': 5e3,
                   'lr_decay_rate': 0.5,
                   'lr_staircase': True}

MASKINGS = ('gaussian', 'donut')
# mixed_float16: the loss is multiplied by the scale; a step whose gradients overflow is skipped
# and halves it, `growth_steps` finite steps in a row double it (Keras' LossScaleOptimizer rule)
LOSS_SCALE = {'initial': 2.0 ** 15, 'growth_steps': 2000}
_DEFAULTS = {'dim': 2, 'in_channels': 1, 'masking': 'gaussian', 'mask_perc': 0.5}
TERMS = ('reconstruction', 'invariance', 'blind_spot')


def safe_sqrt(x: tf.Tensor) -> tf.Tensor:
    """sqrt(x) for x > 0, else 0 with a zero gradient (sqrt'(0) is infinite: a batch without
    masked pixels would otherwise turn the loss or its gradient into NaN)."""
    positive = x > 0
    return tf.where(positive, tf.sqrt(tf.where(positive, x, tf.ones_like(x))), tf.zeros_like(x))


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
    opt_config : learning-rate schedule, as `training_config`.
    net_config : dict merged over `network_configure.conf_unet` (and `conf_basic_ops`).
        Default: the saved model's, else the defaults (width 96).
    precision : 'float32' (default, as the original), 'mixed_bfloat16' (CPU or GPU) or
        'mixed_float16' (GPU; with dynamic loss scaling in training): the U-Net's convolutions in
        16 bits, weights, batch norm and loss in float32. A run-time choice, not saved: any
        checkpoint can be trained further or used in any precision.

    Explicit arguments that contradict the saved model's architecture raise CheckpointError.
    """

    def __init__(self, base_dir: str, name: str, dim: Optional[int] = None,
                 in_channels: Optional[int] = None, lmbd: Optional[float] = None,
                 masking: Optional[str] = None, mask_perc: Optional[float] = None,
                 opt_config: Mapping = training_config, net_config: Optional[Mapping] = None,
                 precision: str = 'float32'):
        self.base_dir, self.name = base_dir, name
        self.model_dir = os.path.join(base_dir, name)
        saved = self._saved_settings()
        given = {'dim': dim, 'in_channels': in_channels, 'masking': masking,
                 'mask_perc': mask_perc, 'lmbd': lmbd}
        for key in ('dim', 'in_channels'):
            if saved and given[key] is not None and given[key] != saved[key]:
                raise CheckpointError(
                    f"{key}={given[key]} was given but {self.model_dir} holds a model with "
                    f"{key}={saved[key]}; drop the argument or use another model directory")
        pick = lambda key: next(v for v in (given[key], (saved or {}).get(key),
                                            _DEFAULTS.get(key)) if v is not None)
        self.dim, self.in_channels = pick('dim'), pick('in_channels')
        self.masking, self.mask_perc = pick('masking'), float(pick('mask_perc'))
        self.lmbd = lmbd if lmbd is not None else (saved or {}).get('lmbd')
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim!r}")
        if self.masking not in MASKINGS:
            raise ValueError(f"masking must be one of {MASKINGS}, got {self.masking!r}")
        if not 0 < self.mask_perc <= 100:
            raise ValueError(f"mask_perc must be in (0, 100], got {self.mask_perc}")
        self.net_config = self._resolve_net_config(net_config, saved)
        self.opt_config = dict(opt_config)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self._strategy: Optional[tf.distribute.Strategy] = None
        self._loaded: Optional[str] = None
        self._build()

    def _build(self) -> None:
        """Create the network, optimizer, counters and compiled functions (in the current
        tf.distribute strategy's scope)."""
        self.model = DenoisingNetwork(self.dim, self.in_channels, self.net_config,
                                      precision=self.precision)
        self.net = self.model.unet
        named = list(tf1_variable_names(self.model))
        self.optimizer = TF1Adam([(n, v) for n, v in named if v.trainable])
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name='global_step')
        self.seed = tf.Variable(0, dtype=tf.int64, trainable=False, name='seed')
        self._state = {**{n: v for n, v in named}, **self.optimizer.named_state(),
                       'global_step': self.global_step, 'input_pipeline/seed': self.seed}
        self.loss_scale = None  # dynamic loss scale of mixed_float16, and finite steps since
        if self.precision == 'mixed_float16':
            self.loss_scale = tf.Variable(LOSS_SCALE['initial'], trainable=False, name='loss_scale')
            self._finite_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
            self._state.update({'loss_scale/scale': self.loss_scale,
                                'loss_scale/finite_steps': self._finite_steps})
        self._train_step = tf.function(self._train_step_fn)
        self._infer = tf.function(lambda x: self.model(x, training=False), input_signature=[
            tf.TensorSpec([None] * (self.dim + 1) + [self.in_channels], tf.float32)])

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

    def settings(self) -> dict:
        """What settings.json records: enough to rebuild this model for prediction."""
        return {'class': type(self).__name__, 'dim': self.dim, 'in_channels': self.in_channels,
                'masking': self.masking, 'lmbd': self.lmbd, 'mask_perc': self.mask_perc,
                'net_config': self.net_config, 'opt_config': self.opt_config}

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
        sums = tf.stack([tf.reduce_sum(tf.square(raw_pred - features)),
                         tf.cast(tf.size(features), tf.float32),
                         tf.reduce_sum(tf.square(raw_pred - masked_pred) * mask),
                         tf.reduce_sum(tf.square(features - masked_pred) * mask),
                         tf.reduce_sum(mask)])
        return sums, raw_pred, masked_pred

    @staticmethod
    def terms_from_sums(sums: tf.Tensor) -> Dict[str, tf.Tensor]:
        """{'reconstruction', 'invariance', 'blind_spot'}: the means of `loss_sums`' sums."""
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
        lmbd = 2.0 if self.lmbd is None else float(self.lmbd)
        return terms['reconstruction'] + lmbd * safe_sqrt(terms['invariance'])

    def compute_losses(self, features, noise, mask, training: bool = False) -> Dict[str, float]:
        """The loss and its terms on one given batch, from the newest checkpoint.

        features, noise, mask: (B, spatial..., C). training=True normalises with batch statistics
        (as in a training step) but updates nothing; False uses the moving averages.
        Returns floats 'loss', 'reconstruction', 'invariance', 'blind_spot'.
        """
        self._restore_latest()
        args = [tf.convert_to_tensor(np.asarray(a, np.float32)) for a in (features, noise, mask)]
        with self._frozen_statistics():
            terms, _, _ = self.loss_terms(*args, training=training)
            terms['loss'] = self.loss(terms)
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
        for name, variable in self._state.items():
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
        self._loaded = path

    def _restore_latest(self, checkpoint_path: Optional[str] = None) -> None:
        path = checkpoint_path or latest_checkpoint(self.model_dir)
        if path is None:
            if self._loaded is None:
                raise CheckpointError(f"no checkpoint in {self.model_dir}; train a model there "
                                      f"first or point at a directory that holds one")
            return
        if path != self._loaded:
            self.restore(path, optimizer=False)

    # ---------------------------------------------------------------- training

    def _train_step_fn(self, features, noise, mask):
        with tf.GradientTape() as tape:
            terms, raw_pred, masked_pred = self.loss_terms(features, noise, mask, training=True)
            loss = self.loss(terms)
            scaled = loss * self.loss_scale if self.loss_scale is not None else loss
        variables = self.model.trainable_weights
        terms.update(loss=loss, learning_rate=self._apply(tape.gradient(scaled, variables),
                                                          variables))
        return terms, raw_pred[:3], masked_pred[:3]

    def _apply(self, gradients, variables) -> tf.Tensor:
        """One Adam step with the gradients of the (scaled) loss; advances the global step.
        Under mixed_float16 they are unscaled, and a step with Inf or NaN is skipped.
        Returns the learning rate."""
        lr = learning_rate(self.global_step, self.opt_config)
        if self.loss_scale is None:
            self.optimizer.apply(gradients, variables, lr)
        else:
            gradients = [g / self.loss_scale for g in gradients]
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
            tf.cond(finite, lambda: self._finite_step(gradients, variables, lr),
                    self._overflow_step)
        self.global_step.assign_add(1)
        return lr

    def _finite_step(self, gradients, variables, lr):
        self.optimizer.apply(gradients, variables, lr)
        grow = self._finite_steps + 1 >= LOSS_SCALE['growth_steps']
        self.loss_scale.assign(tf.where(grow, self.loss_scale * 2.0, self.loss_scale))
        self._finite_steps.assign(tf.where(grow, tf.constant(0, tf.int64), self._finite_steps + 1))
        return tf.constant(True)

    def _overflow_step(self):
        self.loss_scale.assign(tf.maximum(self.loss_scale / 2.0, 1.0))
        self._finite_steps.assign(0)
        return tf.constant(False)

    def _use_strategy(self, strategy: Optional[tf.distribute.Strategy],
                      sync_batch_norm: bool) -> None:
        """Re-create the variables in `strategy`'s scope (None: one device), keeping their values."""
        if strategy is not self._strategy:
            values = {name: variable.numpy() for name, variable in self._state.items()}
            with strategy.scope() if strategy is not None else nullcontext():
                self._build()
            for name, variable in self._state.items():
                variable.assign(values[name])
            self._strategy = strategy
        for layer in self.model._flatten_layers():
            if hasattr(layer, 'synchronized'):
                layer.synchronized = sync_batch_norm

    def _distributed_step(self, make_batch, batch_size: int):
        """A compiled training step over the replicas of `self._strategy`, given the step.

        Each worker makes the step's global batch once; replica r takes its rows
        [r*b, (r+1)*b) (b = batch_size / replicas). The loss terms are ratios of sums over the
        GLOBAL batch; each replica differentiates sum_k dL/dS_k * s_k (S_k the all-reduced sums, s_k its own), so the
        all-reduced gradients are exactly those of the global loss, for any loss of the terms.
        """
        strategy, variables = self._strategy, self.model.trainable_weights
        per_replica = batch_size // strategy.num_replicas_in_sync
        total = tf.distribute.ReduceOp.SUM

        def replica_step(global_batch):
            replica = tf.distribute.get_replica_context()
            first = replica.replica_id_in_sync_group * per_replica
            features, noise, mask = (t[first:first + per_replica] for t in global_batch)
            with tf.GradientTape() as tape:
                sums, raw_pred, masked_pred = self.loss_sums(features, noise, mask, training=True)
                global_sums = replica.all_reduce(total, tf.stop_gradient(sums))
                with tf.GradientTape() as inner:
                    inner.watch(global_sums)
                    terms = self.terms_from_sums(global_sums)
                    loss = self.loss(terms)
                weights = tf.stop_gradient(inner.gradient(loss, global_sums))
                surrogate = tf.reduce_sum(weights * sums)
                if self.loss_scale is not None:
                    surrogate *= self.loss_scale
            gradients = replica.all_reduce(total, tape.gradient(surrogate, variables))
            terms['loss'] = loss
            batch = (features[:3], noise[:3], mask[:3])
            return gradients, terms, batch, raw_pred[:3], masked_pred[:3]

        @tf.function
        def step_fn(step):
            results = strategy.run(replica_step, args=(make_batch(step),))
            gradients, terms, batch, raw_pred, masked_pred = tf.nest.map_structure(
                lambda value: strategy.experimental_local_results(value)[0], results)
            # in cross-replica context: every copy of a variable gets the same update
            terms['learning_rate'] = self._apply(gradients, variables)
            return (terms, raw_pred, masked_pred), batch
        return step_fn

    def train(self, source_lst, patch_size: Sequence[int], validation=None, batch_size: int = 64,
              save_steps: int = 100, log_steps: int = 100, steps: int = 50000,
              seed: Optional[int] = None, init_from: Optional[str] = None,
              verbose: bool = True, strategy: Optional[tf.distribute.Strategy] = None,
              sync_batch_norm: bool = False) -> int:
        """Train until global step `steps`, resuming from the model directory's newest checkpoint.

        Parameters
        ----------
        source_lst : training images, (N, spatial..., C) array or list of (spatial..., C)
            arrays (sizes may differ; each at least `patch_size`), normalised by the caller.
        patch_size : spatial size of the training patches, e.g. [64, 64] or [16, 64, 64].
        validation : optional (N, spatial..., C) array; its loss terms (BN in inference mode)
            are logged after each checkpoint.
        steps : the global step to stop at. NOTE: the original stopped at `steps` with
            validation but trained `steps` MORE steps without it; here it is always the step
            to stop at, so a resumed or two-phase run continues to exactly `steps`.
        seed : seed of the input pipeline (None: the checkpoint's, else a fresh one).
        init_from : a model directory (TF1 or TF2) whose newest weights and batch-norm
            statistics initialise this model when its own directory holds no checkpoint; the
            optimizer and the step counter start fresh, and nothing is written there.
        strategy : a tf.distribute.Strategy (None: one device; see utils.distribute). The
            global batch `batch_size` is split over its replicas and the loss is that of the
            global batch. In a cluster only the chief writes checkpoints and summaries.
        sync_batch_norm : normalise by the statistics of the global batch (all-reduced) instead
            of each replica's own (the usual MirroredStrategy behaviour, the default).

        Checkpoints (newest 2 kept) every `save_steps`, at the end and on KeyboardInterrupt
        (then re-raised); TensorBoard scalars every `log_steps` into the model directory,
        validation into its 'eval' folder. Returns the number of steps trained (0: nothing to do).
        """
        for label, value in (('batch_size', batch_size), ('save_steps', save_steps),
                             ('log_steps', log_steps), ('steps', steps)):
            if int(value) < 1:
                raise ValueError(f"{label} must be a positive integer, got {value}")
        patch_size = [int(p) for p in patch_size]
        check_training_images(source_lst, self.dim, self.in_channels, patch_size)
        if validation is not None:
            validation = self._check_validation(validation)

        self._use_strategy(strategy, sync_batch_norm)
        replicas = strategy.num_replicas_in_sync if strategy is not None else 1
        if batch_size % replicas:
            raise ValueError(f"batch_size {batch_size} does not split over {replicas} replicas; "
                             f"use a multiple of {replicas}")
        chief = is_chief(strategy)
        os.makedirs(self.model_dir, exist_ok=True)
        path = latest_checkpoint(self.model_dir)
        if path is not None:
            self.restore(path, optimizer=True)
        elif init_from is not None:
            source = latest_checkpoint(init_from)
            if source is None:
                raise CheckpointError(f"init_from {init_from} holds no checkpoint")
            self.restore(source, optimizer=False)
        start = int(self.global_step.numpy())
        if steps <= start:
            print(f"nothing to do: {self.model_dir} is already at step {start} (asked to train "
                  f"to step {steps}); raise steps to train further")
            return 0
        if seed is not None:
            self.seed.assign(seed)
        elif path is None or is_tf1_checkpoint(path):
            self.seed.assign(int(np.random.SeedSequence().entropy % 2 ** 31))

        if chief:
            backup_tf1_state(self.model_dir)
            write_json_atomic(os.path.join(self.model_dir, SETTINGS_FILE), self.settings())
        # every worker of a cluster saves (reading distributed variables is collective); only
        # the chief's checkpoints and summaries are kept
        save_dir = self.model_dir if chief else tempfile.mkdtemp(prefix='worker-ckpt-')
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(state=self._state),
                                             save_dir, max_to_keep=2, checkpoint_name='ckpt')
        new_writer = tf.summary.create_file_writer if chief else (
            lambda folder: tf.summary.create_noop_writer())
        writer = new_writer(self.model_dir)
        eval_writer = new_writer(os.path.join(self.model_dir, 'eval'))
        box = mask_box_size(self.mask_perc)
        seed = int(self.seed.numpy())
        if strategy is None:
            batches = ((self._train_step(*batch), batch) for batch in training_dataset(
                source_lst, patch_size, batch_size, box, seed, start, steps))
        else:
            step_fn = self._distributed_step(
                batch_maker(source_lst, patch_size, batch_size, box, seed), batch_size)
            batches = (step_fn(tf.constant(s, tf.int64)) for s in range(start, steps))
        bar = tqdm(total=steps, initial=start, disable=not (verbose and chief), unit='step',
                   desc=f'{type(self).__name__} {self.name}', dynamic_ncols=True,
                   mininterval=1 if sys.stderr.isatty() else 30)
        saved = start
        try:
            for (terms, raw_pred, masked_pred), (features, noise, mask) in batches:
                step = int(self.global_step.numpy())
                bar.update(1)
                if step % log_steps == 0 or step == steps:
                    values = {k: float(v) for k, v in terms.items()}
                    bar.set_postfix({k[:3]: f'{values[k]:.4f}' for k in ('loss',) + TERMS})
                    with writer.as_default(step=step):
                        for key, value in values.items():
                            tf.summary.scalar(f'loss_metric/{key}' if key in TERMS else key, value)
                        self._image_summaries(features, noise, mask, raw_pred, masked_pred)
                if step % save_steps == 0 or step == steps:
                    self._save(manager, step)
                    saved = step
                    if validation is not None:
                        scores = self.evaluate(validation, box)
                        with eval_writer.as_default(step=step):
                            for key, value in scores.items():
                                tf.summary.scalar(f'loss_metric/{key}', value)
                        if chief:
                            bar.write(f'step {step}: validation ' + ', '.join(
                                f'{k} {v:.5f}' for k, v in scores.items()))
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through utils.cli.run
            step = int(self.global_step.numpy())
            if step > saved:
                self._save(manager, step)
            bar.write(f'interrupted at step {step}; checkpoint {self._loaded} holds it',
                      file=sys.stderr)
            raise
        finally:
            bar.close()
            writer.flush()
            eval_writer.flush()
            if not chief:
                shutil.rmtree(save_dir, ignore_errors=True)
        return steps - start

    def _save(self, manager: tf.train.CheckpointManager, step: int) -> None:
        """Write the checkpoint of `step`; on failure (e.g. a full disk) remove its partial
        files and say which earlier checkpoint is intact."""
        try:
            written = manager.save(checkpoint_number=step)
            self._loaded = os.path.join(self.model_dir, os.path.basename(written))
        except Exception as error:  # OSError, or tf.errors.* wrapping one
            for leftover in tf.io.gfile.glob(os.path.join(manager.directory, f'ckpt-{step}.*')):
                tf.io.gfile.remove(leftover)
            previous = latest_checkpoint(self.model_dir) or 'no earlier checkpoint'
            first = str(error).strip().splitlines()[0] if str(error).strip() else ''
            raise CheckpointError(f"could not write the checkpoint of step {step} "
                                  f"({type(error).__name__}: {first}); {previous} is intact"
                                  ) from None

    def _check_validation(self, validation) -> np.ndarray:
        validation = np.asarray(validation, np.float32)
        if validation.ndim != self.dim + 2 or validation.shape[-1] != self.in_channels:
            raise ValueError(f"validation has shape {validation.shape}; expected (N, "
                             f"{self.dim} spatial axes..., {self.in_channels})")
        if not np.all(np.isfinite(validation)):
            raise ValueError(f"validation holds {np.size(validation) - np.isfinite(validation).sum()}"
                             f" NaN or Inf values")
        # The U-Net needs spatial sizes divisible by 2**(depth-1): reflect-pad when they are not.
        return PadAndCropResizer().before(validation, 2 ** (self.net.depth - 1), exclude=[0, -1])

    def evaluate(self, validation: np.ndarray, box: Optional[int] = None) -> Dict[str, float]:
        """Mean loss terms over validation batches of 4, BN in inference mode, fixed masks."""
        box = box or mask_box_size(self.mask_perc)
        sums: Dict[str, list] = {}
        for features, noise, mask in validation_batches(validation, box, int(self.seed.numpy())):
            terms, _, _ = self.loss_terms(features, noise, mask, training=False)
            terms['loss'] = self.loss(terms)
            for key, value in terms.items():
                sums.setdefault(key, []).append(float(value))
        return {k: float(np.mean(v)) for k, v in sums.items()}

    def _image_summaries(self, features, noise, mask, raw_pred, masked_pred) -> None:
        """The original's six image summaries (3D: maximum projection along Z), 3 images each."""
        features, mask = features[:3], mask[:3]
        images = {'1_inputs': features, '2_raw_predictions': raw_pred, '3_mask': mask,
                  '4_masked_predictions': masked_pred, '5_difference': raw_pred - masked_pred,
                  '6_rec_error': masked_pred - features}
        for name, image in images.items():
            if self.dim == 3:
                image = tf.reduce_max(image, axis=1)
            if image.shape[-1] not in (1, 3, 4):
                image = image[..., :1]
            low = tf.reduce_min(image, axis=[1, 2, 3], keepdims=True)
            high = tf.reduce_max(image, axis=[1, 2, 3], keepdims=True)
            tf.summary.image(name, (image - low) / tf.maximum(high - low, 1e-12), max_outputs=3)

    # ---------------------------------------------------------------- prediction

    def _channels_last(self, image: np.ndarray, leading: int = 0):
        """(array with a channel axis, whether one was added); checks rank and channels."""
        image = np.asarray(image)
        spatial = image.ndim - leading
        if self.in_channels == 1 and spatial == self.dim:
            return image[..., None], True
        if spatial != self.dim + 1 or image.shape[-1] != self.in_channels:
            what = 'a stack of images ' if leading else 'an image '
            want = f"(N, {self.dim} spatial axes" if leading else f"({self.dim} spatial axes"
            want += ')' if self.in_channels == 1 else f", {self.in_channels} channels)"
            raise ValueError(f"expected {what}{want}, got shape {image.shape}")
        return image, False

    @staticmethod
    def _normalisers(image: np.ndarray, im_mean, im_std):
        if im_mean is None or im_std is None:
            im_mean, im_std = image.mean(), image.std()
        im_std = np.where(np.asarray(im_std) == 0, 1.0, im_std)  # a constant image
        return np.asarray(im_mean, np.float32), np.asarray(im_std, np.float32)

    def _run(self, batch: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """The network in inference mode on (B, spatial..., C), spatial sizes multiples of
        2**depth; batches of `batch_size`."""
        return np.concatenate([self._infer(tf.constant(batch[i:i + batch_size], tf.float32)).numpy()
                               for i in range(0, len(batch), batch_size)])

    def _check_values(self, image: np.ndarray, spatial: Sequence[int]) -> None:
        """NaN/Inf and too-small images are errors (the U-Net needs 2**depth pixels per axis)."""
        bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        if bad:
            raise ValueError(f"the input holds {bad} NaN or Inf values; replace them first")
        least = 2 ** self.net.depth
        for axis, size in enumerate(spatial):
            if size < least:
                raise ValueError(f"the input is {size} pixels along spatial axis {axis}; "
                                 f"at least {least} are needed")

    def predict(self, image: np.ndarray, resizer: Optional[PadAndCropResizer] = None,
                checkpoint_path: Optional[str] = None, im_mean=None, im_std=None) -> np.ndarray:
        """Denoise one image: (spatial...) for one channel, or (spatial..., C).

        Normalised by its own mean and std unless given (scalars, or per channel); reflect-padded
        to multiples of 2**depth, run with moving BN statistics, cropped and de-normalised.
        Returns float32 of the input's shape.
        """
        self._restore_latest(checkpoint_path)
        x, added = self._channels_last(image)
        self._check_values(x, x.shape[:-1])
        mean, std = self._normalisers(x, im_mean, im_std)
        resizer = resizer or PadAndCropResizer()
        x = resizer.before((x - mean) / std, 2 ** self.net.depth, exclude=-1)
        out = resizer.after(self._run(x[None])[0], exclude=-1) * std + mean
        return (out[..., 0] if added else out).astype(np.float32)

    def batch_predict(self, images: np.ndarray, resizer: Optional[PadAndCropResizer] = None,
                      checkpoint_path: Optional[str] = None, im_mean=None, im_std=None,
                      batch_size: int = 32) -> np.ndarray:
        """Denoise a stack of equally sized images: (N, spatial...) or (N, spatial..., C),
        normalised together by the stack's mean and std unless given."""
        self._restore_latest(checkpoint_path)
        x, added = self._channels_last(images, leading=1)
        self._check_values(x, x.shape[1:-1])
        mean, std = self._normalisers(x, im_mean, im_std)
        resizer = resizer or PadAndCropResizer()
        x = resizer.before((x - mean) / std, 2 ** self.net.depth, exclude=[0, -1])
        out = resizer.after(self._run(x, batch_size), exclude=[0, -1]) * std + mean
        return (out[..., 0] if added else out).astype(np.float32)

    def crop_predict(self, image: np.ndarray, size: int, margin: int,
                     resizer: Optional[PadAndCropResizer] = None,
                     checkpoint_path: Optional[str] = None, im_mean=None, im_std=None,
                     batch_size: int = 4) -> np.ndarray:
        """Denoise a large image tile by tile: the last two spatial axes are cut into
        size x size tiles overlapping by 2*margin, of which each keeps its centre.

        image: (spatial...) or (spatial..., C) as in `predict`; normalised as a whole.
        """
        self._restore_latest(checkpoint_path)
        x, added = self._channels_last(image)
        self._check_values(x, x.shape[:-1])
        mean, std = self._normalisers(x, im_mean, im_std)
        x = (x - mean) / std
        out = np.empty(x.shape, np.float32)
        tiles = list(get_coord(x.shape[:-1], size, margin))
        resizer = resizer or PadAndCropResizer()
        for start in range(0, len(tiles), batch_size):
            group = tiles[start:start + batch_size]
            shapes = {x[src].shape for src, _, _ in group}
            for shape in shapes:  # edge tiles may be smaller: one batch per tile shape
                same = [t for t in group if x[t[0]].shape == shape]
                batch = resizer.before(np.stack([x[src] for src, _, _ in same]),
                                       2 ** self.net.depth, exclude=[0, -1])
                pred = resizer.after(self._run(batch), exclude=[0, -1])
                for (src, trg, mrg), tile in zip(same, pred):
                    out[trg] = tile[mrg]
        out = out * std + mean
        return out[..., 0] if added else out

    # ---------------------------------------------------------------- export

    def export(self, path: str, checkpoint_path: Optional[str] = None) -> str:
        """Write a SavedModel that needs neither this repository nor Keras to run.

        Its `serving_default` signature takes 'image', one float32 image of any size (>= 2**depth
        per spatial axis) with the channel axis last (also for one channel), and returns
        {'denoised': same shape}, normalised by the image's mean and std like `predict`.
        Written to a temporary folder and renamed; an existing `path` is an error.
        """
        if os.path.exists(path):
            raise FileExistsError(f"{path} exists; remove it or choose another export path")
        self._restore_latest(checkpoint_path)
        module = ServingModule(self.model, self.dim, self.in_channels, 2 ** self.net.depth)
        tmp = f'{path.rstrip(os.sep)}.tmp-{os.getpid()}'
        try:
            tf.saved_model.save(module, tmp, signatures={'serving_default': module.denoise})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                import shutil
                shutil.rmtree(tmp)
        return path


class ServingModule(tf.Module):
    """What `Noise2Same.export` saves: one float32 image (spatial..., C) in, its denoised version
    out, with the normalisation (the image's mean and std), the reflect padding to multiples of
    2**depth and the cropping done inside the graph."""

    def __init__(self, network, dim: int, in_channels: int, multiple: int):
        super().__init__(name='noise2same')
        self.weights = [getattr(v, 'value', v) for v in network.weights]  # tracked for saving
        self._network = lambda x: network(x, training=False)  # a function: not tracked itself
        self._multiple = multiple
        spec = tf.TensorSpec([None] * dim + [in_channels], tf.float32, name='image')
        self.denoise = tf.function(self._denoise, input_signature=[spec])

    def _denoise(self, image):
        mean = tf.reduce_mean(image)
        std = tf.math.reduce_std(image)
        std = tf.where(std > 0, std, tf.ones_like(std))
        size = tf.shape(image)[:-1]
        total = (-size) % self._multiple
        before = total // 2
        paddings = tf.concat([tf.stack([before, total - before], axis=1), [[0, 0]]], axis=0)
        x = tf.pad((image - mean) / std, paddings, mode='REFLECT')
        y = self._network(x[None])[0]
        y = tf.slice(y, tf.concat([before, [0]], 0), tf.concat([size, [-1]], 0))
        return {'denoised': y * std + mean}


class Noise2SamePro(Noise2Same):
    """Noise2SamePro: lmbd replaced by 2 * sqrt(rec), an estimate of 2 * sigma from the data.

    loss = rec + 2 * sqrt(rec) * sqrt(inv). With sigma_grad=True (the original) the gradient
    flows through the sigma estimate too; False stops it there. Train it on a directory where
    Noise2Same trained first to run the original two-phase schedule.
    """

    def __init__(self, *args, sigma_grad: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.sigma_grad = sigma_grad

    def loss(self, terms: Mapping[str, tf.Tensor]) -> tf.Tensor:
        sigma = safe_sqrt(terms['reconstruction'])
        if not self.sigma_grad:
            sigma = tf.stop_gradient(sigma)
        return terms['reconstruction'] + 2.0 * sigma * safe_sqrt(terms['invariance'])

    def settings(self) -> dict:
        return {**super().settings(), 'sigma_grad': self.sigma_grad}
