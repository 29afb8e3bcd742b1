"""Learning curves: the test PSNR of every checkpoint of one or more training runs.

    python train.py --dataset bsd68 ... --keep-checkpoints 0 --name run-a   # keeps every checkpoint
    python -m benchmarks.curve run-a run-b --seconds-per-step run-a=0.42 run-b=1.35 \
        --out results/pilot

Each run is a model directory under --model-dir (or any folder of ckpt-N files with the
model's settings.json). Every --every-th checkpoint (and the last) is scored on the data set's
test images with the original protocol (`Dataset.evaluate`, the network's own output, no TTA);
scores already in --out/curve.csv are not recomputed, so a rerun adds only new checkpoints
(and a run whose folder is gone keeps its rows: rerun to change --seconds-per-step).
A fine-tuning run gets its starting model as step 0 with --start RUN=MODEL_FOLDER, e.g.

    python -m benchmarks.curve s10-N2S s10-scratch --model-dir runs \
        --data-dir Denoising_data/sigma10 --start s10-N2S=trained_models/bsd68-N2S --out results/finetune/sigma10
Writes curve.csv (run, step, hours, psnr, ssim) and curve.png: PSNR against training time
(step x --seconds-per-step, a step time measured with nothing else running) when given for
every run, else against the step.
"""
import csv
import glob
import os
import re
from typing import Dict, List, Optional

from benchmarks import finish_plot
from n2s_app import cli
from utils.core.files import write_csv_atomic

FIELDS = ['run', 'step', 'hours', 'psnr', 'ssim']


def checkpoint_steps(folder: str) -> List[int]:
    """The steps of the ckpt-N checkpoints in `folder`, sorted."""
    return sorted(int(re.search(r'ckpt-(\d+)\.index$', path).group(1))
                  for path in glob.glob(os.path.join(folder, 'ckpt-*.index')))


def read_rows(path: str) -> List[Dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def score_runs(model_dir: str, names: List[str], dataset, data_dir: str, every: int,
               rows: List[Dict], on_row=lambda row: None,
               starts: Optional[Dict[str, str]] = None) -> List[Dict]:
    """Score the checkpoints of `names` not yet in `rows`; returns all rows. Each checkpoint
    is scored as the newest of a temporary folder that links to it and the settings;
    `starts` maps a run to the model folder it started from, scored as its step 0."""
    import tempfile

    import numpy as np

    from models import Noise2Same

    def add(name: str, step: int, folder: str, as_step: Optional[int] = None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            view = os.path.join(tmp, name)
            os.mkdir(view)
            for path in glob.glob(os.path.join(folder, f'ckpt-{step}.*')) + [
                    os.path.join(folder, 'settings.json')]:
                os.symlink(path, os.path.join(view, os.path.basename(path)))
            with open(os.path.join(view, 'checkpoint'), 'w') as f:  # TF's index file
                f.write(f'model_checkpoint_path: "ckpt-{step}"\n')
            scores = list(dataset.evaluate(Noise2Same(tmp, name), data_dir))
        row = {'run': name, 'step': step if as_step is None else as_step, 'hours': '',
               'psnr': f"{np.mean([s['psnr'] for s in scores]):.3f}",
               'ssim': f"{np.mean([s['ssim'] for s in scores]):.4f}"}
        rows.append(row)
        on_row(row)

    done = {(r['run'], int(r['step'])) for r in rows}
    for name in names:
        folder = os.path.abspath(os.path.join(model_dir, name))
        if not os.path.isdir(folder) and any(r['run'] == name for r in rows):
            continue  # checkpoints deleted: its rows in curve.csv stand
        steps = checkpoint_steps(folder)
        if not steps:
            raise OSError(f"no ckpt-N checkpoints in {folder}")
        start = (starts or {}).get(name)
        if start is not None and (name, 0) not in done:
            start = os.path.abspath(start)
            start_steps = checkpoint_steps(start)
            if not start_steps:
                raise OSError(f"no ckpt-N checkpoints in --start {start}")
            add(name, start_steps[-1], start, as_step=0)  # before any step of this run
        for i, step in enumerate(steps):
            if (name, step) in done or (i % every and i != len(steps) - 1):
                continue
            add(name, step, folder)
    return rows


def plot(rows: List[Dict], seconds: Dict[str, float], path: str, title: str) -> None:
    """PSNR against hours (or steps) per run."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    runs = sorted({r['run'] for r in rows})
    timed = all(run in seconds for run in runs)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        points = sorted((int(r['step']), float(r['psnr'])) for r in rows if r['run'] == run)
        xs = [s * seconds[run] / 3600 if timed else s for s, _ in points]
        ax.plot(xs, [p for _, p in points], marker='o', markersize=3, label=run)
    ax.set_xlabel('training time (hours, step x seconds per step alone)' if timed
                  else 'training step')
    ax.set_ylabel('test PSNR (dB)')
    finish_plot(fig, ax, path, title, title_size=9)


def name_values(pairs: Optional[List[str]], flag: str, kind=float) -> Dict[str, object]:
    """NAME=VALUE pairs of `flag` as a dict, VALUE converted by `kind`."""
    out = {}
    for pair in pairs or []:
        name, _, value = pair.partition('=')
        try:
            if not name or not value:
                raise ValueError
            out[name] = kind(value)
        except ValueError:
            raise ValueError(f"{flag} takes NAME=VALUE, got {pair!r}") from None
    return out


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('names', nargs='+', help='model directories (runs) under --model-dir')
    p.add_argument('--model-dir', default=cli.MODEL_DIR, help='folder of the runs')
    p.add_argument('--data-dir', default=cli.DATA_DIR, help='folder of the data sets')
    p.add_argument('--dataset', default='bsd68', help='data set whose test images score them')
    p.add_argument('--every', type=cli.positive_int, default=1,
                   help='score every N-th checkpoint (and the last)')
    p.add_argument('--seconds-per-step', nargs='*', metavar='NAME=SECONDS',
                   help='step time of each run, for a time axis')
    p.add_argument('--start', nargs='*', metavar='NAME=MODEL_FOLDER',
                   help='the model folder a run was initialised from (--init-from), scored '
                        'as its step 0')
    p.add_argument('--out', default='results/curve', help='output folder')
    p.add_argument('--title', default=None,
                   help="the plot's title (default: DATASET test PSNR of every checkpoint)")
    args = p.parse_args(argv)
    seconds = name_values(args.seconds_per_step, '--seconds-per-step')
    starts = name_values(args.start, '--start', str)
    os.makedirs(args.out, exist_ok=True)
    cli.start_tensorflow(training=False)
    from utils.data.datasets import get_dataset
    dataset = get_dataset(args.dataset, args.data_dir)
    dataset.test_images(args.data_dir)  # fail early on missing data
    path = os.path.join(args.out, 'curve.csv')
    rows = read_rows(path)
    rows = score_runs(args.model_dir, args.names, dataset, args.data_dir, args.every, rows,
                      on_row=lambda row: print(f"{row['run']} step {row['step']}: PSNR "
                                               f"{row['psnr']} dB, SSIM {row['ssim']}",
                                               flush=True), starts=starts)
    for row in rows:
        if row['run'] in seconds:
            row['hours'] = f"{int(row['step']) * seconds[row['run']] / 3600:.3f}"
    write_csv_atomic(path, sorted(rows, key=lambda r: (r['run'], int(r['step']))))
    plot(rows, seconds, os.path.join(args.out, 'curve.png'),
         args.title or f"{dataset.name} test PSNR of every checkpoint")
    print(f"wrote {path} and {os.path.join(args.out, 'curve.png')}")


if __name__ == '__main__':
    cli.run(main)
