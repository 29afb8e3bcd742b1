"""Noise-level benchmark: PSNR against the noise sigma for every grey 2D model of trained_models/
(network output, and with `--refine`), the noisy input, NLM and BM3D with the known sigma.

    python -m benchmarks.noise_levels             # BSD68's 68 test images, sigma 5 10 15 25 35 50
    python -m benchmarks.noise_levels --colour    # colour photographs bundled with scikit-image
    python -m benchmarks.noise_levels --tune --from ../shared/data/bsd68   # the refinement window

Noise: Gaussian, numpy `default_rng(9000 + sigma)` (test images; `--tune`: 9100 + sigma, three
draws per image), drawn for the images in their order, float, unclipped, on 0..255. Models see
the noisy float image exactly as `Noise2Same.predict` takes it (what test_single.py feeds them
from a file, before rounding). NLM is `utils.evaluation.baselines.nlm` (blind, `estimate_sigma`); BM3D is
given the true sigma (its best case) and, being slow, runs on every `--bm3d-every`-th image
only: the second table compares every method on that subset. Classical results are cached per
image in --out/classical.csv, so a rerun only computes what is missing.

Writes --out/table.md, results.csv (per image) and noise_levels.png (PSNR against sigma; `--report`
remakes the table and plot from results.csv); with --colour colour.md/colour.csv/colour.png
(`--report --colour` remakes them from colour.csv); with --tune tune.md. run.json and
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
from utils.core import environment
from utils.core.files import write_csv_atomic, write_text_atomic
from utils.data import bsd68_build
from utils.prediction.photo import COLOUR_MODES, denoise_array
from utils.prediction.predictor import PredictOptions

SIGMAS = (5, 10, 15, 25, 35, 50)
COLOUR_SIGMAS = (15, 30)
COLOUR_PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'immunohistochemistry')
TUNE_WINDOWS = (5, 7, 9, 13, 17, 21, 29)
NOISY, NLM, BM3D = 'noisy input', 'NLM (blind)', 'BM3D (known sigma)'


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
                self.cache = {(r['method'], r['sigma'], r['image']): r for r in csv.DictReader(f)}

    def add(self, method: str, sigma: float, image: str, clean: np.ndarray, output: np.ndarray,
            seconds: float) -> Dict:
        from utils.evaluation.metrics import PSNR, SSIM
        row = {'method': method, 'sigma': f'{sigma:g}', 'image': image,
               'psnr': round(PSNR(clean, output), 3), 'ssim': round(SSIM(clean, output), 4),
               'seconds': round(seconds, 3)}
        self.rows.append(row)
        return row

    def classical(self, method: str, sigma: float, image: str, clean: np.ndarray,
                  denoise: Callable[[], np.ndarray]) -> None:
        key = (method, f'{sigma:g}', image)
        if key in self.cache:
            row = self.cache[key]
            self.rows.append({**row, 'psnr': float(row['psnr']), 'ssim': float(row['ssim']),
                              'seconds': float(row['seconds'])})
            return
        start = time.perf_counter()
        output = denoise()
        self.cache[key] = self.add(method, sigma, image, clean, output,
                                   time.perf_counter() - start)
        if self.cache_path:  # after every image: an interrupted run keeps what it measured
            write_csv_atomic(self.cache_path, list(self.cache.values()))

    def mean(self, method: str, sigma: float, key: str = 'psnr',
             images: Optional[set] = None) -> Optional[float]:
        values = [r[key] for r in self.rows if r['method'] == method and r['sigma'] == f'{sigma:g}'
                  and (images is None or r['image'] in images)]
        return float(np.mean(values)) if values else None

    def methods(self) -> List[str]:
        return list(dict.fromkeys(r['method'] for r in self.rows))

    def paired(self, method: str, reference: str, sigma: float) -> Optional[float]:
        """Mean over the images both were run on of PSNR(method) - PSNR(reference)."""
        psnr = lambda m: {r['image']: r['psnr'] for r in self.rows
                          if r['method'] == m and r['sigma'] == f'{sigma:g}'}
        mine, theirs = psnr(method), psnr(reference)
        common = sorted(set(mine) & set(theirs))
        return float(np.mean([mine[i] - theirs[i] for i in common])) if common else None

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
        return results


def run_models(results: Results, names: List[str], model_dir: str, sigma: float,
               images: List[Tuple[str, np.ndarray, np.ndarray]], denoise=None,
               tag: str = '') -> None:
    """Each model's network output and its refinement (`utils.prediction.refine`) on (name, clean, noisy)
    images, as methods '<name><tag>' and '<name><tag> --refine'; `denoise(model, noisy) ->
    output` (default `model.predict`). The refinement reuses the network output (what
    `predict(refine=True)` computes); its time includes the network's."""
    from models import load_model
    from utils.prediction.refine import refine
    for name in names:
        model = load_model(model_dir, name)
        predict = denoise or (lambda m, x: m.predict(x))
        predict(model, images[0][2])  # warm-up (tracing), not timed
        for image, clean, noisy in images:
            start = time.perf_counter()
            output = predict(model, noisy)
            seconds = time.perf_counter() - start
            results.add(name + tag, sigma, image, clean, output, seconds)
            start = time.perf_counter()
            refined = refine(noisy, output, channel_axis=-1 if noisy.ndim == 3 else None)
            results.add(f'{name}{tag} --refine', sigma, image, clean, refined,
                        seconds + time.perf_counter() - start)


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
    lines = [title, '', '| method | ' + ' | '.join(f'sigma {s:g}' for s in sigmas)
             + f' | SSIM at {at:g} | s/image |', '|---' * (len(sigmas) + 3) + '|']
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
    for method in methods:
        if method == NOISY:
            style = dict(color='grey', linestyle=':')
        else:
            i, classical = index[method], 'NLM' in method or 'BM3D' in method
            style = dict(color=palette[i % len(palette)],
                         linestyle='--' if classical else '-' if i < len(palette) else '-.')
        points = [(s, results.mean(method, s)) for s in sigmas]
        ax.plot(*zip(*[(s, v) for s, v in points if v is not None]), marker='o', markersize=3,
                label=results.label(method), **style)
        points = [(s, v) for s, v in ((s, results.paired(method, reference, s)) for s in sigmas)
                  if v is not None]
        gain.plot(*zip(*points), marker='o', markersize=3, **style)
        highest = max([highest] + [v for _, v in points])
    ax.set_xlabel('noise sigma (0..255)')
    ax.set_ylabel('PSNR (dB)')
    gain.set_xlabel('noise sigma (0..255)')
    gain.set_ylabel(f'PSNR minus {reference} on the same images (dB)')
    gain.set_ylim(-4, max(2.5, highest + 0.3))
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
        images = [(t.name, t.clean, n) for t, n in zip(tests, noisy)]
        for name, clean, x in images:
            results.add(NOISY, sigma, name, clean, x, 0.0)
            results.classical(NLM, sigma, name, clean, lambda: nlm(x))
            if name in subset and not args.no_bm3d:
                results.classical(BM3D, sigma, name, clean, lambda: bm3d(x, sigma))
        run_models(results, names, args.model_dir, sigma, images)
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
    text += ('\n\ns/image: wall time of one image at sigma 25 (network: prediction of the '
             'whole image; --refine: prediction and refinement), on the machine named above '
             'with whatever ran beside it.\n')
    finish(results, text, args.sigmas, out, 'table.md', 'results.csv', 'noise_levels.png',
           f'BSD68 ({len(names)} test images); {machine}')


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
                       denoise=lambda m, x, mode=mode: denoise_array(
                           m.restored_predictor(), x, PredictOptions(colour=mode)))
    write_run(out, 'colour_run.json')
    colour_report(results, args, out)


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


def tune(args, out: str) -> None:
    """Mean PSNR of the refinement per window and sigma on the held-out BSD68 validation
    images (test_397 .. test_400 of the training PNGs, never trained on), three noise draws
    each, with each model of --names; prints and writes tune.md."""
    from models import load_model
    from utils.core.noise import relative_noise
    from utils.evaluation.metrics import PSNR
    from utils.prediction.refine import refine, window_for
    clean = validation_clean(args.from_dir)
    names = bsd68_build.TRAIN_NAMES[-bsd68_build.N_VALIDATION:]
    models = args.names or [cli.DEFAULT_MODEL]
    lines = ['### Refinement window on the BSD68 validation images '
             f"({', '.join(names)}; 3 noise draws each, default_rng(9100 + sigma)); mean PSNR (dB)",
             '', '| model | sigma | relative noise | network | ' +
             ' | '.join(f'w {w}' for w in args.windows) + ' | window_for |',
             '|---' * (len(args.windows) + 5) + '|']
    for name in models:
        model = load_model(args.model_dir, name)
        for sigma in args.sigmas:
            noisy = noisy_images(clean, sigma, seed=9100, draws=3)
            truth = [c for c in clean for _ in range(3)]
            outputs = [model.predict(x) for x in noisy]
            rel = float(np.mean([relative_noise(x) for x in noisy]))
            base = np.mean([PSNR(c, f) for c, f in zip(truth, outputs)])
            scores = [np.mean([PSNR(c, refine(x, f, window=w))
                               for c, x, f in zip(truth, noisy, outputs)]) for w in args.windows]
            chosen = np.mean([PSNR(c, refine(x, f)) for c, x, f in zip(truth, noisy, outputs)])
            best = int(np.argmax(scores))
            cells = [f'**{s:.2f}**' if i == best else f'{s:.2f}' for i, s in enumerate(scores)]
            lines.append(f'| {name} | {sigma:g} | {rel:.3f} | {base:.2f} | ' + ' | '.join(cells)
                         + f' | {chosen:.2f} (w {window_for(rel)}) |')
            print(lines[-1], flush=True)
    lines += ['', f'relative noise: blind noise std / image std (`datasets.relative_noise`), '
              f'the quantity `utils.prediction.refine.window_for` maps to a window; {environment.machine_label()}.']
    write_text_atomic(os.path.join(out, 'tune.md'), '\n'.join(lines) + '\n')
    print(f"wrote {os.path.join(out, 'tune.md')}")


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
    p.add_argument('--colour', action='store_true', help='the colour photographs instead')
    p.add_argument('--colour-sigmas', type=float, nargs='+', default=list(COLOUR_SIGMAS))
    p.add_argument('--tune', action='store_true',
                   help='choose the refinement window on the validation images instead')
    p.add_argument('--from', dest='from_dir', metavar='DIR', default=None,
                   help='--tune: the BSD68 PNG folders (as for download.py --from)')
    p.add_argument('--windows', type=cli.positive_int, nargs='+', default=list(TUNE_WINDOWS),
                   help='--tune: the windows to compare')
    p.add_argument('--report', action='store_true',
                   help='only remake table.md and noise_levels.png from --out/results.csv '
                        '(with --colour: colour.md and colour.png from colour.csv)')
    p.add_argument('--out', default='results/noise_levels', help='output folder')
    args = p.parse_args(argv)
    if args.report:
        if args.colour:
            return colour_report(Results.read(os.path.join(args.out, 'colour.csv')), args,
                                 args.out)
        return grey_report(Results.read(os.path.join(args.out, 'results.csv')), args, args.out)
    cli.start_tensorflow(training=False)
    os.makedirs(args.out, exist_ok=True)
    if args.tune:
        tune(args, args.out)
    elif args.colour:
        colour_benchmark(args, args.out)
    else:
        grey_benchmark(args, args.out)


if __name__ == '__main__':
    cli.run(main)
