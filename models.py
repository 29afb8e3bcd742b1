"""Noise2Same and Noise2SamePro: the method of the two papers (masking, the loss terms, the
loss, N2SP's guard) over the U-Net of network.py, and the model class users call, a facade over
utils/ (settings, training state and loop, prediction, checkpoints and export; docs/layers.md).

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
from typing import Dict, Mapping, Optional, Sequence

from utils.core.tf_setup import import_tensorflow

tf = import_tensorflow()  # quietly, once; oneDNN as set by the caller (utils/core/tf_setup.py)

import numpy as np  # noqa: E402

from network_configure import PRECISIONS  # noqa: E402
from utils.core import settings as model_settings  # noqa: E402
from utils.core.errors import CheckpointError  # noqa: E402
from utils.core.noise import haar_noise_std  # noqa: E402
from utils.data.pipeline import donut_average, mask_box_size, training_dataset  # noqa: E402
from utils.model_io.checkpoints import (  # noqa: E402
    backup_tf1_state, latest_checkpoint, saved_settings)
from utils.model_io.serving import export as export_saved_model  # noqa: E402
from utils.prediction.predictor import PredictOptions, Predictor  # noqa: E402
from utils.prediction.tiling import PadAndCropResizer  # noqa: E402
from utils.training import loop  # noqa: E402
from utils.training.distribute import is_chief  # noqa: E402
from utils.training.state import TrainingState  # noqa: E402

training_config = model_settings.TRAINING_CONFIG  # the original's learning-rate schedule
PER_IMAGE = 'per_image'  # the key of per-image terms (Noise2SamePro per_image)


def safe_sqrt(x: tf.Tensor) -> tf.Tensor:
    """sqrt(x) for x > 0, else 0 with a zero gradient (sqrt'(0) is infinite: a batch without
    masked pixels would otherwise turn the loss or its gradient into NaN)."""
    positive = x > 0
    return tf.where(positive, tf.sqrt(tf.where(positive, x, tf.ones_like(x))), tf.zeros_like(x))


def noise2same_loss(terms: Mapping[str, tf.Tensor], lmbd: float) -> tf.Tensor:
    """Noise2Same's loss rec + lmbd * sqrt(inv) of the loss terms (REFERENCE.md section 1)."""
    return terms['reconstruction'] + lmbd * safe_sqrt(terms['invariance'])


def batch_sums(features, mask, raw_pred, masked_pred, per_image: bool = False) -> tf.Tensor:
    """The five sums of `Noise2Same.loss_sums` over the batch (5,), or with per_image over each
    image's own pixels (B, 5)."""
    axes = list(range(1, features.shape.rank)) if per_image else None
    count = (tf.cast(tf.size(features), tf.float32) if not per_image else
             tf.fill(tf.shape(features)[:1], tf.cast(tf.size(features[0]), tf.float32)))
    return tf.stack([tf.reduce_sum(tf.square(raw_pred - features), axes), count,
                     tf.reduce_sum(tf.square(raw_pred - masked_pred) * mask, axes),
                     tf.reduce_sum(tf.square(features - masked_pred) * mask, axes),
                     tf.reduce_sum(mask, axes)], axis=-1)

def terms_from_sums(sums: tf.Tensor) -> Dict[str, tf.Tensor]:
    """{'reconstruction', 'invariance', 'blind_spot'}: the means of `batch_sums`;
    from per-image rows (B, 6) (Noise2SamePro per_image) the batch's, and under
    PER_IMAGE each image's reconstruction, invariance and estimated noise std (B,)."""
    if sums.shape.rank == 2:
        terms = terms_from_sums(tf.reduce_sum(sums[:, :5], 0))
        terms[PER_IMAGE] = {'reconstruction': sums[:, 0] / sums[:, 1],
                            'invariance': sums[:, 2] / tf.maximum(sums[:, 4], 1.0),
                            'noise_std': sums[:, 5]}
        return terms
    n_masked = tf.maximum(sums[4], 1.0)
    return {'reconstruction': sums[0] / sums[1], 'invariance': sums[2] / n_masked,
            'blind_spot': sums[3] / n_masked}


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
        'lr_schedule': 'staircase', 'cosine' or 'linear'; see utils.training.optimizer).
        Default: the saved model's, else `training_config`.
    net_config : dict merged over `network_configure.conf_unet` (and `conf_basic_ops`).
        Default: the saved model's, else the defaults (width 96).
    normalisation : how the training images were normalised, and so how `predict` normalises
        an image unless given im_mean and im_std: 'image' (its mean and std over all channels;
        the original's prediction, and what original TF1 checkpoints get) or 'channel' (each
        channel by its own, as ImageNet training). Default: the saved model's, else 'image'.
    precision : 'float32' (default, as the original), 'mixed_bfloat16' (CPU or GPU) or
        'mixed_float16' (GPU; loss scaling): 16-bit convolutions; a run-time choice, not saved.

    An existing model keeps what settings.json saved (utils/core/settings.py, where every
    default is): an argument left out (None) means the saved value, and an explicit one that
    differs from it (architecture, lmbd, masking, mask_perc, opt_config) raises CheckpointError.
    Numbers may be Python or numpy scalars.
    """

    def __init__(self, base_dir: str, name: str, dim: Optional[int] = None,
                 in_channels: Optional[int] = None, lmbd: Optional[float] = None,
                 masking: Optional[str] = None, mask_perc: Optional[float] = None,
                 opt_config: Optional[Mapping] = None, net_config: Optional[Mapping] = None,
                 precision: str = 'float32', normalisation: Optional[str] = None):
        self.base_dir, self.name = base_dir, name
        self.model_dir = os.path.join(base_dir, name)
        self.saved = saved_settings(self.model_dir)
        resolved = model_settings.resolve_model(
            {'dim': dim, 'in_channels': in_channels, 'lmbd': lmbd, 'masking': masking,
             'mask_perc': mask_perc, 'normalisation': normalisation, 'net_config': net_config,
             'opt_config': opt_config}, self.saved, self.model_dir)
        self.dim, self.in_channels = resolved['dim'], resolved['in_channels']
        self.masking, self.lmbd, self.mask_perc = (resolved[k] for k in (
            'masking', 'lmbd', 'mask_perc'))
        self.normalisation = resolved['normalisation']
        self.net_config, self.opt_config = resolved['net_config'], resolved['opt_config']
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.training: Dict = dict(self.saved.get('training', {}))  # batch, patch, steps, data
        self.build()

    def build(self) -> None:
        """Create the network and the training state (optimizer, global step, input-pipeline
        seed, loss scale), all of which a checkpoint holds (utils/training/state.py)."""
        self.train_state = TrainingState(self.dim, self.in_channels, self.net_config,
                                         self.precision)
        self._loss = loop.Loss(self.loss_sums, terms_from_sums, self.loss)
        self._train_step_fn = lambda *batch: loop.train_step(self.train_state, self._loss,
                                                             self.opt_config, *batch)
        self._compiled, self._predictor = None, None

    # the training state's parts, by the names the original's users know
    model = property(lambda self: self.train_state.network, doc='the Keras DenoisingNetwork')
    net = property(lambda self: self.train_state.network.unet, doc='its U-Net')
    state = property(lambda self: self.train_state.variables, doc='variables by TF1 name')
    optimizer = property(lambda self: self.train_state.optimizer)
    global_step = property(lambda self: self.train_state.global_step)
    seed = property(lambda self: self.train_state.seed)
    loss_scale = property(lambda self: self.train_state.loss_scale)
    finite_steps = property(lambda self: self.train_state.finite_steps)
    strategy = property(lambda self: self.train_state.strategy)
    loaded = property(lambda self: self.train_state.loaded, doc='the checkpoint loaded')

    @property
    def predictor(self) -> Predictor:
        """The prediction of the network as it is now (rebuilt with it, e.g. by a strategy)."""
        if self._predictor is None or self._predictor.source is not self.model:
            self._predictor = Predictor.of_keras(self.model, self.dim, self.in_channels,
                                                 2 ** self.net.depth,
                                                 per_channel=self.normalisation == 'channel')
        return self._predictor

    @property
    def _train_step(self):
        """The compiled one-device training step of the network as it is now."""
        if self._compiled is None or self._compiled[0] is not self.model:
            self._compiled = (self.model, tf.function(self._train_step_fn))
        return self._compiled[1]

    # ---------------------------------------------------------------- settings

    def settings(self) -> dict:
        """What settings.json records: enough to rebuild this model for prediction."""
        keys = ('dim', 'in_channels', 'masking', 'lmbd', 'mask_perc', 'normalisation',
                'net_config', 'opt_config', 'training')
        return {'class': type(self).__name__, **{key: getattr(self, key) for key in keys}}

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
        return batch_sums(features, mask, raw_pred, masked_pred), raw_pred, masked_pred

    def loss_terms(self, features, noise, mask, training: bool):
        """The three terms of one batch: ({'reconstruction', 'invariance', 'blind_spot'},
        raw prediction, masked prediction); see `loss_sums`."""
        sums, raw_pred, masked_pred = self.loss_sums(features, noise, mask, training)
        return terms_from_sums(sums), raw_pred, masked_pred

    def loss(self, terms: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """rec + lmbd * sqrt(inv), lmbd = 2 when not given."""
        return noise2same_loss(terms, 2.0 if self.lmbd is None else float(self.lmbd))

    def compute_losses(self, features, noise, mask, training: bool = False) -> Dict[str, float]:
        """The loss and its terms ('loss', 'reconstruction', ...; floats) on one given batch
        (B, spatial..., C) from the newest checkpoint; training=True normalises with batch
        statistics (as in a training step) but updates nothing."""
        self._restore_latest()
        return self._current_losses(features, noise, mask, training)

    def _current_losses(self, features, noise, mask, training: bool) -> Dict[str, float]:
        """`compute_losses` with the weights the variables hold now."""
        args = [tf.convert_to_tensor(np.asarray(a, np.float32)) for a in (features, noise, mask)]
        with self.train_state.frozen_statistics():
            terms, _, _ = self.loss_terms(*args, training=training)
            terms['loss'] = self.loss(terms)
        terms.pop(PER_IMAGE, None)
        return {k: float(v) for k, v in terms.items()}

    # ---------------------------------------------------------------- checkpoints

    def restore(self, path: str, optimizer: bool = True) -> None:
        """Load a checkpoint (TF1 or TF2 prefix): weights and BN statistics, and with `optimizer`
        the Adam slots, beta powers, global step and input-pipeline seed it holds."""
        self.train_state.restore(path, optimizer)

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
              keep_checkpoints: int = 2, on_step: Optional[loop.StepCallback] = None) -> int:
        """Train until global step `steps`, resuming from the model directory's newest checkpoint
        (utils/training/loop.py; `TrainOptions` there holds the options below).

        Parameters
        ----------
        source_lst : training images, (N, spatial..., C) array or list of (spatial..., C)
            arrays (sizes may differ; each at least `patch_size`), normalised by the caller.
        patch_size : spatial size of the training patches, e.g. [64, 64] or [16, 64, 64].
        validation : optional (N, spatial..., C) array; its loss terms (BN in inference mode)
            are logged after each checkpoint, into the model directory's 'eval' folder.
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
        strategy, sync_batch_norm : a tf.distribute.Strategy (None: one device) over whose
            replicas the global batch is split (the loss is the global batch's; in a cluster
            only the chief writes); sync_batch_norm: batch statistics all-reduced over them.
        record, on_step : facts for settings.json's 'training'; f(step, steps) after each step.

        Checkpoints every `save_steps` (the newest `keep_checkpoints`; 0: all), at the end and on
        KeyboardInterrupt (then re-raised); TensorBoard scalars every `log_steps`.
        Returns the number of steps trained (0: nothing to do).
        """
        options = loop.TrainOptions(patch_size, batch_size, steps, save_steps, log_steps,
                                    keep_checkpoints, seed, init_from, verbose, strategy,
                                    sync_batch_norm, record, on_step)
        options, self.training, start, validation = loop.prepare(
            self.train_state, source_lst, validation, options, self.model_dir, self.opt_config,
            self.training)
        if options.steps <= start:
            return 0
        self.before_training(source_lst, options.patch_size, options.batch_size)
        if is_chief(options.strategy):
            backup_tf1_state(self.model_dir)
            model_settings.write_settings(self.model_dir, self.settings())
        loop.run(self.train_state, self._loss, source_lst, validation, options, start,
                 self.model_dir, self.opt_config, self.mask_perc,
                 f'{type(self).__name__} {self.name}',
                 self._train_step if options.strategy is None else None)
        return options.steps - start

    def before_training(self, images, patch_size: Sequence[int], batch_size: int) -> None:
        """Called by the training loop once the checkpoint is loaded, before the first step."""

    # ---------------------------------------------------------------- prediction

    def restored_predictor(self, checkpoint_path: Optional[str] = None) -> Predictor:
        """The predictor of the newest (or the given) checkpoint's weights."""
        self._restore_latest(checkpoint_path)
        return self.predictor

    def predict(self, image: np.ndarray, resizer: Optional[PadAndCropResizer] = None,
                checkpoint_path: Optional[str] = None, im_mean=None, im_std=None,
                tta: bool = False, refine: bool = False) -> np.ndarray:
        """Denoise one image: (spatial...) for one channel, or (spatial..., C).

        Normalised by its own mean and std (per channel for normalisation='channel') unless
        given (scalars, or per channel; either may be given alone); reflect-padded
        to multiples of 2**depth, run with moving BN statistics, cropped and de-normalised.
        tta: average over the 8 flips and 90-degree rotations (8x the time).
        refine: put back the signal in what the network removed (utils/prediction/refine.py: a
        Wiener filter at the image's estimated noise level, per channel; not in the original).
        Returns float32 of the input's shape.
        """
        return self.restored_predictor(checkpoint_path).predict(
            image, PredictOptions(tta=tta, refine=refine), im_mean, im_std, resizer)

    def batch_predict(self, images: np.ndarray, resizer: Optional[PadAndCropResizer] = None,
                      checkpoint_path: Optional[str] = None, im_mean=None, im_std=None,
                      batch_size: int = 32) -> np.ndarray:
        """Denoise a stack of equally sized images: (N, spatial...) or (N, spatial..., C),
        normalised together by the stack's mean and std unless given."""
        return self.restored_predictor(checkpoint_path).batch_predict(images, im_mean, im_std,
                                                                      resizer, batch_size)

    def crop_predict(self, image: np.ndarray, size: int, margin: int,
                     resizer: Optional[PadAndCropResizer] = None,
                     checkpoint_path: Optional[str] = None, im_mean=None, im_std=None,
                     batch_size: int = 4, tta: bool = False, refine: bool = False) -> np.ndarray:
        """Denoise a large image ((spatial...[, C]) as in `predict`) tile by tile: the last two
        spatial axes in size x size tiles overlapping by 2*margin, of which each keeps its
        centre; normalised and refined as a whole."""
        options = PredictOptions(tta=tta, refine=refine, tile_size=size, margin=margin,
                                 batch_size=batch_size)
        return self.restored_predictor(checkpoint_path).crop_predict(image, options, im_mean,
                                                                     im_std, resizer)

    # ---------------------------------------------------------------- export

    def export(self, path: str, checkpoint_path: Optional[str] = None) -> str:
        """Write a SavedModel that needs neither this repository nor Keras to run; its
        `serving_default` signature maps 'image' (spatial..., C) float32 to {'denoised': same
        shape} (utils/model_io/serving.py). An existing `path` is an error."""
        self._restore_latest(checkpoint_path)
        return export_saved_model(self.model, self.dim, self.in_channels, 2 ** self.net.depth,
                                  path, per_channel=self.normalisation == 'channel')

    def export_checkpoint(self, folder: str, checkpoint_path: Optional[str] = None) -> str:
        """Write a weights-only model folder (no Adam slots: a third of the size) that predicts,
        exports and initialises training exactly as the full one; training in it continues with
        a fresh optimizer. An existing `folder` is an error (utils/training/state.py)."""
        path = checkpoint_path or latest_checkpoint(self.model_dir)
        if path is None:
            raise CheckpointError(f"no checkpoint in {self.model_dir} to export")
        saved = model_settings.read_settings(self.model_dir) or self.settings()
        return self.train_state.export_weights(path, folder, saved)


class Noise2SamePro(Noise2Same):
    """Noise2SamePro: lmbd replaced by 2 * sqrt(rec), an estimate of 2 * sigma from the data.

    loss = rec + 2 * sigma * sqrt(inv), sigma = sqrt(rec). With sigma_grad=True (the original)
    the gradient flows through the sigma estimate too; False stops it there. Train it on a
    directory where Noise2Same trained first to run the original two-phase schedule.

    guard=True (this port's default; False is the original loss) floors sigma at
    sigma_floor = sqrt(mean rec) over GUARD_BATCHES training batches when N2SP training starts
    (saved, kept on resume): that stops the collapse to the identity (rec -> 0, sigma -> 0) seen
    from an N2S model trained with a small lmbd. sigma_grad and guard default to the saved
    model's (an N2SP one), else True.

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
            self.saved = {k: v for k, v in self.saved.items() if k not in model_settings.PRO_KEYS}
        pro = {key: model_settings.resolve(key, value, self.saved, self.model_dir) for key, value
               in (('sigma_grad', sigma_grad), ('guard', guard), ('per_image', per_image),
                   ('sigma_floor', sigma_floor))}
        self.sigma_grad, self.guard = bool(pro['sigma_grad']), bool(pro['guard'])
        self.per_image, floor = bool(pro['per_image']), pro['sigma_floor']
        self.sigma_floor = floor if self.guard and not self.per_image else None

    def loss_sums(self, features, noise, mask, training: bool):
        """As Noise2Same's; with per_image one row per image (B, 6): its five sums and its
        blind noise estimate (`haar_noise_std`, for the guard)."""
        sums, raw_pred, masked_pred = super().loss_sums(features, noise, mask, training)
        if self.per_image:
            sums = tf.concat([batch_sums(features, mask, raw_pred, masked_pred, per_image=True),
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
    Noise2Same or Noise2SamePro, whose loss differs), e.g. for `n2s_app.adapt`; kwargs such as
    precision go to the constructor."""
    saved = model_settings.read_settings(os.path.join(base_dir, name)) or {}
    cls = Noise2SamePro if saved.get('class') == Noise2SamePro.__name__ else Noise2Same
    return cls(base_dir, name, **kwargs)
