"""Speed of training steps, prediction and the input pipeline, with a table and a JSON file.

    python -m benchmarks.speed                   # mixed shapes, then width 96 and 32, batch 16, patch 64
    python -m benchmarks.speed --quick           # width 16 and 8, for a smoke test
    python -m benchmarks.speed --mixed-shapes    # only the mixed-shape prediction pass
    python -m benchmarks.speed --mixed-shapes --no-tta   # plain and refined only (2 x 1 min)
    python -m benchmarks.speed --against ../old --rounds 3   # this code against another checkout
    python -m benchmarks.speed --train 32x16 64x16 --precision mixed_bfloat16   # only these steps

Rows: float32 (the default), mixed_bfloat16, and float32 with XLA (jit_compile) at the smaller
width; for the float32 rows also the forward and backward share of a step (`split_step`).
GFLOP/s use the work per 64x64 training image measured for the original network (issue 7
anchors: 54.4 GFLOP at width 96, 6.05 at width 32), scaled by width^2 for other widths; the
practical peak is a 4096x4096 float32 matrix product, in numpy and in TensorFlow, measured in
the same run. Median, min and max over --steps timed steps after --warmup ones.

--against CHECKOUT: the mixed-shape pass without TTA (TensorFlow's default oneDNN setting), in
fresh processes alternately with this code and with the code of another checkout (e.g. `git
worktree add ../old 027d8b9`; run by this file, with the same model and data), --rounds times:
each round's seconds per image and the ratio of the medians over the rounds (the VM's speed
drifts by several % between minutes, so single runs of either mislead).

Mixed shapes: `predict` on the 68 BSD68 test images in their order (481x321 and 321x481 mixed,
as test.py scores them; random images of those shapes when BSD68 is not built), plain, refined
and with --tta, by a shipped width-32 model, in child processes with oneDNN off and on
(TF_ENABLE_ONEDNN_OPTS is read when TensorFlow starts). Warm-up: the first image only.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

from n2s_app import cli
from network_configure import PRECISIONS
from utils.core import environment
from utils.core.files import write_text_atomic

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


def summary(times: List[float]) -> Dict:
    return {'median_s': statistics.median(times), 'min_s': min(times), 'max_s': max(times)}


def matmul_peak(repeats: int = 5) -> Dict[str, float]:
    """GFLOP/s of a 4096x4096 float32 matrix product in numpy and in TensorFlow."""
    import numpy as np
    import tensorflow as tf
    a = np.random.default_rng(0).random((4096, 4096), dtype=np.float32)
    flop = 2 * 4096 ** 3 / 1e9
    product = tf.function(lambda x: tf.reduce_sum(tf.matmul(x, x)))
    x = tf.constant(a)
    a @ a, float(product(x))  # warm-up
    np_times = timed(lambda: a @ a, repeats)
    tf_times = timed(lambda: float(product(x)), repeats)
    return {'numpy_gflops': flop / statistics.median(np_times),
            'tensorflow_gflops': flop / statistics.median(tf_times)}


def split_step(model, batch, steps: int, warmup: int) -> Dict:
    """Median time of the two forward passes with the loss, and of those plus the backward
    pass, on one batch: the profile of a step (the rest of a step is Adam)."""
    import tensorflow as tf
    variables = model.model.trainable_weights

    def forward(features, noise, mask):
        terms, _, _ = model.loss_terms(features, noise, mask, training=True)
        return model.loss(terms)

    def backward(features, noise, mask):
        with tf.GradientTape() as tape:
            loss = forward(features, noise, mask)
        return tf.add_n([tf.reduce_sum(g) for g in tape.gradient(loss, variables)])

    out = {}
    for name, fn in (('forward_s', forward), ('forward_backward_s', backward)):
        fn = tf.function(fn)
        run = lambda: float(fn(*batch))
        timed(run, warmup)
        out[name] = statistics.median(timed(run, steps))
    return out


def bench_training(width: int, batch: int, steps: int, warmup: int,
                   precision: str = 'float32', xla: bool = False, split: bool = False) -> Dict:
    """Training steps (both passes, backward, Adam) on batches from the real input pipeline;
    with `split`, also `split_step`."""
    import numpy as np
    import tensorflow as tf

    from models import Noise2Same
    from utils.data.pipeline import mask_box_size, training_dataset
    with tempfile.TemporaryDirectory() as folder:
        model = Noise2Same(folder, 'bench', net_config={'first_output_filters': width},
                           precision=precision)
        step_fn = tf.function(model._train_step_fn, jit_compile=True) if xla else model._train_step
        images = np.random.default_rng(0).normal(size=(32, 180, 180, 1)).astype(np.float32)
        batches = iter(training_dataset(images, [64, 64], batch, mask_box_size(0.5), 0, 0,
                                        warmup + steps + 2))
        step = lambda: float(step_fn(*next(batches))[0]['loss'])
        timed(step, warmup)
        times = timed(step, steps)
        pipeline = timed(lambda: next(batches), 1)  # one batch on its own, after the steps
        parts = split_step(model, next(batches), steps, warmup) if split else {}
    result = {'width': width, 'batch': batch, 'precision': precision, 'xla': xla,
              **summary(times), 'pipeline_s': pipeline[0], **parts}
    result['images_per_s'] = batch / result['median_s']
    result['gflops'] = gflop_per_image(width) * batch / result['median_s']
    return result


def bench_prediction(width: int, shape, repeats: int, precision: str = 'float32') -> Dict:
    """`predict` of one image (normalisation, padding, network, crop) by a model trained for one
    step on one 16-pixel patch (weights do not matter for timing; predict needs a checkpoint)."""
    import numpy as np

    from models import Noise2Same
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        model = Noise2Same(folder, 'bench', dim=len(shape),
                           net_config={'first_output_filters': width}, precision=precision)
        patch = [16] * len(shape)
        model.train(rng.normal(size=[1] + patch + [1]).astype(np.float32), patch, batch_size=1,
                    steps=1, verbose=False, seed=0)
        image = rng.normal(size=shape).astype(np.float32)
        model.predict(image)  # compiles for this shape
        times = timed(lambda: model.predict(image), repeats)
    return {'width': width, 'shape': list(shape), 'precision': precision, **summary(times)}


def mixed_shape_images(data_dir: str):
    """The BSD68 noisy test images in order, else 68 random ones of alternating shapes."""
    import numpy as np

    from utils.data.datasets import DATASETS
    try:
        return 'BSD68 test', [im.noisy for im in DATASETS['bsd68'].test_images(data_dir)]
    except OSError:
        rng = np.random.default_rng(0)
        shapes = [(481, 321), (321, 481)] * 34
        return 'random', [rng.normal(100, 30, s).astype(np.float32) for s in shapes]


def bench_mixed_shapes(model_dir: str, name: str, data_dir: str,
                       limit: Optional[int] = None, tta: bool = True) -> Dict:
    """Seconds per image of `predict` over `mixed_shape_images` (the first `limit`): plain,
    refined (`refine=True`, test_single.py's default) and with TTA unless not `tta` (in this
    process, whose oneDNN setting the caller chose)."""
    import numpy as np

    from models import Noise2Same
    source, images = mixed_shape_images(data_dir)
    images = images[:limit]
    model = Noise2Same(model_dir, name)
    result = {'images': f'{len(images)} {source}',
              'width': model.net_config['first_output_filters'],
              'onednn': os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')}
    modes = [('plain', {}), ('refined', {'refine': True})]
    if tta:
        modes.append(('tta', {'tta': True}))
    for mode, options in modes:
        model.predict(images[0], **options)  # warm-up
        times = [timed(lambda: model.predict(x, **options), 1)[0] for x in images]
        result[mode] = {'mean_s': float(np.mean(times)), 'total_s': float(np.sum(times)),
                        **summary(times)}
    return result


def mixed_shapes_children(model_dir: str, name: str, data_dir: str,
                          tta: bool = True) -> List[Dict]:
    """`bench_mixed_shapes` with oneDNN off and on, each in a fresh process."""
    return [mixed_child(model_dir, name, data_dir, tta, onednn=onednn) for onednn in ('0', '1')]


def mixed_child(model_dir: str, name: str, data_dir: str, tta: bool,
                checkout: Optional[str] = None, onednn: Optional[str] = None) -> Dict:
    """`bench_mixed_shapes` in a fresh process, run by this file: with this checkout's code, or
    with that of `checkout` (first on the path; it needs the modules this file imports:
    n2s_app.cli, network_configure, utils.core, utils.data); oneDNN as `onednn` ('0', '1',
    TensorFlow's default when None)."""
    env = {**os.environ}
    if onednn is not None:
        env['TF_ENABLE_ONEDNN_OPTS'] = onednn
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout
    where = os.path.abspath(checkout or here)
    env['PYTHONPATH'] = os.pathsep.join([where] + ([env['PYTHONPATH']]
                                                   if env.get('PYTHONPATH') else []))
    child = subprocess.run(
        [sys.executable, os.path.abspath(__file__), '--mixed-child',
         '--model-dir', os.path.abspath(model_dir), '--name', name,
         '--data-dir', os.path.abspath(data_dir)] + ([] if tta else ['--no-tta']),
        capture_output=True, text=True, env=env, cwd=where)
    if child.returncode != 0:
        raise RuntimeError(f"mixed-shape child failed: {child.stderr.strip()[-500:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def against(model_dir: str, name: str, data_dir: str, checkout: str, rounds: int) -> str:
    """The table of `--against`: per round, plain and refined seconds per image (mean and
    median) of this code and of `checkout`'s, alternately; then the medians over the rounds
    and the ratio of this code's refined time to the checkout's."""
    if not os.path.isdir(checkout):
        raise SystemExit(f"error: --against {checkout}: no such folder; make one with "
                         f"'git worktree add {checkout} <commit>'")
    runs = {'this code': [], checkout: []}
    lines = ['| round | code | plain s/image mean (median) | refined s/image mean (median) |',
             '|---|---|---|---|']
    for n in range(rounds):
        for label, where in (('this code', None), (checkout, checkout)):
            r = mixed_child(model_dir, name, data_dir, False, where)
            runs[label].append([r[m][k] for m in ('plain', 'refined')
                                for k in ('mean_s', 'median_s')])
            p_mean, p_median, r_mean, r_median = runs[label][-1]
            lines.append(f"| {n + 1} | {label} | {p_mean:.3f} ({p_median:.3f}) | "
                         f"{r_mean:.3f} ({r_median:.3f}) |")
            print(lines[-1], file=sys.stderr, flush=True)  # progress
    middle = {label: [statistics.median(v[i] for v in values) for i in range(4)]
              for label, values in runs.items()}
    for label, (p_mean, p_median, r_mean, r_median) in middle.items():
        lines.append(f"| median of {rounds} | {label} | {p_mean:.3f} ({p_median:.3f}) | "
                     f"{r_mean:.3f} ({r_median:.3f}) |")
    mine, theirs = middle['this code'], middle[checkout]
    lines.append(f"\nrefined, this code / {checkout}: {mine[2] / theirs[2]:.2f}x (means), "
                 f"{mine[3] / theirs[3]:.2f}x (medians); {environment.machine_label()}")
    return '\n'.join(lines)


def mixed_table(rows: List[Dict]) -> str:
    lines = ['| mixed shapes, predict per image | oneDNN | s/image mean (median, max) | '
             'total s | refined: s/image (x plain) | with --tta: s/image | total s |',
             '|---|---|---|---|---|---|---|']
    for r in rows:
        p, f, t = r['plain'], r['refined'], r.get('tta')
        tta = f"{t['mean_s']:.3f} | {t['total_s']:.1f}" if t else '– | –'
        lines.append(f"| {r['images']}, width {r['width']} | {r['onednn']} | {p['mean_s']:.3f} "
                     f"({p['median_s']:.3f}, {p['max_s']:.3f}) | {p['total_s']:.1f} | "
                     f"{f['mean_s']:.3f} ({f['mean_s'] / p['mean_s']:.2f}) | {tta} |")
    return '\n'.join(lines)


def table(results: Dict) -> str:
    peak = results['peak']
    lines = [f"machine: {results['machine']}; 4096x4096 float32 matmul: numpy "
             f"{peak['numpy_gflops']:.0f} GFLOP/s, TensorFlow {peak['tensorflow_gflops']:.0f}",
             '', '| training, patch 64 | s/step median (min-max) | images/s | GFLOP/s | '
             '% of TF matmul | pipeline s/batch |', '|---|---|---|---|---|---|']
    for r in results['training']:
        label = f"width {r['width']}, batch {r['batch']}, {r['precision']}" + \
            (', XLA' if r['xla'] else '')
        lines.append(f"| {label} | {r['median_s']:.3f} ({r['min_s']:.3f}-{r['max_s']:.3f}) | "
                     f"{r['images_per_s']:.1f} | {r['gflops']:.0f} | "
                     f"{100 * r['gflops'] / peak['tensorflow_gflops']:.0f} % | "
                     f"{r['pipeline_s']:.4f} |")
    for r in results['training']:
        if 'forward_s' in r:
            lines.append(f"\nwidth {r['width']}, {r['precision']}: two forward passes with the "
                         f"loss {r['forward_s']:.3f} s ({100 * r['forward_s'] / r['median_s']:.0f} "
                         f"% of the step), plus backward {r['forward_backward_s']:.3f} s "
                         f"({100 * r['forward_backward_s'] / r['median_s']:.0f} %); "
                         f"the rest is Adam")
    if results.get('prediction'):
        lines += ['', '| prediction, one image | s median (min-max) |', '|---|---|']
    for r in results.get('prediction', []):
        lines.append(f"| width {r['width']}, {'x'.join(map(str, r['shape']))}, {r['precision']} "
                     f"| {r['median_s']:.3f} ({r['min_s']:.3f}-{r['max_s']:.3f}) |")
    lines.append(f"\npeak memory (RSS): {results['peak_rss_mb']:.0f} MB")
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('--quick', action='store_true', help='small widths, few steps')
    p.add_argument('--steps', type=cli.positive_int, default=5, help='timed steps per row')
    p.add_argument('--warmup', type=cli.positive_int, default=2, help='untimed steps first')
    p.add_argument('--out', default='results/speed.json', help='JSON file of the results')
    p.add_argument('--mixed-shapes', action='store_true',
                   help='only the mixed-shape prediction pass')
    p.add_argument('--model-dir', default=cli.MODEL_DIR,
                   help='folder of the model of the mixed-shape pass')
    p.add_argument('--name', default=cli.DEFAULT_MODEL,
                   help='model of the mixed-shape pass (width 32)')
    p.add_argument('--data-dir', default=cli.DATA_DIR, help='where BSD68 is built')
    p.add_argument('--train', nargs='+', metavar='WIDTHxBATCH', type=width_by_batch,
                   help='only time training steps of these widths and batch sizes, e.g. 64x16 '
                        '(the seconds per step of a learning curve: benchmarks.curve)')
    p.add_argument('--precision', default='float32', choices=PRECISIONS,
                   help='arithmetic of the --train rows')
    p.add_argument('--no-tta', dest='tta', action='store_false',
                   help='mixed shapes: leave out the --tta rows (8 predictions an image)')
    p.add_argument('--against', metavar='CHECKOUT',
                   help='the mixed-shape pass without TTA, alternately with this code and with '
                        'the code of another checkout (a folder)')
    p.add_argument('--rounds', type=cli.positive_int, default=3,
                   help='--against: how many times each (the medians are compared)')
    p.add_argument('--mixed-child', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.against:
        print(against(args.model_dir, args.name, args.data_dir, args.against, args.rounds))
        return
    if args.mixed_child:  # one setting, in this process; JSON on the last line
        cli.start_tensorflow(training=False)
        print(json.dumps(bench_mixed_shapes(args.model_dir, args.name, args.data_dir,
                                            tta=args.tta)))
        return
    if args.train:
        cli.start_tensorflow(training=True)
        rows = [bench_training(w, b, args.steps, args.warmup, precision=args.precision)
                for w, b in args.train]
        results = {'machine': environment.machine_label(), 'peak': matmul_peak(), 'training': rows,
                   'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        print(table(results))
        write_json(args.out, results)
        return
    mixed = mixed_shapes_children(args.model_dir, args.name, args.data_dir, args.tta)
    if args.mixed_shapes:
        print(mixed_table(mixed))
        return
    cli.start_tensorflow(training=True)
    wide, narrow = (16, 8) if args.quick else (96, 32)
    train = lambda width, **kw: bench_training(width, 16, args.steps, args.warmup, **kw)
    predict = lambda width, shape, **kw: bench_prediction(width, shape, args.steps, **kw)
    results = {
        'machine': environment.machine_label(),
        'peak': matmul_peak(),
        'training': [train(wide, split=True), train(narrow, split=True),
                     train(wide, precision='mixed_bfloat16'),
                     train(narrow, precision='mixed_bfloat16'), train(narrow, xla=True)],
        'prediction': [predict(wide, (481, 321)), predict(narrow, (481, 321)),
                       predict(wide, (481, 321), precision='mixed_bfloat16'),
                       predict(narrow, (32, 128, 128))]}
    results['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results['mixed_shapes'] = mixed
    print(table(results) + '\n\n' + mixed_table(mixed))
    write_json(args.out, results)


def width_by_batch(text: str) -> Tuple[int, int]:
    """'64x16' -> (64, 16): network width and batch size of a --train row."""
    try:
        width, batch = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not WIDTHxBATCH, e.g. 64x16')
    if width < 1 or batch < 1:
        raise argparse.ArgumentTypeError(f'{text!r}: width and batch must be positive')
    return width, batch


def write_json(path: str, results: Dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_text_atomic(path, json.dumps(results, indent=2) + '\n')


if __name__ == '__main__':
    cli.run(main)
