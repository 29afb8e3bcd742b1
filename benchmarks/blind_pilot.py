"""Pilot: which way of training on images of mixed noise levels works best (bsd68-blind).

    python -m benchmarks.blind_pilot --run-dir runs-pilot          # width 32, 3000 steps each
    python -m benchmarks.blind_pilot --run-dir runs-pilot --report # the table from results.csv

Every method trains on the 400 bsd68-blind images (each its own sigma, uniform in 0..55) with
the same seed (so the same initial weights and patch order), width, batch, step count and
cosine schedule, one after another (wall times in the table are of this machine):

  one-lmbd         Noise2Same, one lmbd = 2 x the root-mean-square estimated noise std of the
                   normalised images (`train.py --noise-sigma auto`)
  per-image        the first half as one-lmbd (its checkpoint there, copied), then the N2SP
                   loss with one sigma per image (`train_pro.py --per-image`)
  per-image-noguard  the same without the guard (sigma_i >= 0.5 x the patch's Haar estimate)
  noise-norm       each image minus its mean, divided by its estimated noise std
                   (`estimate_sigma`, floored at 1 % of its std) instead of its std, so that
                   lmbd = 2 fits all of them; prediction divides by the same estimate. Trained
                   here with the Python API (no script has this normalisation)

Scored on the 68 BSD68 test images at --sigmas with the noise of benchmarks.noise_levels
(default_rng(9000 + sigma)), the network's output and with `--refine`, and on the 4
validation images (default_rng(9100 + sigma), 3 draws), which is where a choice is made.
Writes --out/table.md and results.csv.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional

import numpy as np

from benchmarks import noise_levels
from n2s_app import cli
from network_configure import PRECISIONS
from utils.core import environment
from utils.core.files import write_csv_atomic, write_text_atomic

METHODS = ('one-lmbd', 'per-image', 'per-image-noguard', 'noise-norm')
DATASET = 'bsd68-blind'
SECONDS_FILE = 'seconds.json'


def noise_scale(image: np.ndarray) -> float:
    """noise-norm's divisor: the blind noise std (`estimate_sigma`), at least 1 % of the std."""
    from utils.core.noise import noise_std
    return max(float(noise_std(image)[0]), 0.01 * float(np.std(image)))


def noise_normalised(images) -> np.ndarray:
    """(N, Y, X, 1) float32: each image minus its mean over its `noise_scale`."""
    return np.array([(x - x.mean()) / noise_scale(x) for x in images], np.float32)[..., None]


def common_flags(args) -> List[str]:
    return ['--dataset', DATASET, '--data-dir', args.data_dir, '--model-dir', args.run_dir,
            '--filters', str(args.filters), '--batch-size', str(args.batch_size),
            '--steps', str(args.steps), '--lr-schedule', 'cosine', '--precision',
            args.precision, '--seed', str(args.seed), '--keep-checkpoints', '0',
            '--save-steps', str(args.steps // 2)]


def run_script(command: List[str], log: str) -> None:
    """Run a training script to completion, its output appended to `log`."""
    print(' '.join(command), flush=True)
    with open(log, 'a') as f:
        subprocess.run(command, check=True, stdout=f, stderr=subprocess.STDOUT)


def branch(run_dir: str, source: str, name: str, step: int) -> None:
    """A copy of model `source` holding its settings and only its checkpoint at `step`."""
    prefix, origin = f'ckpt-{step}', os.path.join(run_dir, source)
    files = [f for f in os.listdir(origin) if f.startswith(prefix + '.') or f == 'settings.json']
    if 'settings.json' not in files or not any(f.endswith('.index') for f in files):
        raise FileNotFoundError(f"{origin} holds no settings.json or no {prefix}: train it with "
                                f"--save-steps dividing {step}")
    target = os.path.join(run_dir, name)
    os.makedirs(target)
    for f in files:
        shutil.copy2(os.path.join(origin, f), target)
    with open(os.path.join(target, 'checkpoint'), 'w') as f:
        f.write(f'model_checkpoint_path: "{prefix}"\nall_model_checkpoint_paths: "{prefix}"\n')


def train_noise_norm(args) -> None:
    """noise-norm with the Python API, in this process."""
    from utils.data.datasets import DATASETS
    dataset = DATASETS[DATASET]
    raw = dataset.raw_training_images(args.data_dir)
    raw_val = np.load(dataset.path(args.data_dir, dataset.files['val']), allow_pickle=True)
    cli.start_tensorflow(training=True)
    from models import Noise2Same
    cli.seed_everything(args.seed)
    model = Noise2Same(args.run_dir, 'noise-norm', dim=2, in_channels=1, lmbd=2.0,
                       masking='gaussian', mask_perc=0.5,
                       opt_config={'lr_schedule': 'cosine', 'lr_decay_steps': float(args.steps)},
                       net_config={'first_output_filters': args.filters},
                       precision=args.precision)
    model.train(noise_normalised(raw), [64, 64], validation=noise_normalised(raw_val),
                batch_size=args.batch_size, steps=args.steps, seed=args.seed,
                save_steps=args.steps // 2, keep_checkpoints=0,
                record={'dataset': DATASET, 'pilot_normalisation': 'noise'})


def read_seconds(run_dir: str) -> Dict[str, float]:
    """{method: training wall seconds} that the runs in run_dir recorded ({} if none)."""
    path = os.path.join(run_dir, SECONDS_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def train_all(args) -> Dict[str, float]:
    """Train the methods not yet trained to --steps; returns {method: wall seconds} of every
    method, also of those an earlier run trained (kept in --run-dir/seconds.json)."""
    from utils.model_io.checkpoints import latest_checkpoint
    os.makedirs(args.run_dir, exist_ok=True)
    log = os.path.join(args.run_dir, 'train.log')
    seconds_file = os.path.join(args.run_dir, SECONDS_FILE)
    seconds = read_seconds(args.run_dir)

    def train(name: str, command: Optional[List[str]] = None) -> None:
        if (latest_checkpoint(os.path.join(args.run_dir, name)) or '').endswith(
                f'ckpt-{args.steps}'):
            return
        start = time.perf_counter()
        if command is None:
            train_noise_norm(args)
        else:
            run_script([sys.executable] + command + common_flags(args), log)
        seconds[name] = time.perf_counter() - start
        write_text_atomic(seconds_file, json.dumps(seconds) + '\n')

    train('one-lmbd', ['train.py', '--name', 'one-lmbd', '--noise-sigma', 'auto'])
    for name, extra in (('per-image', []), ('per-image-noguard', ['--no-guard'])):
        if not os.path.isdir(os.path.join(args.run_dir, name)):
            branch(args.run_dir, 'one-lmbd', name, args.steps // 2)
        train(name, ['train_pro.py', '--name', name, '--per-image',
                     '--pro-steps', str(args.steps // 2)] + extra)
    train('noise-norm')
    return seconds


def evaluate(args) -> noise_levels.Results:
    from utils.data.datasets import DATASETS
    tests = DATASETS['bsd68'].test_images(args.data_dir)[:args.images]
    val_clean = noise_levels.validation_clean(args.from_dir)
    results = noise_levels.Results()
    by_noise = lambda m, x: m.predict(x, im_mean=float(x.mean()), im_std=noise_scale(x))
    for sigma in args.sigmas:
        sets = {'': [(t.name, t.clean, n) for t, n in zip(
                    tests, noise_levels.noisy_images([t.clean for t in tests], sigma))],
                ' [validation]': [(f'val{i}', val_clean[i // 3], n) for i, n in enumerate(
                    noise_levels.noisy_images(val_clean, sigma, seed=9100, draws=3))]}
        for tag, images in sets.items():
            for name, clean, x in images:
                results.add(noise_levels.NOISY + tag, sigma, name, clean, x, 0.0)
            noise_levels.run_models(results, list(METHODS[:3]), args.run_dir, sigma, images,
                                    tag=tag)
            noise_levels.run_models(results, ['noise-norm'], args.run_dir, sigma, images,
                                    denoise=by_noise, tag=tag)
    return results


def report(results: noise_levels.Results, args, seconds: Dict[str, float]) -> str:
    test = noise_levels.Results()
    test.rows = [r for r in results.rows if '[validation]' not in r['method']]
    val = noise_levels.Results()
    val.rows = [r for r in results.rows if '[validation]' in r['method']]
    text = (f"### Mixed-noise pilot: bsd68-blind, width {args.filters}, batch {args.batch_size}, "
            f"{args.steps} steps each, cosine from 4e-4, seed {args.seed}, {args.precision}; "
            f"{environment.machine_label()}, {time.strftime('%Y-%m-%d')}\n\n"
            + noise_levels.table(val, args.sigmas, '#### The 4 validation images (3 draws each)',
                                 seconds_at=25) + '\n\n'
            + noise_levels.table(test, args.sigmas, f'#### BSD68 test images ({args.images})',
                                 seconds_at=25) + '\n')
    if seconds:
        text += ('\nTraining wall time (this machine, one run at a time): ' + ', '.join(
            f'{m} {s / 60:.1f} min' for m, s in seconds.items()) + '\n')
    return text


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('--run-dir', required=True, help='where the pilot models are trained')
    p.add_argument('--data-dir', default=cli.DATA_DIR, help='where bsd68 and bsd68-blind are built')
    p.add_argument('--from', dest='from_dir', default='../shared/data/bsd68',
                   help='the BSD68 PNG folders, for the clean validation images '
                        '(default: ../shared/data/bsd68)')
    p.add_argument('--filters', type=cli.positive_int, default=32)
    p.add_argument('--batch-size', type=cli.positive_int, default=16)
    p.add_argument('--steps', type=cli.positive_int, default=3000)
    p.add_argument('--seed', type=int, default=666)
    p.add_argument('--precision', default='mixed_bfloat16', choices=PRECISIONS)
    p.add_argument('--sigmas', type=float, nargs='+', default=[5, 15, 25, 50])
    p.add_argument('--images', type=cli.positive_int, default=68, help='BSD68 test images')
    p.add_argument('--out', default='results/blind_pilot')
    p.add_argument('--report', action='store_true',
                   help='only remake table.md from results.csv (and --run-dir/seconds.json)')
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, 'results.csv')
    if args.report:
        results, seconds = noise_levels.Results.read(csv_path), read_seconds(args.run_dir)
    else:
        seconds = train_all(args)
        results = evaluate(args)
        write_csv_atomic(csv_path, results.rows)
    text = report(results, args, seconds)
    write_text_atomic(os.path.join(args.out, 'table.md'), text)
    print(text)


if __name__ == '__main__':
    cli.run(main)
