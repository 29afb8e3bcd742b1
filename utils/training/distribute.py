"""tf.distribute helpers: pick a strategy from a flag, and who writes files in a cluster.
TensorFlow is imported only when a strategy is made, so the scripts' flags can use STRATEGIES.

    strategy = make_strategy('mirrored', cpu_devices=2)   # 2 logical CPUs when there is no GPU
    model.train(X, [64, 64], strategy=strategy, sync_batch_norm=True)

'multiworker' reads the cluster from the TF_CONFIG environment variable, e.g. for worker 0 of 2:
    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}'
"""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import tensorflow as tf

STRATEGIES = ('default', 'mirrored', 'multiworker')


def split_cpu(cpu_devices: int) -> None:
    """Split the CPU into `cpu_devices` logical devices (must run before TensorFlow starts)."""
    import tensorflow as tf
    if cpu_devices > 1:
        cpu = tf.config.list_physical_devices('CPU')[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
        except RuntimeError as error:
            raise RuntimeError(f"cannot split the CPU into {cpu_devices} devices: TensorFlow "
                               f"is already running ({error})") from None


def make_strategy(name: str = 'default', cpu_devices: int = 1) -> Optional[tf.distribute.Strategy]:
    """The strategy called `name` (None for 'default': one device).

    'mirrored' uses every local GPU, or with no GPU the `cpu_devices` logical CPUs;
    'multiworker' is MultiWorkerMirroredStrategy over the TF_CONFIG cluster.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")
    if name == 'multiworker':
        if 'TF_CONFIG' not in os.environ:
            raise ValueError("--strategy multiworker needs the TF_CONFIG environment variable "
                             "(cluster and task); see README 'Several GPUs or machines'")
        try:
            json.loads(os.environ['TF_CONFIG'])
        except ValueError as error:
            raise ValueError(f"TF_CONFIG is not valid JSON ({error})") from None
    split_cpu(cpu_devices)
    import tensorflow as tf
    if name == 'default':
        return None
    if name == 'multiworker':
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_physical_devices('GPU'):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices('CPU')])


def is_chief(strategy: Optional[tf.distribute.Strategy]) -> bool:
    """Whether this process writes checkpoints, settings and summaries: always without a
    cluster; in one, the 'chief' task, or worker 0 when the cluster has no chief."""
    resolver = getattr(strategy, 'cluster_resolver', None) if strategy is not None else None
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == 'chief':
        return True
    has_chief = 'chief' in resolver.cluster_spec().as_dict()
    return resolver.task_type == 'worker' and resolver.task_id == 0 and not has_chief
