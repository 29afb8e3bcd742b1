"""Quality benchmark: N2S vs N2SP variants vs NLM and BM3D, several seeds, equal step budgets.

    python -m benchmarks.quality                       # CPU setting (~30 min on 2 cores); demo
                                                       # set, or BSD68 when its files are there
    python -m benchmarks.quality --preset long         # width 32, 3000 steps (hours on a CPU)
    python -m benchmarks.quality --preset full --dataset bsd68   # the paper's scale (GPU)
    python -m benchmarks.quality --dataset bsd68 --seeds 666 667 668 --variants n2s pro pro-noguard \
        --eval-every 100 --out results/quality-bsd68   # README's BSD68 table

Variants, each trained for the same total number of steps:
  n2s           Noise2Same (lmbd of the data set, 2 for sigma 25)
  pro           Noise2Same, then Noise2SamePro for the last --pro-steps (the original schedule,
                with this port's N2SP guard, the default of train_pro.py)
  pro-noguard   the same with the original N2SP loss (train_pro.py --no-guard)
  pro-stopgrad  'pro' with the sigma estimate's gradient stopped (sigma_grad=False)
  n2sp          Noise2SamePro from step 0
  n2s:LMBD      Noise2Same with lmbd LMBD (e.g. n2s:0.95, the authors' BSD68 notebook value)

n2s and the pro variants of one seed share their first steps - pro_steps N2S steps exactly
(same weights and batches), so those are trained once per seed and continued by each.
Every --eval-every steps the test PSNR is recorded for the convergence plot. Writes table.md,
runs.csv (final scores per run), curves.csv (PSNR against step per run) and convergence.png
under --out. Finished runs are cached in --out/runs/ and skipped on a rerun with the same
settings, so an interrupted benchmark continues where it stopped.
"""
import argparse
import itertools
import json
import os
import shutil
import statistics
import tempfile
import textwrap
import time
from typing import Dict, List, Optional

from n2s_app import cli
from utils.core.files import atomic_write, write_csv_atomic, write_text_atomic
from utils.evaluation.baselines import bm3d, nlm
from utils.evaluation.metrics import score_denoiser

VARIANTS = ('n2s', 'pro', 'pro-noguard', 'pro-stopgrad', 'n2sp')
PRESETS = {  # width, batch, patch, total steps, N2SP steps of 'pro', evaluation interval
    'cpu': dict(filters=16, batch_size=16, patch_size=64, steps=600, pro_steps=100, eval_every=50),
    'long': dict(filters=32, batch_size=16, patch_size=64, steps=3000, pro_steps=500,
                 eval_every=250),
    'full': dict(filters=96, batch_size=64, patch_size=64, steps=90000, pro_steps=500,
                 eval_every=5000),  # the published N2SP checkpoint's 90k steps (GPU scale)
}


# ----------------------------------------------------------------------------- training runs

def variant_name(text: str) -> str:
    """argparse type of --variants: one of VARIANTS or n2s:LMBD with a positive LMBD."""
    kind, _, lmbd = text.partition(':')
    try:
        valid = kind == 'n2s' and float(lmbd) > 0 if lmbd else text in VARIANTS
    except ValueError:
        valid = False
    if not valid:
        raise argparse.ArgumentTypeError(f"unknown variant {text!r}; choose from "
                                         f"{', '.join(VARIANTS)} or n2s:LMBD (e.g. n2s:0.95)")
    return text


def phases(variant: str, steps: int, pro_steps: int) -> List[tuple]:
    """[(model class name, its options (lmbd, or sigma_grad and guard), last step)]."""
    if variant.startswith('n2s:'):
        return [('Noise2Same', {'lmbd': float(variant[4:])}, steps)]
    if variant == 'n2s':
        return [('Noise2Same', {}, steps)]
    if variant == 'n2sp':
        return [('Noise2SamePro', {}, steps)]
    pro = {'sigma_grad': variant != 'pro-stopgrad', 'guard': variant != 'pro-noguard'}
    return [('Noise2Same', {}, steps - pro_steps), ('Noise2SamePro', pro, steps)]


# the variants whose runs share the same N2S steps up to steps - pro_steps
SHARED_FIRST_PHASE = ('n2s', 'pro', 'pro-noguard', 'pro-stopgrad')


def run_key(name: str, seed: int, cfg: Dict, dataset) -> str:
    return (f"{dataset.name}_{name.replace(':', '-lmbd')}_s{seed}_w{cfg['filters']}"
            f"_b{cfg['batch_size']}_p{cfg['patch_size']}_{cfg['steps']}-{cfg['pro_steps']}"
            f"_e{cfg['eval_every']}")


def train_phases(base: str, plan: List[tuple], step: int, seed: int, cfg: Dict, dataset,
                 images, tests, curve: List) -> List[Dict]:
    """Train the model base/m from `step` through `plan` (see `phases`), appending (step, mean
    test PSNR) to `curve` every cfg['eval_every'] steps. Returns the last test scores."""
    import models
    settings = dataset.training
    common = dict(dim=dataset.dim, in_channels=dataset.in_channels, masking=settings['masking'],
                  net_config={'first_output_filters': cfg['filters']})
    scores = []
    for cls_name, options, last in plan:
        if step >= last:
            continue
        if cls_name == 'Noise2Same':
            model = models.Noise2Same(base, 'm', **{'lmbd': settings['lmbd'], **options}, **common)
        else:
            model = models.Noise2SamePro(base, 'm', **options, **common)
        while step < last:
            step = min(last, (step // cfg['eval_every'] + 1) * cfg['eval_every'])
            model.train(images, [cfg['patch_size']] * dataset.dim, batch_size=cfg['batch_size'],
                        steps=step, save_steps=cfg['eval_every'], log_steps=cfg['eval_every'],
                        seed=seed, verbose=False)
            scores = [dataset.score(model, image) for image in tests]
            curve.append((step, statistics.mean(s['psnr'] for s in scores)))
    return scores


def first_phase(seed: int, cfg: Dict, dataset, images, tests, cache: str) -> Dict:
    """The N2S steps that n2s, pro and pro-stopgrad share for one seed (same seed: the same
    initial weights and batches), trained once and kept in cache/<key>/ with their curve and
    time. Returns {'folder', 'curve', 'seconds'}."""
    folder = os.path.join(cache, run_key('phase1', seed, cfg, dataset))
    if not os.path.exists(os.path.join(folder, 'phase.json')):
        os.makedirs(cache, exist_ok=True)
        tmp, start, curve = tempfile.mkdtemp(prefix='.phase1-', dir=cache), time.perf_counter(), []
        cli.seed_everything(seed)
        train_phases(tmp, [('Noise2Same', {}, cfg['steps'] - cfg['pro_steps'])], 0, seed, cfg,
                     dataset, images, tests, curve)
        with open(os.path.join(tmp, 'phase.json'), 'w') as f:
            json.dump({'curve': curve, 'seconds': time.perf_counter() - start}, f)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    with open(os.path.join(folder, 'phase.json')) as f:
        return {'folder': folder, **json.load(f)}


def train_run(variant: str, seed: int, cfg: Dict, dataset, images, tests, cache: str) -> Dict:
    """Train one variant with one seed in a temporary model directory, continuing the shared
    first phase where there is one; test PSNR every cfg['eval_every'] steps.
    Returns {'curve': [(step, psnr)], 'psnr', 'ssim', 'seconds' (shared phase included)}."""
    curve, step, earlier = [], 0, 0.0
    with tempfile.TemporaryDirectory(prefix='quality-') as base:
        if variant in SHARED_FIRST_PHASE:
            shared = first_phase(seed, cfg, dataset, images, tests, cache)
            shutil.copytree(os.path.join(shared['folder'], 'm'), os.path.join(base, 'm'))
            curve = [tuple(point) for point in shared['curve']]
            step, earlier = curve[-1][0], shared['seconds']
        else:
            cli.seed_everything(seed)
        start = time.perf_counter()  # the shared phase's own time is `earlier`
        scores = train_phases(base, phases(variant, cfg['steps'], cfg['pro_steps']), step, seed,
                              cfg, dataset, images, tests, curve)
    return {'curve': curve, 'psnr': curve[-1][1],
            'ssim': statistics.mean(s['ssim'] for s in scores),
            'seconds': earlier + time.perf_counter() - start}


def cached_run(variant: str, seed: int, cfg: Dict, dataset, images, tests, cache: str) -> Dict:
    """train_run, read from `cache` when a run with the same settings finished before."""
    path = os.path.join(cache, run_key(variant, seed, cfg, dataset) + '.json')
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    result = train_run(variant, seed, cfg, dataset, images, tests, cache)
    os.makedirs(cache, exist_ok=True)
    write_text_atomic(path, json.dumps(result) + '\n')
    return result


# ----------------------------------------------------------------------------- report

def mean_std(values: List[float]) -> tuple:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired_difference(runs: Dict[str, Dict[int, Dict]], variant: str) -> Optional[Dict]:
    """PSNR of `variant` minus that of n2s, seed by seed (same seed: same initial weights and
    batches, and for 'pro' the same first phase, so the difference is the variant's own effect).
    Returns mean, std, standard error and wins over the common seeds, or None."""
    if variant == 'n2s' or 'n2s' not in runs:
        return None
    seeds = sorted(set(runs[variant]) & set(runs['n2s']))
    diffs = [runs[variant][s]['psnr'] - runs['n2s'][s]['psnr'] for s in seeds]
    if not diffs:
        return None
    mean, std = mean_std(diffs)
    return {'mean': mean, 'std': std, 'sem': std / len(diffs) ** 0.5,
            'wins': sum(d > 0 for d in diffs), 'n': len(diffs)}


def summary_rows(runs: Dict[str, Dict[int, Dict]], baselines: Dict[str, Dict]) -> List[Dict]:
    rows = []
    for variant, by_seed in runs.items():
        psnr, psnr_sd = mean_std([r['psnr'] for r in by_seed.values()])
        ssim, ssim_sd = mean_std([r['ssim'] for r in by_seed.values()])
        minutes = statistics.mean(r['seconds'] for r in by_seed.values()) / 60
        paired = paired_difference(runs, variant)
        rows.append({'method': variant, 'seeds': len(by_seed), 'psnr_mean': round(psnr, 2),
                     'psnr_std': round(psnr_sd, 2), 'ssim_mean': round(ssim, 4),
                     'ssim_std': round(ssim_sd, 4),
                     'vs_n2s': '' if paired is None else
                     f"{paired['mean']:+.2f} ± {paired['sem']:.2f} ({paired['wins']}/{paired['n']})",
                     'time': f'{minutes:.1f} min/run'})
    for name, b in baselines.items():
        rows.append({'method': name, 'seeds': '-', 'psnr_mean': round(b['psnr'], 2),
                     'psnr_std': '', 'ssim_mean': round(b['ssim'], 4), 'ssim_std': '',
                     'vs_n2s': '', 'time': f"{b['seconds']:.2f} s/image"})
    return rows


def markdown(rows: List[Dict], title: str) -> str:
    lines = [title, '', '| method | seeds | PSNR (dB) mean ± std | paired Δ vs n2s ± s.e. (wins) | '
             'SSIM mean ± std | time |', '|---|---|---|---|---|---|']
    for r in rows:
        psnr = f"{r['psnr_mean']:.2f}" + (f" ± {r['psnr_std']:.2f}" if r['psnr_std'] != '' else '')
        ssim = f"{r['ssim_mean']:.4f}" + (f" ± {r['ssim_std']:.4f}" if r['ssim_std'] != '' else '')
        lines.append(f"| {r['method']} | {r['seeds']} | {psnr} | {r['vs_n2s']} | {ssim} | "
                     f"{r['time']} |")
    lines += ['', 'paired Δ: PSNR minus that of n2s with the same seed (same initial weights and '
              'batches; pro and pro-stopgrad also share n2s\'s first phase), mean ± standard '
              'error over seeds, and in how many seeds the variant won. Time: wall time per '
              'run, evaluations included, the shared first phase counted in full for each.']
    return '\n'.join(lines)


def plot(runs: Dict[str, Dict[int, Dict]], baselines: Dict[str, Dict], path: str,
         title: str) -> List[str]:
    """Mean test PSNR against step per variant (band: ± one std over seeds), written atomically.
    Returns the legend's labels."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (variant, by_seed), style in zip(runs.items(),
                                         itertools.cycle(('-', '--', ':', '-.', (0, (1, 4))))):
        steps = [s for s, _ in next(iter(by_seed.values()))['curve']]
        values = np.array([[p for _, p in r['curve']] for r in by_seed.values()])
        mean, std = values.mean(0), values.std(0)
        ax.plot(steps, mean, linestyle=style, marker='.', label=f'{variant} ({len(by_seed)} seeds)')
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    for (name, b), style in zip(baselines.items(), itertools.cycle(('--', ':', '-.'))):
        ax.axhline(b['psnr'], color='grey', linestyle=style, label=name)
    ax.set_xlabel('training step')
    ax.set_ylabel('test PSNR (dB)')
    ax.set_title(textwrap.fill(title, 100), fontsize=8)
    ax.grid(alpha=0.3)
    labels = ax.get_legend_handles_labels()[1]
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return labels


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('--dataset', default='auto',
                   help='demo, bsd68, or auto: bsd68 when its files are in --data-dir, else demo')
    p.add_argument('--data-dir', default=cli.DATA_DIR, help='folder of the data sets')
    p.add_argument('--preset', choices=sorted(PRESETS), default='cpu')
    for key in PRESETS['cpu']:
        p.add_argument('--' + key.replace('_', '-'), type=cli.positive_int, default=None,
                       help='overrides the preset')
    p.add_argument('--seeds', type=int, nargs='+', default=[666, 667, 668, 669, 670])
    p.add_argument('--variants', nargs='+', type=variant_name, default=list(VARIANTS),
                   help=f"of {', '.join(VARIANTS)} and n2s:LMBD")
    p.add_argument('--no-baselines', action='store_true', help='skip NLM and BM3D')
    p.add_argument('--out', default='results/quality')
    args = p.parse_args(argv)
    cli.start_tensorflow(training=True)
    cfg = {k: getattr(args, k) or v for k, v in PRESETS[args.preset].items()}
    if cfg['pro_steps'] >= cfg['steps']:
        raise ValueError(f"--pro-steps {cfg['pro_steps']} must be below --steps {cfg['steps']}")
    from utils.data.datasets import get_dataset
    dataset = get_dataset(args.dataset, args.data_dir)
    tests = dataset.test_images(args.data_dir)  # fails early, with a fix, when data is missing
    images, _ = dataset.training_data(args.data_dir)
    os.makedirs(args.out, exist_ok=True)

    baselines = {} if args.no_baselines else {
        'NLM (scikit-image)': score_denoiser(nlm, tests),
        'BM3D, blind (sigma estimated)': score_denoiser(bm3d, tests),
        'BM3D, known sigma 25': score_denoiser(lambda x: bm3d(x, 25.0), tests)}
    for name, b in baselines.items():
        print(f"{name}: {b['psnr']:.2f} dB, SSIM {b['ssim']:.4f}, {b['seconds']:.2f} s/image")

    runs: Dict[str, Dict[int, Dict]] = {v: {} for v in args.variants}
    total, done = len(args.variants) * len(args.seeds), 0
    for seed in args.seeds:  # seeds outermost: a short run still compares every variant
        for variant in args.variants:
            result = cached_run(variant, seed, cfg, dataset, images, tests,
                                os.path.join(args.out, 'runs'))
            runs[variant][seed] = result
            done += 1
            print(f"[{done}/{total}] {variant} seed {seed}: {result['psnr']:.2f} dB, SSIM "
                  f"{result['ssim']:.4f} ({result['seconds'] / 60:.1f} min)", flush=True)

    title = (f"{dataset.name} test set ({len(tests)} images); width {cfg['filters']}, batch "
             f"{cfg['batch_size']}, patch {cfg['patch_size']}, {cfg['steps']} steps "
             f"(pro: last {cfg['pro_steps']} N2SP); seeds {' '.join(map(str, args.seeds))}")
    rows = summary_rows(runs, baselines)
    table = markdown(rows, title)
    print(table)
    write_text_atomic(os.path.join(args.out, 'table.md'), table + '\n')
    write_csv_atomic(os.path.join(args.out, 'runs.csv'), [
        {'variant': v, 'seed': s, 'psnr': round(r['psnr'], 3), 'ssim': round(r['ssim'], 4),
         'minutes': round(r['seconds'] / 60, 2)} for v, by in runs.items() for s, r in by.items()])
    write_csv_atomic(os.path.join(args.out, 'curves.csv'), [
        {'variant': v, 'seed': s, 'step': step, 'psnr': round(psnr, 3)}
        for v, by in runs.items() for s, r in by.items() for step, psnr in r['curve']])
    plot(runs, baselines, os.path.join(args.out, 'convergence.png'), title)
    print(f"wrote table.md, runs.csv, curves.csv and convergence.png under {args.out}")


if __name__ == '__main__':
    cli.run(main)
