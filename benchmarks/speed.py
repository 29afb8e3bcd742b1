"""Speed of training steps, prediction and the input pipeline, with a table and a JSON file.

    python -m benchmarks.speed                   # width 96 and 32, batch 16, patch 64 (about 5 min on 2 cores)
    python -m benchmarks.speed --quick           # width 16 and 8, for a smoke test

GFLOP/s use the work per 64x64 training image measured for the original network (REFERENCE
anchors in issue 7: 54.4 GFLOP at width 96, 6.05 at width 32), scaled by width^2 for others.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from typing import Dict, List, Optional

from utils import cli  # first: it sets TensorFlow's environment

GFLOP_PER_IMAGE_W96 = 54.4  # two forward passes and the backward pass, 64x64, width 96


def gflop_per_image(width: int) -> float:
    return GFLOP_PER_IMAGE_W96 * (width / 96) ** 2


def timed(fn, repeats: int) -> List[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def bench_training(width: int, batch: int, steps: int, warmup: int) -> Dict:
    import numpy as np
    import tensorflow as tf
    from models import Noise2Same
    from utils.train_utils import mask_box_size, training_dataset
    with tempfile.TemporaryDirectory() as folder:
        model = Noise2Same(folder, 'bench', net_config={'first_output_filters': width})
        images = np.random.default_rng(0).normal(size=(32, 180, 180, 1)).astype(np.float32)
        batches = iter(training_dataset(images, [64, 64], batch, mask_box_size(0.5), 0, 0,
                                        warmup + steps + 1))
        step = lambda: float(model._train_step(*next(batches))[0]['loss'])
        timed(step, warmup)
        times = timed(step, steps)
        pipeline = timed(lambda: next(batches), 1)  # one batch on its own, after the steps
    median = statistics.median(times)
    return {'width': width, 'batch': batch, 'median_s': median, 'min_s': min(times),
            'max_s': max(times), 'images_per_s': batch / median,
            'gflops': gflop_per_image(width) * batch / median, 'pipeline_s': pipeline[0]}


def bench_prediction(width: int, shape, repeats: int) -> Dict:
    import numpy as np
    from models import Noise2Same
    with tempfile.TemporaryDirectory() as folder:
        dim = len(shape)
        model = Noise2Same(folder, 'bench', dim=dim, net_config={'first_output_filters': width})
        model._loaded = 'in memory'  # untrained weights are fine for timing
        image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        model.predict(image)
        times = timed(lambda: model.predict(image), repeats)
    return {'width': width, 'shape': list(shape), 'median_s': statistics.median(times),
            'min_s': min(times), 'max_s': max(times)}


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='small widths, few steps')
    p.add_argument('--steps', type=cli.positive_int, default=5)
    p.add_argument('--warmup', type=cli.positive_int, default=2)
    p.add_argument('--out', default='results/speed.json')
    args = p.parse_args(argv)
    widths = (16, 8) if args.quick else (96, 32)
    results = {'machine': f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores',
               'training': [bench_training(w, 16, args.steps, args.warmup) for w in widths],
               'prediction': [bench_prediction(widths[0], (481, 321), args.steps),
                              bench_prediction(widths[1], (481, 321), args.steps),
                              bench_prediction(widths[1], (32, 128, 128), max(2, args.steps // 2))]}
    results['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"machine: {results['machine']}")
    print('| training | s/step median (min-max) | images/s | GFLOP/s | pipeline s/batch |')
    print('|---|---|---|---|---|')
    for r in results['training']:
        print(f"| width {r['width']}, batch {r['batch']}, patch 64 | {r['median_s']:.2f} "
              f"({r['min_s']:.2f}-{r['max_s']:.2f}) | {r['images_per_s']:.1f} | "
              f"{r['gflops']:.0f} | {r['pipeline_s']:.4f} |")
    print('| prediction | s median (min-max) |\n|---|---|')
    for r in results['prediction']:
        print(f"| width {r['width']}, {'x'.join(map(str, r['shape']))} | {r['median_s']:.2f} "
              f"({r['min_s']:.2f}-{r['max_s']:.2f}) |")
    print(f"peak memory (RSS): {results['peak_rss_mb']:.0f} MB")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    cli.write_text_atomic(args.out, json.dumps(results, indent=2) + '\n')


if __name__ == '__main__':
    cli.run(main)
