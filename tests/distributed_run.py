"""Helper of test_distribute.py, run as a subprocess: trains a tiny model with a strategy and
prints its per-step losses (from the TensorBoard events it wrote) as JSON on the last line.

    python tests/distributed_run.py MODEL_DIR NAME {default,mirrored,multiworker} STEPS [--sync]
        [--per-image]      # Noise2SamePro with one sigma per image instead of Noise2Same
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from n2s_app import cli
from utils.training.distribute import make_strategy  # noqa: E402


def logged_losses(model_dir: str) -> dict:
    import tensorflow as tf
    losses = {}
    for name in sorted(os.listdir(model_dir)):
        if name.startswith('events.out.tfevents'):
            for event in tf.compat.v1.train.summary_iterator(os.path.join(model_dir, name)):
                for value in event.summary.value:
                    if value.tag == 'loss':
                        losses[event.step] = float(tf.make_ndarray(value.tensor))
    return losses


def main() -> None:
    base, name, strategy_name, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    strategy = make_strategy(strategy_name, cpu_devices=2 if strategy_name == 'mirrored' else 1)
    import numpy as np
    from models import Noise2Same, Noise2SamePro
    cli.seed_everything(0)
    images = np.random.default_rng(0).normal(size=(6, 24, 24, 1)).astype(np.float32)
    per_image = '--per-image' in sys.argv
    if per_image:
        images[::2] *= 0.1  # two noise levels
    model = (Noise2SamePro(base, name, net_config={'first_output_filters': 4}, per_image=True)
             if per_image else Noise2Same(base, name, net_config={'first_output_filters': 4}))
    model.train(images, [16, 16], batch_size=4, steps=steps, save_steps=2, log_steps=1, seed=3,
                verbose=False, strategy=strategy, sync_batch_norm='--sync' in sys.argv)
    print(json.dumps(logged_losses(os.path.join(base, name))))


if __name__ == '__main__':
    main()
