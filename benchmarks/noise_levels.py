"""Noise-level benchmark: PSNR against the noise level for every grey 2D model of trained_models/
(network output, and with `--refine`), the noisy input, NLM and BM3D.

    python -m benchmarks.noise_levels             # BSD68's 68 test images, sigma 5 10 15 25 35 50
    python -m benchmarks.noise_levels --poisson   # the same images, Poisson-Gaussian noise
    python -m benchmarks.noise_levels --colour    # colour photographs bundled with scikit-image
    python -m benchmarks.noise_levels --bm3d-pilot --out results/bm3d_pilot   # + --refine bm3d

Noise: Gaussian, numpy `default_rng(9000 + sigma)` (test images), drawn for the images in their order, float, unclipped, on 0..255. Models see
the noisy float image exactly as `Noise2Same.predict` takes it (what test_single.py feeds them
from a file, before rounding). NLM is `utils.evaluation.baselines.nlm` (blind, `estimate_sigma`); BM3D is
given the true sigma (its best case) or the blind estimate and, being slow, runs on every
`--bm3d-every`-th image only: the second table compares every method on that subset.

--poisson: x = (Poisson(clean / 255 * peak) + N(0, read^2)) / peak * 255 for peaks 1 3 10 30
100 photons and read noise 0 and 2 photons (`bsd68_build.poisson_gaussian`, numpy
default_rng([9000, 10 * peak, 10 * read])); the classical answers are NLM (blind) and NLM and
BM3D on the generalised Anscombe transform with the known peak and read noise
(`baselines.on_anscombe`). Every table is followed by the number of images each method
returned below their noisy input, and the refinement's estimated gain is compared with the
true one (`gain.md`). Classical results are cached per
image in --out/classical.csv, so a rerun only computes what is missing.

Writes --out/table.md, results.csv (per image) and noise_levels.png (PSNR against sigma; `--report`
remakes the table and plot from results.csv); with --colour colour.md/colour.csv/colour.png
(`--report --colour` remakes them from colour.csv); with --poisson poisson.md/poisson.csv/poisson.png. run.json and
colour_run.json record the machine and date the rows were measured on. Seconds per image are
wall times on this machine with whatever ran beside (the table says so).
"""
import json
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from benchmarks import finish_plot
from n2s_app import cli
from n2s_app.model_source import default_model_for
from utils.core import environment
from utils.core.noise import measured_noise
from utils.core.files import write_csv_atomic, write_text_atomic
from utils.data import bsd68_build
from utils.prediction.photo import COLOUR_MODES, denoise_array
from utils.prediction.predictor import PredictOptions

SIGMAS = (5, 10, 15, 25, 35, 50)
PEAKS, READS = (1, 3, 10, 30, 100), (0, 2)  # --poisson: photons at the brightest value, read noise
COLOUR_SIGMAS = (15, 30)
COLOUR_PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'immunohistochemistry')
NOISY, NLM, BM3D = 'noisy input', 'NLM (blind)', 'BM3D (known sigma)'
BM3D_BLIND = 'BM3D (blind sigma)'
NLM_GAT, BM3D_GAT = 'NLM on Anscombe (known)', 'BM3D on Anscombe (known)'
DEFAULT = (f'test_single.py default ({cli.DEFAULT_MODEL}; {cli.NOISY_MODEL} above '
           f'{cli.NOISY_ABOVE}), refined')
PILOT = "the default, then BM3D's Wiener stage (--refine bm3d)"


def key(setting) -> str:
    """A noise setting as the results store it: 'S' for Gaussian sigma S, else its label."""
    return setting if isinstance(setting, str) else f'{setting:g}'


def heading(setting) -> str:
    return setting if isinstance(setting, str) else f'sigma {setting:g}'


def poisson_settings() -> List[Tuple[str, float, float]]:
    """(label, peak, read) of --poisson, from the noisiest."""
    return [(f'peak {p:g}' + (f', read {r:g}' if r else ''), float(p), float(r))
            for r in READS for p in PEAKS]


def poisson_images(clean: Sequence[np.ndarray], peak: float, read: float) -> List[np.ndarray]:
    """Each clean image through `bsd68_build.poisson_gaussian` with default_rng([9000,
    round(10 * peak), round(10 * read)]), drawn in order; float64 on 0..255."""
    rng = np.random.default_rng([9000, int(round(10 * peak)), int(round(10 * read))])
    return [bsd68_build.poisson_gaussian(c, peak, read, rng) for c in clean]


def noisy_images(clean: Sequence[np.ndarray], sigma: float, seed: int = 9000,
                 draws: int = 1) -> List[np.ndarray]:
    """Each clean image plus Gaussian noise of std `sigma` from default_rng(seed + sigma),
    drawn in order (`draws` noisy copies of each image, one after another); float64."""
    rng = np.random.default_rng(seed + int(sigma))
    return [c + rng.normal(0, sigma, c.shape) for c in clean for _ in range(draws)]


def validation_clean(from_dir: Optional[str]) -> List[np.ndarray]:
    """The clean held-out BSD68 validation images (test_397 .. test_400 of the training PNGs,
    never trained on), float64 on 0..255, read from the folder download.py --from takes."""
    if not from_dir:
        raise ValueError("--tune reads the clean validation PNGs: pass --from DIR (the folder "
                         "download.py --from took, e.g. ../shared/data/bsd68)")
    train_dir, _ = bsd68_build.find_png_folders(from_dir)
    pngs = bsd68_build.read_pngs(train_dir, bsd68_build.TRAIN_NAMES, bsd68_build.TRAIN_SHAPES)
    return [np.asarray(c, np.float64) for c in pngs[-bsd68_build.N_VALIDATION:]]


def grey_models(model_dir: str) -> List[str]:
    """The names of the 2D one-channel models in model_dir, sorted."""
    from utils.core.settings import read_settings
    names = []
    for name in sorted(os.listdir(model_dir)):
        settings = read_settings(os.path.join(model_dir, name)) or {}
        if settings.get('dim') == 2 and settings.get('in_channels') == 1:
            names.append(name)
    return names


# ----------------------------------------------------------------------------- measuring

class Results:
    """Per-image rows {method, sigma, image, psnr, ssim, seconds}; classical methods are kept
    in a cache file and reused."""

    def __init__(self, cache: Optional[str] = None):
        self.rows: List[Dict] = []
        self.cache_path = cache
        self.cache: Dict[Tuple[str, str, str], Dict] = {}
        if cache and os.path.exists(cache):
            import csv
            with open(cache, newline='') as f:
                self.cache = {(r['method'], r['sigma'], r['image']): {'gain_estimate': '', **r}
                              for r in csv.DictReader(f)}

    def add(self, method: str, sigma, image: str, clean: np.ndarray, output: np.ndarray,
            seconds: float, gain: Optional[float] = None) -> Dict:
        """One row; `gain`: the refinement's estimated PSNR gain over the input (dB)."""
        from utils.evaluation.metrics import PSNR, SSIM
        row = {'method': method, 'sigma': key(sigma), 'image': image,
               'psnr': round(PSNR(clean, output), 3), 'ssim': round(SSIM(clean, output), 4),
               'seconds': round(seconds, 3), 'gain_estimate': '' if gain is None else round(gain, 3)}
        self.rows.append(row)
        return row

    def classical(self, method: str, sigma: float, image: str, clean: np.ndarray,
                  denoise: Callable[[], np.ndarray]) -> None:
        cached = (method, key(sigma), image)
        if cached in self.cache:
            row = self.cache[cached]
            self.rows.append({**row, 'psnr': float(row['psnr']), 'ssim': float(row['ssim']),
                              'seconds': float(row['seconds'])})
            return
        start = time.perf_counter()
        output = denoise()
        self.cache[cached] = self.add(method, sigma, image, clean, output,
                                   time.perf_counter() - start)
        if self.cache_path:  # after every image: an interrupted run keeps what it measured
            write_csv_atomic(self.cache_path, list(self.cache.values()))

    def mean(self, method: str, sigma, field: str = 'psnr',
             images: Optional[set] = None) -> Optional[float]:
        values = [r[field] for r in self.rows if r['method'] == method
                  and r['sigma'] == key(sigma) and (images is None or r['image'] in images)]
        return float(np.mean(values)) if values else None

    def methods(self) -> List[str]:
        return list(dict.fromkeys(r['method'] for r in self.rows))

    def paired(self, method: str, reference: str, sigma: float) -> Optional[float]:
        """Mean over the images both were run on of PSNR(method) - PSNR(reference)."""
        psnr = lambda m: {r['image']: r['psnr'] for r in self.rows
                          if r['method'] == m and r['sigma'] == key(sigma)}
        mine, theirs = psnr(method), psnr(reference)
        common = sorted(set(mine) & set(theirs))
        return float(np.mean([mine[i] - theirs[i] for i in common])) if common else None

    def below_input(self, method: str, sigma) -> Optional[int]:
        """How many images `method` returned below their noisy input's PSNR at `sigma`."""
        psnr = lambda m: {r['image']: r['psnr'] for r in self.rows
                          if r['method'] == m and r['sigma'] == key(sigma)}
        mine, noisy = psnr(method), psnr(NOISY)
        return sum(mine[i] < noisy[i] for i in mine if i in noisy) if mine else None

    def count(self, method: str, images: Optional[set] = None) -> int:
        return len({r['image'] for r in self.rows if r['method'] == method
                    and (images is None or r['image'] in images)})

    def label(self, method: str, images: Optional[set] = None) -> str:
        """The method, with '(n of N images)' when it ran on fewer images than the others."""
        n, most = self.count(method, images), max(self.count(m, images) for m in self.methods())
        return method if n == most else f'{method} ({n} of {most} images)'

    @classmethod
    def read(cls, path: str) -> 'Results':
        """The per-image rows of a results.csv written before."""
        import csv
        results = cls()
        with open(path, newline='') as f:
            results.rows = [{**r, 'psnr': float(r['psnr']), 'ssim': float(r['ssim']),
                             'seconds': float(r['seconds'])} for r in csv.DictReader(f)]
        for row in results.rows:
            row['gain_estimate'] = row.get('gain_estimate') or ''
        return results


def run_models(results: Results, names: List[str], model_dir: str, sigma,
               images: List[Tuple[str, np.ndarray, np.ndarray]], denoise=None, refined=None,
               tag: str = '') -> None:
    """Each model's network output and its refinement on (name, clean, noisy) images, as
    methods '<name><tag>' and '<name><tag> --refine'; `denoise(predictor, noisy) -> output`
    (default `predictor.predict`), `refined(predictor, noisy, output) -> (refined,
    [Refinement])` (default `predictor.refine`, which reuses the output as `predict(refine=
    True)` does; a given `refined` runs the whole refined path, network included). The
    refined row's time includes the network's either way."""
    from models import load_model
    predict = denoise or (lambda p, x: p.predict(x))
    refine = refined or (lambda p, x, out: p.refine(x, out, plain=denoise is None))
    for name in names:
        predictor = load_model(model_dir, name).restored_predictor()
        predict(predictor, images[0][2])  # warm-up (tracing), not timed
        for image, clean, noisy in images:
            start = time.perf_counter()
            output = predict(predictor, noisy)
            seconds = time.perf_counter() - start
            results.add(name + tag, sigma, image, clean, output, seconds)
            start = time.perf_counter()
            out, reports = refine(predictor, noisy, output)
            refine_seconds = time.perf_counter() - start + (0.0 if refined else seconds)
            gains = [r.gain_db for r in reports]
            results.add(f'{name}{tag} --refine', sigma, image, clean, out, refine_seconds,
                        gain=None if None in gains or len(gains) != 1 else gains[0])


def default_for(noisy: np.ndarray, model_dir: str) -> str:
    """The model test_single.py picks without --name for a noisy image."""
    return default_model_for(measured_noise(noisy), model_dir)


def add_default_rows(results: Results, sigma, images: List[Tuple[str, np.ndarray, np.ndarray]],
                     model_dir: str) -> None:
    """The method DEFAULT: each image's refined row of the model test_single.py chooses for it
    without --name (`model_source.default_model_for`), when both of its models were run."""
    refined = {(r['method'], r['image']): r for r in results.rows if r['sigma'] == key(sigma)}
    chosen = [refined.get((default_for(noisy, model_dir) + ' --refine', image))
              for image, _, noisy in images]
    if None not in chosen:
        results.rows.extend({**row, 'method': DEFAULT} for row in chosen)


def add_pilot_rows(results: Results, sigma, images: List[Tuple[str, np.ndarray, np.ndarray]],
                   model_dir: str) -> None:
    """The method PILOT: test_single.py --refine bm3d, the default's refined output as the
    pilot of BM3D's Wiener stage (`utils.prediction.bm3d_stage`); the time includes all."""
    from models import load_model
    predictors = {}
    for image, clean, noisy in images:
        name = default_for(noisy, model_dir)
        if name not in predictors:
            predictors[name] = load_model(model_dir, name).restored_predictor()
            predictors[name].predict(noisy)  # warm-up (tracing), not timed
        start = time.perf_counter()
        out = predictors[name].predict(noisy, PredictOptions(refine=True, bm3d=True))
        results.add(PILOT, sigma, image, clean, out, time.perf_counter() - start)


# ----------------------------------------------------------------------------- report

def table(results: Results, sigmas: Sequence[float], title: str,
          images: Optional[set] = None, seconds_at: Optional[float] = None) -> str:
    """Markdown: one row per method, mean PSNR per sigma (best in bold), mean SSIM and seconds
    per image at `seconds_at`."""
    methods = results.methods()
    means = {m: [results.mean(m, s, images=images) for s in sigmas] for m in methods}
    full = [m for m in methods if results.label(m, images) == m]  # bold only among these
    best = [max(means[m][i] for m in full if means[m][i] is not None) for i in range(len(sigmas))]
    at = seconds_at if seconds_at in sigmas else sigmas[len(sigmas) // 2]
    lines = [title, '', '| method | ' + ' | '.join(heading(s) for s in sigmas)
             + f' | SSIM at {key(at)} | s/image |', '|---' * (len(sigmas) + 3) + '|']
    for m in methods:
        if all(v is None for v in means[m]):
            continue
        cells = ['-' if v is None else (f'**{v:.2f}**' if v == b and m != NOISY and m in full
                                        else f'{v:.2f}') for v, b in zip(means[m], best)]
        ssim, seconds = results.mean(m, at, 'ssim', images), results.mean(m, at, 'seconds', images)
        lines.append(f'| {results.label(m, images)} | ' + ' | '.join(cells) + ' | '
                     + ('-' if ssim is None else f'{ssim:.4f}') + ' | '
                     + ('-' if seconds is None or m == NOISY else f'{seconds:.2f}') + ' |')
    return '\n'.join(lines)


def below_table(results: Results, sigmas: Sequence, title: str) -> str:
    """Markdown: per method and setting, how many images came back below their noisy input
    (of how many it ran on)."""
    lines = [title, '', '| method | ' + ' | '.join(heading(s) for s in sigmas) + ' |',
             '|---' * (len(sigmas) + 1) + '|']
    for m in results.methods():
        if m == NOISY:
            continue
        cells = []
        for s in sigmas:
            n = results.below_input(m, s)
            total = len({r['image'] for r in results.rows if r['method'] == m
                         and r['sigma'] == key(s)})
            cells.append('-' if n is None else f'{n} of {total}')
        lines.append(f'| {m} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def gain_table(results: Results, sigmas: Sequence, title: str) -> str:
    """Markdown: per refined method and setting, the median and the largest absolute error of
    the refinement's estimated gain over the input against the true one (dB), and the share of
    images it was estimated on."""
    lines = [title, '', '| method | ' + ' | '.join(heading(s) for s in sigmas) + ' |',
             '|---' * (len(sigmas) + 1) + '|']
    for m in results.methods():
        if not m.endswith('--refine'):
            continue
        cells = []
        for s in sigmas:
            noisy = {r['image']: r['psnr'] for r in results.rows
                     if r['method'] == NOISY and r['sigma'] == key(s)}
            rows = [r for r in results.rows if r['method'] == m and r['sigma'] == key(s)]
            errors = [abs(float(r['gain_estimate']) - (r['psnr'] - noisy[r['image']]))
                      for r in rows if r['gain_estimate'] != '' and r['image'] in noisy]
            cells.append('-' if not errors else
                         f'{np.median(errors):.2f} / {max(errors):.2f} ({len(errors)}/{len(rows)})')
        lines.append(f'| {m} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot(results: Results, sigmas: Sequence[float], path: str, title: str,
         reference: str = NLM, shown: Callable[[str], bool] = lambda method: True) -> None:
    """Left: PSNR against sigma, one line per method (those `shown`); right: each method's
    PSNR minus the `reference` method's on the same images (so BM3D's subset compares like
    with like)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax, gain) = plt.subplots(1, 2, figsize=(11, 4.5))
    palette = plt.cm.tab20.colors  # 20 colours; from the 21st method on, dash-dotted lines
    methods = [m for m in results.methods() if shown(m)]
    index = {m: i for i, m in enumerate(m for m in methods if m != NOISY)}
    highest = 0.0
    numeric = not any(isinstance(s, str) for s in sigmas)
    xs = list(sigmas) if numeric else list(range(len(sigmas)))
    for method in methods:
        if method == NOISY:
            style = dict(color='grey', linestyle=':')
        else:
            i, classical = index[method], 'NLM' in method or 'BM3D' in method
            style = dict(color=palette[i % len(palette)],
                         linestyle='--' if classical else '-' if i < len(palette) else '-.')
        points = [(x, results.mean(method, s)) for x, s in zip(xs, sigmas)]
        ax.plot(*zip(*[(x, v) for x, v in points if v is not None]), marker='o', markersize=3,
                label=results.label(method), **style)
        points = [(x, v) for x, v in ((x, results.paired(method, reference, s))
                                      for x, s in zip(xs, sigmas)) if v is not None]
        gain.plot(*zip(*points), marker='o', markersize=3, **style)
        highest = max([highest] + [v for _, v in points])
    xlabel = 'noise sigma (0..255)' if numeric else 'noise'
    for axis in (ax, gain):
        axis.set_xlabel(xlabel)
        if not numeric:
            axis.set_xticks(xs)
            axis.set_xticklabels([heading(s) for s in sigmas], rotation=45, ha='right', fontsize=7)
    ax.set_ylabel('PSNR (dB)')
    gain.set_ylabel(f'PSNR minus {reference} on the same images (dB)')
    gain.set_ylim(-4 if numeric else -8, max(2.5, highest + 0.3))
    gain.axhline(0, color='black', linewidth=0.8)
    gain.grid(alpha=0.3)
    finish_plot(fig, ax, path, title, legend_size=7)


# ----------------------------------------------------------------------------- the three parts

def grey_benchmark(args, out: str) -> None:
    from tqdm.auto import tqdm

    from utils.data.datasets import DATASETS
    from utils.evaluation.baselines import bm3d, nlm
    tests = DATASETS['bsd68'].test_images(args.data_dir)[:args.images]
    names = args.names or grey_models(args.model_dir)
    results = Results(os.path.join(out, 'classical.csv'))
    subset = {t.name for t in tests[::args.bm3d_every]}
    for sigma in tqdm(args.sigmas, desc='noise levels', unit='sigma'):
        noisy = noisy_images([t.clean for t in tests], sigma)
        images = [(t.name, t.clean, n) for t, n in zip(tests, noisy)
                  if t.name in subset or not args.bm3d_pilot]  # the same draws either way
        for name, clean, x in images:
            results.add(NOISY, sigma, name, clean, x, 0.0)
            results.classical(NLM, sigma, name, clean, lambda: nlm(x))
            if name in subset and not args.no_bm3d:
                results.classical(BM3D, sigma, name, clean, lambda: bm3d(x, sigma))
                results.classical(BM3D_BLIND, sigma, name, clean, lambda: bm3d(x))
        run_models(results, names, args.model_dir, sigma, images)
        add_default_rows(results, sigma, images, args.model_dir)
        if args.bm3d_pilot:
            add_pilot_rows(results, sigma, images, args.model_dir)
    write_run(out, 'run.json')
    grey_report(results, args, out)


def write_run(out: str, name: str) -> None:
    """Record where and when the rows were measured, for the reports' titles."""
    write_text_atomic(os.path.join(out, name), json.dumps(
        {'machine': environment.machine_label(), 'date': time.strftime('%Y-%m-%d')}) + '\n')


def read_run(out: str, name: str) -> Dict[str, str]:
    with open(os.path.join(out, name)) as f:
        return json.load(f)


def grey_report(results: Results, args, out: str) -> None:
    """table.md and noise_levels.png of the grey benchmark's rows (also `--report`)."""
    names = sorted({r['image'] for r in results.rows})
    subset = {r['image'] for r in results.rows if r['method'] == BM3D}
    run = read_run(out, 'run.json')
    machine = run['machine']
    title = (f"BSD68 test images ({len(names)}), Gaussian noise default_rng(9000 + sigma); "
             f"mean PSNR (dB); {machine}, {run['date']}")
    text = table(results, args.sigmas, f'### {title}', seconds_at=25)
    if subset:
        text += '\n\n' + table(results, args.sigmas,
                               f'### The same on the BM3D subset: every {args.bm3d_every}th image '
                               f'({len(subset)} images)', images=subset, seconds_at=25)
    text += '\n\n' + below_table(results, args.sigmas, '### Images below their noisy input')
    text += ('\n\ns/image: wall time of one image at sigma 25 (network: prediction of the '
             'whole image; --refine: prediction and refinement), on the machine named above '
             'with whatever ran beside it.\n')
    write_text_atomic(os.path.join(out, 'gain.md'), gain_table(
        results, args.sigmas, "### The refinement's estimated gain over the input: median / "
        "largest absolute error against the true gain (dB) (images with an estimate / all)")
        + '\n')
    finish(results, text, args.sigmas, out, 'table.md', 'results.csv', 'noise_levels.png',
           f'BSD68 ({len(names)} test images); {machine}')


def poisson_benchmark(args, out: str) -> None:
    from tqdm.auto import tqdm

    from utils.data.datasets import DATASETS
    from utils.evaluation.baselines import bm3d, nlm, on_anscombe
    tests = DATASETS['bsd68'].test_images(args.data_dir)[:args.images]
    names = args.names or grey_models(args.model_dir)
    results = Results(os.path.join(out, 'poisson_classical.csv'))
    subset = {t.name for t in tests[::args.bm3d_every]}
    for label, peak, read in tqdm(poisson_settings(), desc='noise settings', unit='setting'):
        noisy = poisson_images([np.asarray(t.clean, np.float64) for t in tests], peak, read)
        images = [(t.name, t.clean, n) for t, n in zip(tests, noisy)
                  if t.name in subset or not args.bm3d_pilot]  # the same draws either way
        for name, clean, x in images:
            results.add(NOISY, label, name, clean, x, 0.0)
            results.classical(NLM, label, name, clean, lambda: nlm(x))
            results.classical(NLM_GAT, label, name, clean, lambda: on_anscombe(
                lambda z: nlm(z, sigma=1.0), x, peak, read))
            if name in subset and not args.no_bm3d:
                results.classical(BM3D_GAT, label, name, clean, lambda: on_anscombe(
                    lambda z: bm3d(z, 1.0), x, peak, read))
        run_models(results, names, args.model_dir, label, images)
        add_default_rows(results, label, images, args.model_dir)
        if args.bm3d_pilot:
            add_pilot_rows(results, label, images, args.model_dir)
    write_run(out, 'poisson_run.json')
    poisson_report(results, args, out)


def poisson_report(results: Results, args, out: str) -> None:
    """poisson.md, poisson_gain.md and poisson.png of the --poisson rows (also `--report
    --poisson`)."""
    settings = [label for label, _, _ in poisson_settings()]
    names = sorted({r['image'] for r in results.rows})
    subset = {r['image'] for r in results.rows if r['method'] == BM3D_GAT}
    run = read_run(out, 'poisson_run.json')
    title = (f"BSD68 test images ({len(names)}), Poisson-Gaussian noise (peak photons, read "
             f"noise std in photons); mean PSNR (dB); {run['machine']}, {run['date']}")
    text = table(results, settings, f'### {title}', seconds_at='peak 10')
    if subset:
        text += '\n\n' + table(results, settings,
                               f'### The same on the BM3D subset: every {args.bm3d_every}th image '
                               f'({len(subset)} images)', images=subset, seconds_at='peak 10')
    text += '\n\n' + below_table(results, settings, '### Images below their noisy input') + '\n'
    write_text_atomic(os.path.join(out, 'poisson_gain.md'), gain_table(
        results, settings, "### The refinement's estimated gain over the input: median / largest "
        "absolute error against the true gain (dB) (images with an estimate / all)") + '\n')
    finish(results, text, settings, out, 'poisson.md', 'poisson.csv', 'poisson.png',
           f'BSD68 ({len(names)} test images), Poisson-Gaussian; {run["machine"]}',
           reference=NLM_GAT)


def colour_photos(names: Sequence[str]) -> List[Tuple[str, np.ndarray]]:
    import skimage.data
    return [(name, getattr(skimage.data, name)().astype(np.float64)) for name in names]


def colour_benchmark(args, out: str) -> None:
    from tqdm.auto import tqdm

    from utils.evaluation.baselines import bm3d_rgb, nlm
    names = args.names or grey_models(args.model_dir)
    results = Results(os.path.join(out, 'colour_classical.csv'))
    photos = colour_photos(COLOUR_PHOTOS[:args.images])

    for sigma in tqdm(args.colour_sigmas, desc='noise levels', unit='sigma'):
        noisy = noisy_images([c for _, c in photos], sigma)
        images = [(name, clean, x) for (name, clean), x in zip(photos, noisy)]
        for name, clean, x in images:
            results.add(NOISY, sigma, name, clean, x, 0.0)
            results.classical('colour NLM (blind)', sigma, name, clean,
                              lambda: nlm(x, channel_axis=-1))
            if not args.no_bm3d:
                results.classical('colour BM3D (known sigma)', sigma, name, clean,
                                  lambda: bm3d_rgb(x, sigma))
        for mode in COLOUR_MODES:
            run_models(results, names, args.model_dir, sigma, images, tag=f' [{mode}]',
                       denoise=lambda p, x, mode=mode: denoise_array(
                           p, x, PredictOptions(colour=mode)),
                       refined=lambda p, x, _, mode=mode: refined_colour(p, x, mode))
    write_run(out, 'colour_run.json')
    colour_report(results, args, out)


def refined_colour(predictor, x: np.ndarray, mode: str):
    """(refined, [Refinement]) of a colour image as test_single.py refines it: each channel of
    the colour space `mode` denoised and refined (`denoise_array`, network included)."""
    reports: List = []
    return denoise_array(predictor, x, PredictOptions(colour=mode, refine=True), reports), reports


def colour_report(results: Results, args, out: str) -> None:
    """colour.md and colour.png of the colour benchmark's rows (also `--report --colour`)."""
    run = read_run(out, 'colour_run.json')
    machine = run['machine']
    title = (f"Colour photographs of scikit-image ({', '.join(COLOUR_PHOTOS)}), Gaussian noise "
             f"default_rng(9000 + sigma) on each RGB value; mean PSNR (dB) over RGB; {machine}, "
             f"{run['date']}")
    text = table(results, args.colour_sigmas, f'### {title}', seconds_at=args.colour_sigmas[0])
    text += ('\n\n[channels]: each RGB channel denoised alone; [opponent]: an orthonormal '
             'luminance/chrominance transform, each channel normalised by its own mean and by '
             'the std of the RGB mean (utils/prediction/photo.denoise_array).\n')
    finish(results, text, args.colour_sigmas, out, 'colour.md', 'colour.csv', 'colour.png',
           f'colour photographs, [opponent] mode (both modes: colour.md); '
           f'{machine}', reference='colour NLM (blind)', shown=lambda m: '[channels]' not in m)


def finish(results: Results, text: str, sigmas, out: str, md: str, csv_name: str, png: str,
           title: str, reference: str = NLM, shown: Callable[[str], bool] = lambda m: True
           ) -> None:
    print(text)
    write_text_atomic(os.path.join(out, md), text)
    write_csv_atomic(os.path.join(out, csv_name), results.rows)
    plot(results, sigmas, os.path.join(out, png), title, reference, shown)
    print(f'wrote {md}, {csv_name} and {png} under {out}')


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('--names', nargs='+', default=None,
                   help='models under --model-dir (default: every grey 2D model there)')
    p.add_argument('--model-dir', default=cli.MODEL_DIR, help='folder of the models')
    p.add_argument('--data-dir', default=cli.DATA_DIR, help='where BSD68 is built')
    p.add_argument('--sigmas', type=float, nargs='+', default=list(SIGMAS),
                   help='noise std on 0..255')
    p.add_argument('--images', type=cli.positive_int, default=68,
                   help='first N test images (photographs with --colour)')
    p.add_argument('--bm3d-every', type=cli.positive_int, default=6,
                   help='BM3D on every Nth test image only (it takes ~10 s per image)')
    p.add_argument('--no-bm3d', action='store_true', help='skip BM3D')
    p.add_argument('--bm3d-pilot', action='store_true',
                   help="only the BM3D images (every --bm3d-every'th), with test_single.py "
                        "--refine bm3d (the default refined, then BM3D's Wiener stage) beside "
                        "the rest; copy classical.csv (poisson_classical.csv) into --out to "
                        "reuse its BM3D rows")
    p.add_argument('--colour', action='store_true', help='the colour photographs instead')
    p.add_argument('--colour-sigmas', type=float, nargs='+', default=list(COLOUR_SIGMAS))
    p.add_argument('--poisson', action='store_true',
                   help='Poisson-Gaussian noise (peaks 1..100, read noise 0 and 2) instead')
    p.add_argument('--report', action='store_true',
                   help='only remake table.md and noise_levels.png from --out/results.csv '
                        '(with --colour: colour.md and colour.png from colour.csv; with '
                        '--poisson: poisson.md and poisson.png from poisson.csv)')
    p.add_argument('--out', default='results/noise_levels', help='output folder')
    args = p.parse_args(argv)
    if args.report:
        if args.colour:
            return colour_report(Results.read(os.path.join(args.out, 'colour.csv')), args,
                                 args.out)
        if args.poisson:
            return poisson_report(Results.read(os.path.join(args.out, 'poisson.csv')), args,
                                  args.out)
        return grey_report(Results.read(os.path.join(args.out, 'results.csv')), args, args.out)
    if args.colour and args.poisson:
        p.error('--colour and --poisson are two benchmarks: run them one after the other')
    cli.start_tensorflow(training=False)
    os.makedirs(args.out, exist_ok=True)
    if args.poisson:
        poisson_benchmark(args, args.out)
    elif args.colour:
        colour_benchmark(args, args.out)
    else:
        grey_benchmark(args, args.out)


if __name__ == '__main__':
    cli.run(main)
