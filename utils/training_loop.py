"""The loop that fits a Noise2Same model: the training step (with loss scaling and
tf.distribute), logging, validation, checkpoint writing and interruption.

`Noise2Same.train` hands its work to `fit`; the model supplies what is computed (the loss of a
batch, `model.loss_sums` / `model.loss`) and its training state (`model.optimizer`,
`model.global_step`, `model.seed`, `model.loss_scale`); this module runs it step by step.
Shapes: batches are (B, spatial..., C) float32 (features, masking noise, 0/1 mask).
"""
import os
import shutil
import sys
import tempfile
from contextlib import nullcontext
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from .checkpoint_utils import (CheckpointError, SETTINGS_FILE, SettingConflict, backup_tf1_state,
                               has_optimizer_state, is_tf1_checkpoint, latest_checkpoint,
                               to_builtin, write_json_atomic)
from .distribute import is_chief
from .predict_utils import PadAndCropResizer
from .train_utils import (batch_maker, check_training_images, learning_rate, mask_box_size,
                          training_dataset, validation_batches)

# mixed_float16: the loss is multiplied by the scale; a step whose gradients overflow is skipped
# and halves it, `growth_steps` finite steps in a row double it (Keras' LossScaleOptimizer rule)
LOSS_SCALE = {'initial': 2.0 ** 15, 'growth_steps': 2000}
TERMS = ('reconstruction', 'invariance', 'blind_spot')
PER_IMAGE = 'per_image'  # the key of per-image terms (Noise2SamePro per_image), not logged


# ---------------------------------------------------------------- one step

def train_step(model, features, noise, mask):
    """One training step on one device: returns (terms with 'loss' and 'learning_rate', the raw
    and the masked predictions of the first 3 samples)."""
    with tf.GradientTape() as tape:
        terms, raw_pred, masked_pred = model.loss_terms(features, noise, mask, training=True)
        loss = model.loss(terms)
        terms.pop(PER_IMAGE, None)
        scaled = loss * model.loss_scale if model.loss_scale is not None else loss
    variables = model.model.trainable_weights
    terms.update(loss=loss, learning_rate=apply_gradients(
        model, tape.gradient(scaled, variables), variables))
    return terms, raw_pred[:3], masked_pred[:3]


def apply_gradients(model, gradients, variables) -> tf.Tensor:
    """One Adam step with the gradients of the (scaled) loss; advances the global step.
    Under mixed_float16 they are unscaled, and a step with Inf or NaN is skipped.
    Returns the learning rate."""
    lr = learning_rate(model.global_step, model.opt_config)
    if model.loss_scale is None:
        model.optimizer.apply(gradients, variables, lr)
    else:
        gradients = [g / model.loss_scale for g in gradients]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
        tf.cond(finite, lambda: _finite_step(model, gradients, variables, lr),
                lambda: _overflow_step(model))
    model.global_step.assign_add(1)
    return lr


def _finite_step(model, gradients, variables, lr):
    model.optimizer.apply(gradients, variables, lr)
    grow = model.finite_steps + 1 >= LOSS_SCALE['growth_steps']
    model.loss_scale.assign(tf.where(grow, model.loss_scale * 2.0, model.loss_scale))
    model.finite_steps.assign(tf.where(grow, tf.constant(0, tf.int64), model.finite_steps + 1))
    return tf.constant(True)


def _overflow_step(model):
    model.loss_scale.assign(tf.maximum(model.loss_scale / 2.0, 1.0))
    model.finite_steps.assign(0)
    return tf.constant(False)


# ---------------------------------------------------------------- tf.distribute

def use_strategy(model, strategy: Optional[tf.distribute.Strategy], sync_batch_norm: bool) -> None:
    """Re-create the model's variables in `strategy`'s scope (None: one device), keeping values."""
    if strategy is not model.strategy:
        values = {name: variable.numpy() for name, variable in model.state.items()}
        with strategy.scope() if strategy is not None else nullcontext():
            model.build()
        for name, variable in model.state.items():
            variable.assign(values[name])
        model.strategy = strategy
    for layer in model.model._flatten_layers():
        if hasattr(layer, 'synchronized'):
            layer.synchronized = sync_batch_norm


def distributed_step(model, make_batch, batch_size: int):
    """A compiled training step over the replicas of `model.strategy`, given the step.

    Each worker makes the step's global batch once; replica r takes its rows
    [r*b, (r+1)*b) (b = batch_size / replicas). The loss terms are ratios of sums over the
    GLOBAL batch; each replica differentiates sum_k dL/dS_k * s_k (S_k the all-reduced sums,
    s_k its own), so the all-reduced gradients are exactly those of the global loss, for any
    loss of the terms.
    """
    strategy, variables = model.strategy, model.model.trainable_weights
    per_replica = batch_size // strategy.num_replicas_in_sync
    total = tf.distribute.ReduceOp.SUM

    def replica_step(global_batch):
        replica = tf.distribute.get_replica_context()
        first = replica.replica_id_in_sync_group * per_replica
        features, noise, mask = (t[first:first + per_replica] for t in global_batch)
        with tf.GradientTape() as tape:
            sums, raw_pred, masked_pred = model.loss_sums(features, noise, mask, training=True)
            if sums.shape.rank == 2:  # one row per image: this replica's rows of the global batch
                sums = tf.pad(sums, [[first, batch_size - first - per_replica], [0, 0]])
            global_sums = replica.all_reduce(total, tf.stop_gradient(sums))
            with tf.GradientTape() as inner:
                inner.watch(global_sums)
                terms = model.terms_from_sums(global_sums)
                loss = model.loss(terms)
                terms.pop(PER_IMAGE, None)
            weights = tf.stop_gradient(inner.gradient(loss, global_sums))
            surrogate = tf.reduce_sum(weights * sums)
            if model.loss_scale is not None:
                surrogate *= model.loss_scale
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
        terms['learning_rate'] = apply_gradients(model, gradients, variables)
        return (terms, raw_pred, masked_pred), batch
    return step_fn


# ---------------------------------------------------------------- the loop

def fit(model, images, patch_size: Sequence[int], validation=None,
        batch_size: Optional[int] = None, save_steps: int = 100, log_steps: int = 100,
        steps: int = 50000, seed: Optional[int] = None, init_from: Optional[str] = None,
        verbose: bool = True, strategy: Optional[tf.distribute.Strategy] = None,
        sync_batch_norm: bool = False, record: Optional[Dict] = None,
        keep_checkpoints: int = 2) -> int:
    """Train `model` until global step `steps`; see `Noise2Same.train` for the arguments.
    Returns the number of steps trained (0: nothing to do)."""
    batch_size, patch_size = run_settings(model, batch_size, patch_size, steps, record)
    for label, value in (('batch_size', batch_size), ('save_steps', save_steps),
                         ('log_steps', log_steps), ('steps', steps)):
        if int(value) < 1:
            raise ValueError(f"{label} must be a positive integer, got {value}")
    if int(keep_checkpoints) < 0:
        raise ValueError(f"keep_checkpoints must be 0 (all) or more, got {keep_checkpoints}")
    check_training_images(images, model.dim, model.in_channels, patch_size)
    if validation is not None:
        validation = check_validation(model, validation)
    use_strategy(model, strategy, sync_batch_norm)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    if batch_size % replicas:
        raise ValueError(f"batch_size {batch_size} does not split over {replicas} replicas; "
                         f"use a multiple of {replicas}")
    start = _resume(model, init_from, seed)
    model.training['seed'] = int(model.seed.numpy())
    if steps <= start:
        print(f"nothing to do: {model.model_dir} is already at step {start} (asked to train "
              f"to step {steps}); raise steps to train further")
        return 0
    model.before_training(images, patch_size, batch_size)
    chief = is_chief(strategy)
    if chief:
        backup_tf1_state(model.model_dir)
        write_json_atomic(os.path.join(model.model_dir, SETTINGS_FILE), model.settings())
    box = mask_box_size(model.mask_perc)
    if strategy is None:
        batches = ((model._train_step(*batch), batch) for batch in training_dataset(
            images, patch_size, batch_size, box, int(model.seed.numpy()), start, steps))
    else:
        step_fn = distributed_step(model, batch_maker(
            images, patch_size, batch_size, box, int(model.seed.numpy())), batch_size)
        batches = (step_fn(tf.constant(s, tf.int64)) for s in range(start, steps))
    _loop(model, batches, start, steps, save_steps, log_steps, validation, box, chief, verbose,
          keep_checkpoints)
    return steps - start


def run_settings(model, batch_size: Optional[int], patch_size: Sequence[int], steps: int,
                 record: Optional[Dict]):
    """Check batch_size and patch_size against those the model saved (None: the saved batch,
    else 64) and the schedule's end against `steps`; note the run in `model.training`.
    Returns (batch_size, patch_size as a list of ints)."""
    saved = model.training
    patch_size = [int(p) for p in to_builtin(list(patch_size))]
    batch_size = int(to_builtin(batch_size)) if batch_size is not None else \
        saved.get('batch_size', 64)
    for key, value in (('batch_size', batch_size), ('patch_size', patch_size)):
        if key in saved and saved[key] != value and latest_checkpoint(model.model_dir):
            raise SettingConflict(key, value, saved[key], model.model_dir)
    config = model.opt_config
    if config['lr_schedule'] != 'staircase' and int(steps) > config['lr_decay_steps']:
        raise ValueError(f"the {config['lr_schedule']} learning-rate schedule of "
                         f"{model.model_dir} reaches 0 at step {config['lr_decay_steps']:g}; "
                         f"steps {steps} would train at learning rate 0 (train a new model to "
                         f"train longer)")
    model.training = {**saved, **to_builtin(dict(record or {})), 'batch_size': batch_size,
                      'patch_size': patch_size, 'steps': int(steps)}
    return batch_size, patch_size


def _resume(model, init_from: Optional[str], seed: Optional[int]) -> int:
    """Load the model directory's newest checkpoint (else `init_from`'s weights), set the
    input-pipeline seed; returns the global step to start at."""
    os.makedirs(model.model_dir, exist_ok=True)
    path = latest_checkpoint(model.model_dir)
    if path is not None:
        model.restore(path, optimizer=True)
        if not has_optimizer_state(path):
            print(f"note: {path} is weights-only (no optimizer state): training continues from "
                  f"its weights at step {int(model.global_step.numpy())} with a fresh Adam",
                  file=sys.stderr)
    elif init_from is not None:
        source = latest_checkpoint(init_from)
        if source is None:
            raise CheckpointError(f"init_from {init_from} holds no checkpoint")
        model.restore(source, optimizer=False)
    if seed is None and path is None:
        seed = model.training.get('seed')  # saved before a first checkpoint was written
    if seed is not None:
        seed = int(to_builtin(seed))
        if path is not None and not is_tf1_checkpoint(path) and seed != int(model.seed.numpy()):
            raise SettingConflict('seed', seed, int(model.seed.numpy()), model.model_dir,
                                  where=f"of the checkpoint {path}")
        model.seed.assign(seed)
    elif path is None or is_tf1_checkpoint(path):
        model.seed.assign(int(np.random.SeedSequence().entropy % 2 ** 31))
    return int(model.global_step.numpy())


def _loop(model, batches, start: int, steps: int, save_steps: int, log_steps: int,
          validation: Optional[np.ndarray], box: int, chief: bool, verbose: bool,
          keep_checkpoints: int = 2) -> None:
    """Run the steps; log every `log_steps`, save and validate every `save_steps` and at the
    end; on KeyboardInterrupt save the current step and re-raise. In a cluster every worker
    saves (reading distributed variables is collective) but only the chief's files are kept."""
    save_dir = model.model_dir if chief else tempfile.mkdtemp(prefix='worker-ckpt-')
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(state=model.state), save_dir,
                                         max_to_keep=keep_checkpoints or None,
                                         checkpoint_name='ckpt')
    new_writer = tf.summary.create_file_writer if chief else (
        lambda folder: tf.summary.create_noop_writer())
    writer = new_writer(model.model_dir)
    eval_writer = new_writer(os.path.join(model.model_dir, 'eval'))
    bar = tqdm(total=steps, initial=start, disable=not (verbose and chief), unit='step',
               desc=f'{type(model).__name__} {model.name}', dynamic_ncols=True,
               mininterval=1 if sys.stderr.isatty() else 30)
    saved = start
    try:
        for (terms, raw_pred, masked_pred), batch in batches:
            step = int(model.global_step.numpy())
            bar.update(1)
            if step % log_steps == 0 or step == steps:
                values = {k: float(v) for k, v in terms.items()}
                bar.set_postfix({k[:3]: f'{values[k]:.4f}' for k in ('loss',) + TERMS})
                with writer.as_default(step=step):
                    for key, value in values.items():
                        tf.summary.scalar(f'loss_metric/{key}' if key in TERMS else key, value)
                    image_summaries(model.dim, *batch, raw_pred, masked_pred)
            if step % save_steps == 0 or step == steps:
                save_checkpoint(model, manager, step)
                saved = step
                if validation is not None:
                    _validate(model, validation, box, eval_writer, step, bar if chief else None)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through utils.cli.run
        step = int(model.global_step.numpy())
        if step > saved:
            save_checkpoint(model, manager, step)
        bar.write(f'interrupted at step {step}; checkpoint {model.loaded} holds it',
                  file=sys.stderr)
        raise
    finally:
        bar.close()
        writer.flush()
        eval_writer.flush()
        if not chief:
            shutil.rmtree(save_dir, ignore_errors=True)


def save_checkpoint(model, manager: tf.train.CheckpointManager, step: int) -> None:
    """Write the checkpoint of `step`; on failure (e.g. a full disk) remove its partial
    files and say which earlier checkpoint is intact."""
    try:
        written = manager.save(checkpoint_number=step)
        model.loaded = os.path.join(model.model_dir, os.path.basename(written))
    except Exception as error:  # OSError, or tf.errors.* wrapping one
        for leftover in tf.io.gfile.glob(os.path.join(manager.directory, f'ckpt-{step}.*')):
            tf.io.gfile.remove(leftover)
        previous = latest_checkpoint(model.model_dir) or 'no earlier checkpoint'
        first = str(error).strip().splitlines()[0] if str(error).strip() else ''
        raise CheckpointError(f"could not write the checkpoint of step {step} "
                              f"({type(error).__name__}: {first}); {previous} is intact"
                              ) from None


# ---------------------------------------------------------------- validation and summaries

def check_validation(model, validation) -> np.ndarray:
    """Validation images (N, spatial..., C) as float32, reflect-padded to spatial sizes the
    U-Net takes (multiples of 2**(depth-1)); wrong shapes and NaN/Inf are a ValueError."""
    validation = np.asarray(validation, np.float32)
    if validation.ndim != model.dim + 2 or validation.shape[-1] != model.in_channels:
        raise ValueError(f"validation has shape {validation.shape}; expected (N, "
                         f"{model.dim} spatial axes..., {model.in_channels})")
    if not np.all(np.isfinite(validation)):
        raise ValueError(f"validation holds {np.size(validation) - np.isfinite(validation).sum()}"
                         f" NaN or Inf values")
    return PadAndCropResizer().before(validation, 2 ** (model.net.depth - 1), exclude=[0, -1])


def validation_scores(model, validation: np.ndarray, box: Optional[int] = None) -> Dict[str, float]:
    """Mean loss terms over validation batches of 4, BN in inference mode, fixed masks."""
    box = box or mask_box_size(model.mask_perc)
    sums: Dict[str, list] = {}
    for features, noise, mask in validation_batches(validation, box, int(model.seed.numpy())):
        terms, _, _ = model.loss_terms(features, noise, mask, training=False)
        terms['loss'] = model.loss(terms)
        terms.pop(PER_IMAGE, None)
        for key, value in terms.items():
            sums.setdefault(key, []).append(float(value))
    return {k: float(np.mean(v)) for k, v in sums.items()}


def _validate(model, validation, box, writer, step: int, bar) -> None:
    scores = validation_scores(model, validation, box)
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
