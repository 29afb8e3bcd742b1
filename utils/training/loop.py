"""The loop that fits a model: the training step (with loss scaling and tf.distribute),
logging, validation, checkpoint writing and interruption.

`Noise2Same.train` prepares a run (`prepare`: checks, resume) and hands it to `run`; what is
computed comes from the method (`Loss`: the sums of a batch, the terms, the loss, all in
models.py), what is trained from a `TrainingState`; this module runs it step by step.
Shapes: batches are (B, spatial..., C) float32 (features, masking noise, 0/1 mask).
"""
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from typing import Callable, Dict, Mapping, NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from utils.core.errors import CheckpointError
from utils.core.files import to_builtin
from utils.core.settings import SettingConflict, run_settings
from utils.data.pipeline import (batch_maker, check_training_images, mask_box_size,
                                 training_dataset, validation_batches)
from utils.model_io.checkpoints import has_optimizer_state, is_tf1_checkpoint, latest_checkpoint
from utils.prediction.tiling import PadAndCropResizer
from utils.training.distribute import is_chief
from utils.training.interrupts import StepCallback, deferred_signals
from utils.training.optimizer import learning_rate
from utils.training.state import LOSS_SCALE, TrainingState

TERMS = ('reconstruction', 'invariance', 'blind_spot')  # logged as loss_metric/<term>


class Loss(NamedTuple):
    """The method's computation, as the loop needs it (models.py: `Noise2Same`).

    sums(features, noise, mask, training) -> (sums, raw prediction, masked prediction): both
    forward passes and the sums the terms are ratios of, which add up over replicas;
    terms(sums) -> {'reconstruction', 'invariance', 'blind_spot', ...}; loss(terms) -> scalar.
    """
    sums: Callable
    terms: Callable
    loss: Callable

    def terms_and_loss(self, features, noise, mask, training: bool):
        """(terms with 'loss', raw prediction, masked prediction) of one batch."""
        sums, raw_pred, masked_pred = self.sums(features, noise, mask, training)
        terms = self.terms(sums)
        terms['loss'] = self.loss(terms)
        return logged(terms), raw_pred, masked_pred


def logged(terms: Dict) -> Dict:
    """The scalar entries of the terms (the per-image ones are not logged)."""
    return {k: v for k, v in terms.items() if not isinstance(v, dict)}


@dataclass(frozen=True)
class TrainOptions:
    """How a model is trained: the arguments of `Noise2Same.train`, which documents them
    (patch and global batch size, the step to stop at, checkpoint and log intervals, seed,
    init_from, tf.distribute strategy, facts recorded in settings.json, a callback after each
    step)."""
    patch_size: Sequence[int]
    batch_size: Optional[int] = None
    steps: int = 50000
    save_steps: int = 100
    log_steps: int = 100
    keep_checkpoints: int = 2
    seed: Optional[int] = None
    init_from: Optional[str] = None
    verbose: bool = True
    strategy: Optional[tf.distribute.Strategy] = None
    sync_batch_norm: bool = False
    record: Optional[Mapping] = None
    on_step: Optional[StepCallback] = None

    def check(self) -> None:
        """ValueError naming the first count out of range."""
        for label in ('batch_size', 'save_steps', 'log_steps', 'steps'):
            value = getattr(self, label)
            if value is not None and int(value) < 1:
                raise ValueError(f"{label} must be a positive integer, got {value}")
        if int(self.keep_checkpoints) < 0:
            raise ValueError(f"keep_checkpoints must be 0 (all) or more, got "
                             f"{self.keep_checkpoints}")


# ---------------------------------------------------------------- one step

def train_step(state: TrainingState, loss: Loss, opt_config: Mapping, features, noise, mask):
    """One training step on one device: returns (terms with 'loss' and 'learning_rate', the raw
    and the masked predictions of the first 3 samples)."""
    with tf.GradientTape() as tape:
        sums, raw_pred, masked_pred = loss.sums(features, noise, mask, True)
        terms = loss.terms(sums)
        value = loss.loss(terms)
        scaled = value * state.loss_scale if state.loss_scale is not None else value
    variables = state.network.trainable_weights
    terms = logged(terms)
    terms.update(loss=value, learning_rate=apply_gradients(
        state, opt_config, tape.gradient(scaled, variables), variables))
    return terms, raw_pred[:3], masked_pred[:3]


def apply_gradients(state: TrainingState, opt_config: Mapping, gradients, variables):
    """One Adam step with the gradients of the (scaled) loss; advances the global step.
    Under mixed_float16 they are unscaled, and a step with Inf or NaN is skipped.
    Returns the learning rate."""
    lr = learning_rate(state.global_step, opt_config)
    if state.loss_scale is None:
        state.optimizer.apply(gradients, variables, lr)
    else:
        gradients = [g / state.loss_scale for g in gradients]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
        tf.cond(finite, lambda: _finite_step(state, gradients, variables, lr),
                lambda: _overflow_step(state))
    state.global_step.assign_add(1)
    return lr


def _finite_step(state, gradients, variables, lr):
    state.optimizer.apply(gradients, variables, lr)
    grow = state.finite_steps + 1 >= LOSS_SCALE['growth_steps']
    state.loss_scale.assign(tf.where(grow, state.loss_scale * 2.0, state.loss_scale))
    state.finite_steps.assign(tf.where(grow, tf.constant(0, tf.int64), state.finite_steps + 1))
    return tf.constant(True)


def _overflow_step(state):
    state.loss_scale.assign(tf.maximum(state.loss_scale / 2.0, 1.0))
    state.finite_steps.assign(0)
    return tf.constant(False)


# ---------------------------------------------------------------- tf.distribute

def distributed_step(state: TrainingState, loss: Loss, opt_config: Mapping, make_batch,
                     batch_size: int):
    """A compiled training step over the replicas of `state.strategy`, given the step.

    Each worker makes the step's global batch once; replica r takes its rows
    [r*b, (r+1)*b) (b = batch_size / replicas). The loss terms are ratios of sums over the
    GLOBAL batch; each replica differentiates sum_k dL/dS_k * s_k (S_k the all-reduced sums,
    s_k its own), so the all-reduced gradients are exactly those of the global loss, for any
    loss of the terms.
    """
    strategy, variables = state.strategy, state.network.trainable_weights
    per_replica = batch_size // strategy.num_replicas_in_sync
    total = tf.distribute.ReduceOp.SUM

    def replica_step(global_batch):
        replica = tf.distribute.get_replica_context()
        first = replica.replica_id_in_sync_group * per_replica
        features, noise, mask = (t[first:first + per_replica] for t in global_batch)
        with tf.GradientTape() as tape:
            sums, raw_pred, masked_pred = loss.sums(features, noise, mask, True)
            if sums.shape.rank == 2:  # one row per image: this replica's rows of the global batch
                sums = tf.pad(sums, [[first, batch_size - first - per_replica], [0, 0]])
            global_sums = replica.all_reduce(total, tf.stop_gradient(sums))
            with tf.GradientTape() as inner:
                inner.watch(global_sums)
                terms = loss.terms(global_sums)
                value = loss.loss(terms)
            weights = tf.stop_gradient(inner.gradient(value, global_sums))
            surrogate = tf.reduce_sum(weights * sums)
            if state.loss_scale is not None:
                surrogate *= state.loss_scale
        gradients = replica.all_reduce(total, tape.gradient(surrogate, variables))
        terms = logged(terms)
        terms['loss'] = value
        batch = (features[:3], noise[:3], mask[:3])
        return gradients, terms, batch, raw_pred[:3], masked_pred[:3]

    @tf.function
    def step_fn(step):
        results = strategy.run(replica_step, args=(make_batch(step),))
        gradients, terms, batch, raw_pred, masked_pred = tf.nest.map_structure(
            lambda value: strategy.experimental_local_results(value)[0], results)
        # in cross-replica context: every copy of a variable gets the same update
        terms['learning_rate'] = apply_gradients(state, opt_config, gradients, variables)
        return (terms, raw_pred, masked_pred), batch
    return step_fn


# ---------------------------------------------------------------- a run

def prepare(state: TrainingState, images, validation, options: TrainOptions, model_dir: str,
            opt_config: Mapping, training: Mapping):
    """Check a run's options against the model's saved run (`training`, settings.json's) and
    the images, move the state into the strategy's scope and load the model directory's
    newest checkpoint (else `init_from`'s weights).
    Returns (options with batch and patch size resolved, the run's record for settings.json,
    the global step to start at, validation images padded for the U-Net or None)."""
    options.check()
    training = run_settings(training, options.batch_size, options.patch_size, options.steps,
                            options.record, model_dir, latest_checkpoint(model_dir) is not None)
    options = replace(options, batch_size=training['batch_size'],
                      patch_size=training['patch_size'])
    if opt_config['lr_schedule'] != 'staircase' and int(options.steps) > \
            opt_config['lr_decay_steps']:
        raise ValueError(f"the {opt_config['lr_schedule']} learning-rate schedule of "
                         f"{model_dir} reaches 0 at step {opt_config['lr_decay_steps']:g}; "
                         f"steps {options.steps} would train at learning rate 0 (train a new "
                         f"model to train longer)")
    check_training_images(images, state.dim, state.in_channels, options.patch_size)
    if validation is not None:
        validation = check_validation(state, validation)
    state.use_strategy(options.strategy, options.sync_batch_norm)
    replicas = state.strategy.num_replicas_in_sync if state.strategy is not None else 1
    if options.batch_size % replicas:
        raise ValueError(f"batch_size {options.batch_size} does not split over {replicas} "
                         f"replicas; use a multiple of {replicas}")
    start = resume(state, model_dir, options.init_from, options.seed, training.get('seed'))
    training = {**training, 'seed': int(state.seed.numpy())}
    if options.steps <= start:
        print(f"nothing to do: {model_dir} is already at step {start} (asked to train to step "
              f"{options.steps}); raise steps to train further")
    return options, training, start, validation


def resume(state: TrainingState, model_dir: str, init_from: Optional[str], seed: Optional[int],
           saved_seed: Optional[int]) -> int:
    """Load the model directory's newest checkpoint (else `init_from`'s weights), set the
    input-pipeline seed (`saved_seed`: one saved before a first checkpoint was written);
    returns the global step to start at."""
    os.makedirs(model_dir, exist_ok=True)
    path = latest_checkpoint(model_dir)
    if path is not None:
        state.restore(path, optimizer=True)
        if not has_optimizer_state(path):
            print(f"note: {path} is weights-only (no optimizer state): training continues from "
                  f"its weights at step {int(state.global_step.numpy())} with a fresh Adam",
                  file=sys.stderr)
    elif init_from is not None:
        source = latest_checkpoint(init_from)
        if source is None:
            raise CheckpointError(f"init_from {init_from} holds no checkpoint")
        state.restore(source, optimizer=False)
    if seed is None and path is None:
        seed = saved_seed
    if seed is not None:
        seed = int(to_builtin(seed))
        if path is not None and not is_tf1_checkpoint(path) and seed != int(state.seed.numpy()):
            raise SettingConflict('seed', seed, int(state.seed.numpy()), model_dir,
                                  where=f"of the checkpoint {path}")
        state.seed.assign(seed)
    elif path is None or is_tf1_checkpoint(path):
        state.seed.assign(int(np.random.SeedSequence().entropy % 2 ** 31))
    return int(state.global_step.numpy())


def run(state: TrainingState, loss: Loss, images, validation, options: TrainOptions,
        start: int, model_dir: str, opt_config: Mapping, mask_perc: float, label: str,
        step_fn: Optional[Callable] = None) -> None:
    """Train from global step `start` to options.steps (`prepare` first). step_fn: the
    compiled one-device step (features, noise, mask) -> `train_step`'s result, else one is
    compiled here."""
    box = mask_box_size(mask_perc)
    seed = int(state.seed.numpy())
    if state.strategy is None:
        step_fn = step_fn or tf.function(lambda *batch: train_step(state, loss, opt_config,
                                                                   *batch))
        batches = ((step_fn(*batch), batch) for batch in training_dataset(
            images, options.patch_size, options.batch_size, box, seed, start, options.steps))
    else:
        step = distributed_step(state, loss, opt_config, batch_maker(
            images, options.patch_size, options.batch_size, box, seed), options.batch_size)
        batches = (step(tf.constant(s, tf.int64)) for s in range(start, options.steps))
    _loop(state, loss, batches, start, options, validation, box, model_dir, label)


def _loop(state: TrainingState, loss: Loss, batches, start: int, options: TrainOptions,
          validation: Optional[np.ndarray], box: int, model_dir: str, label: str) -> None:
    """Run the steps; log every `log_steps`, save and validate every `save_steps` and at the
    end; on KeyboardInterrupt (Ctrl-C, or SIGTERM through n2s_app.cli.run: both wait for the
    end of a step, utils/training/interrupts.py; or its TrainingStopped from options.on_step)
    save the current step and re-raise. In a
    cluster every worker saves (reading distributed variables is collective) but only the
    chief's files are kept."""
    chief, steps = is_chief(options.strategy), options.steps
    save_dir = model_dir if chief else tempfile.mkdtemp(prefix='worker-ckpt-')
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(state=state.variables), save_dir,
                                         max_to_keep=options.keep_checkpoints or None,
                                         checkpoint_name='ckpt')
    new_writer = tf.summary.create_file_writer if chief else (
        lambda folder: tf.summary.create_noop_writer())
    writer = new_writer(model_dir)
    eval_writer = new_writer(os.path.join(model_dir, 'eval'))
    bar = tqdm(total=steps, initial=start, disable=not (options.verbose and chief), unit='step',
               desc=label, dynamic_ncols=True, mininterval=1 if sys.stderr.isatty() else 30)
    saved = start
    with deferred_signals() as stop_if_asked:
        try:
            for (terms, raw_pred, masked_pred), batch in batches:
                step = int(state.global_step.numpy())
                bar.update(1)
                if step % options.log_steps == 0 or step == steps:
                    values = {k: float(v) for k, v in terms.items()}
                    bar.set_postfix({k[:3]: f'{values[k]:.4f}' for k in ('loss',) + TERMS})
                    with writer.as_default(step=step):
                        for key, value in values.items():
                            tf.summary.scalar(f'loss_metric/{key}' if key in TERMS else key,
                                              value)
                        image_summaries(state.dim, *batch, raw_pred, masked_pred)
                if step % options.save_steps == 0 or step == steps:
                    save_checkpoint(state, manager, step, model_dir)
                    saved = step
                    if validation is not None:
                        _validate(state, loss, validation, box, eval_writer, step,
                                  bar if chief else None)
                stop_if_asked()
                if options.on_step:
                    options.on_step(step, steps)
        except KeyboardInterrupt:
            step = int(state.global_step.numpy())
            if step > saved:
                save_checkpoint(state, manager, step, model_dir)
            bar.write(f'interrupted at step {step}; checkpoint {state.loaded} holds it',
                      file=sys.stderr)
            raise
        finally:
            bar.close()
            writer.flush()
            eval_writer.flush()
            if not chief:
                shutil.rmtree(save_dir, ignore_errors=True)


def save_checkpoint(state: TrainingState, manager: tf.train.CheckpointManager, step: int,
                    model_dir: str) -> None:
    """Write the checkpoint of `step`; on failure (e.g. a full disk) remove its partial
    files and say which earlier checkpoint is intact."""
    try:
        written = manager.save(checkpoint_number=step)
        state.loaded = os.path.join(model_dir, os.path.basename(written))
    except Exception as error:  # OSError, or tf.errors.* wrapping one
        for leftover in tf.io.gfile.glob(os.path.join(manager.directory, f'ckpt-{step}.*')):
            tf.io.gfile.remove(leftover)
        previous = latest_checkpoint(model_dir) or 'no earlier checkpoint'
        first = str(error).strip().splitlines()[0] if str(error).strip() else ''
        raise CheckpointError(f"could not write the checkpoint of step {step} "
                              f"({type(error).__name__}: {first}); {previous} is intact"
                              ) from None


# ---------------------------------------------------------------- validation and summaries

def check_validation(state: TrainingState, validation) -> np.ndarray:
    """Validation images (N, spatial..., C) as float32, reflect-padded to spatial sizes the
    U-Net takes (multiples of 2**(depth-1)); wrong shapes and NaN/Inf are a ValueError."""
    validation = np.asarray(validation, np.float32)
    if validation.ndim != state.dim + 2 or validation.shape[-1] != state.in_channels:
        raise ValueError(f"validation has shape {validation.shape}; expected (N, "
                         f"{state.dim} spatial axes..., {state.in_channels})")
    if not np.all(np.isfinite(validation)):
        raise ValueError(f"validation holds {np.size(validation) - np.isfinite(validation).sum()}"
                         f" NaN or Inf values")
    return PadAndCropResizer().before(validation, 2 ** (state.network.unet.depth - 1),
                                      exclude=[0, -1])


def validation_scores(state: TrainingState, loss: Loss, validation: np.ndarray,
                      box: int) -> Dict[str, float]:
    """Mean loss terms over validation batches of 4, BN in inference mode, fixed masks."""
    sums: Dict[str, list] = {}
    for features, noise, mask in validation_batches(validation, box, int(state.seed.numpy())):
        terms, _, _ = loss.terms_and_loss(features, noise, mask, training=False)
        for key, value in terms.items():
            sums.setdefault(key, []).append(float(value))
    return {k: float(np.mean(v)) for k, v in sums.items()}


def _validate(state, loss, validation, box, writer, step: int, bar) -> None:
    scores = validation_scores(state, loss, validation, box)
    with writer.as_default(step=step):
        for key, value in scores.items():
            tf.summary.scalar(f'loss_metric/{key}', value)
    if bar is not None:
        bar.write(f'step {step}: validation '
                  + ', '.join(f'{k} {v:.5f}' for k, v in scores.items()))


def image_summaries(dim: int, features, noise, mask, raw_pred, masked_pred) -> None:
    """The original's six image summaries (3D: maximum projection along Z), 3 images each."""
    features, mask = features[:3], mask[:3]
    images = {'1_inputs': features, '2_raw_predictions': raw_pred, '3_mask': mask,
              '4_masked_predictions': masked_pred, '5_difference': raw_pred - masked_pred,
              '6_rec_error': masked_pred - features}
    for name, image in images.items():
        if dim == 3:
            image = tf.reduce_max(image, axis=1)
        if image.shape[-1] not in (1, 3, 4):
            image = image[..., :1]
        low = tf.reduce_min(image, axis=[1, 2, 3], keepdims=True)
        high = tf.reduce_max(image, axis=[1, 2, 3], keepdims=True)
        tf.summary.image(name, (image - low) / tf.maximum(high - low, 1e-12), max_outputs=3)
