"""What a checkpoint holds: the network, the original's Adam, the global step, the input
pipeline's seed and (mixed_float16) the loss scale, each known by its ORIGINAL TF1 name.

`TrainingState` builds them, restores them from a TF1 or TF2 checkpoint, moves them into a
tf.distribute strategy's scope and writes weights-only copies; `Noise2Same` holds one.
"""
import os
from contextlib import contextmanager, nullcontext
from typing import Dict, Iterator, Mapping, Optional

import tensorflow as tf

from network import DenoisingNetwork
from utils.core.errors import CheckpointError
from utils.core.files import atomic_folder
from utils.core.settings import write_settings
from utils.model_io.checkpoints import read_checkpoint, tf1_variable_names
from utils.training.optimizer import TF1Adam

# mixed_float16: the loss is multiplied by the scale; a step whose gradients overflow is skipped
# and halves it, `growth_steps` finite steps in a row double it (Keras' LossScaleOptimizer rule)
LOSS_SCALE = {'initial': 2.0 ** 15, 'growth_steps': 2000}


class TrainingState:
    """The variables of a model and of its training, by TF1 name in `variables`.

    dim, in_channels, net_config: the network's (`network.DenoisingNetwork`); precision: of its
    convolutions ('float32', 'mixed_bfloat16', 'mixed_float16': then with a loss scale).
    """

    def __init__(self, dim: int, in_channels: int, net_config: Mapping, precision: str):
        self.dim, self.in_channels = dim, in_channels
        self.net_config, self.precision = net_config, precision
        self.strategy: Optional[tf.distribute.Strategy] = None  # set by `use_strategy`
        self.loaded: Optional[str] = None  # the checkpoint the variables hold
        self.build()

    def build(self) -> None:
        """Create the variables in the current tf.distribute strategy's scope."""
        self.network = DenoisingNetwork(self.dim, self.in_channels, self.net_config,
                                        precision=self.precision)
        named = list(tf1_variable_names(self.network))
        self.optimizer = TF1Adam([(n, v) for n, v in named if v.trainable])
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name='global_step')
        self.seed = tf.Variable(0, dtype=tf.int64, trainable=False, name='seed')
        self.variables: Dict[str, tf.Variable] = {
            **dict(named), **self.optimizer.named_state(),
            'global_step': self.global_step, 'input_pipeline/seed': self.seed}
        self.loss_scale = self.finite_steps = None
        if self.precision == 'mixed_float16':
            self.loss_scale = tf.Variable(LOSS_SCALE['initial'], trainable=False,
                                          name='loss_scale')
            self.finite_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.variables.update({'loss_scale/scale': self.loss_scale,
                                   'loss_scale/finite_steps': self.finite_steps})

    def use_strategy(self, strategy: Optional[tf.distribute.Strategy],
                     sync_batch_norm: bool) -> None:
        """Re-create the variables in `strategy`'s scope (None: one device), keeping values."""
        if strategy is not self.strategy:
            values = {name: variable.numpy() for name, variable in self.variables.items()}
            with strategy.scope() if strategy is not None else nullcontext():
                self.build()
            for name, variable in self.variables.items():
                variable.assign(values[name])
            self.strategy = strategy
        for layer in self.network._flatten_layers():
            if hasattr(layer, 'synchronized'):
                layer.synchronized = sync_batch_norm

    def restore(self, path: str, optimizer: bool = True) -> None:
        """Load a checkpoint (TF1 or TF2 prefix): weights and BN statistics, and with
        `optimizer` the Adam slots, beta powers, global step and input-pipeline seed it holds."""
        values = read_checkpoint(path)
        for name, variable in self.variables.items():
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

    def export_weights(self, path: str, folder: str, settings: Mapping) -> str:
        """Write checkpoint `path`'s weights, batch-norm statistics, global step and seed
        (not the Adam slots: a third of the size) into a new `folder`, with `settings` as its
        settings.json; the folder appears complete or not at all. Returns `folder`."""
        if os.path.exists(folder):
            raise FileExistsError(f"{folder} exists; remove it or choose another folder")
        self.restore(path, optimizer=True)
        kept = {name for name, _ in tf1_variable_names(self.network)}
        kept |= {'global_step', 'input_pipeline/seed'}
        weights = {name: v for name, v in self.variables.items() if name in kept}
        with atomic_folder(folder) as partial:
            tf.train.CheckpointManager(tf.train.Checkpoint(state=weights), partial, max_to_keep=1,
                                       checkpoint_name='ckpt').save(
                checkpoint_number=int(self.global_step.numpy()))
            write_settings(partial, settings)
        return folder

    @contextmanager
    def frozen_statistics(self) -> Iterator[None]:
        """Restore the batch-norm moving averages on exit."""
        saved = [(v, v.numpy()) for v in self.network.non_trainable_weights]
        try:
            yield
        finally:
            for variable, value in saved:
                variable.assign(value)
