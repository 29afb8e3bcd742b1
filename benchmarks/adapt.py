"""What adapting to the image (`test_single.py --adapt`) gains: BSD68 images at several noise
levels, PSNR without and with adaptation per model (plain and refined, as test_single.py
denoises by default), against the noisy input and NLM.

    python -m benchmarks.adapt                          # 10 test images, sigma 5 25 50 (~1 h, 2 cores)
    python -m benchmarks.adapt --tune --from ../shared/data/bsd68 --lrs 2e-5 4e-5 1e-4 2e-4 \
        --steps 25 50 100 200                           # choose lr and steps on validation images

One adaptation per image, learning rate and model runs to the largest of --steps; the image
is denoised after each listed step count on the way. Test images: the first --images of the 68,
noise numpy default_rng(9000 + sigma) as the noise-level benchmark draws it. --tune: the four
held-out BSD68 validation images (test_397 .. test_400 of the training PNGs, never trained on),
default_rng(9100 + sigma), so that the defaults of n2s_app.adapt are not chosen on test images.
Seconds per image: adapting to the largest step count, tracing included, the scoring on the
way left out (one prediction more is what `--adapt` costs on top), on this machine with
whatever else runs beside it (say so when quoting them). Writes Markdown and
CSV (adapt.* or tune_adapt.*) under --out.
"""
import itertools
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from benchmarks.noise_levels import noisy_images, validation_clean
from n2s_app import adapt, cli
from n2s_app.adapt import LMBD_CHOICES
from utils.core import environment
from utils.core.files import write_csv_atomic, write_text_atomic


def adapt_scores(model, clean: Sequence[np.ndarray], noisy: Sequence[np.ndarray],
                 steps: Sequence[int], lr: float,
                 lmbd: str) -> Tuple[Dict[int, Dict[str, float]], float]:
    """({steps: {'plain': mean PSNR, 'refined': mean PSNR}} (steps 0: not adapted), seconds
    per image of adapting to the largest step count, scoring excluded) of adapting `model` to
    each noisy image with `lr` and the loss's noise level `lmbd` (n2s_app.adapt)."""
    from utils.evaluation.metrics import PSNR
    wanted = sorted(set(steps))
    scores = {s: {'plain': [], 'refined': []} for s in [0] + wanted}
    scoring = adapting = 0.0
    for c, x in zip(clean, noisy):
        def score(done: int, _total: int = 0) -> None:
            nonlocal scoring
            if done in scores:
                started = time.time()
                f = model.predict(x)
                scores[done]['plain'].append(PSNR(c, f))
                scores[done]['refined'].append(PSNR(c, model.predictor.refine(x, f)[0]))
                scoring += time.time() - started
        score(0)
        started, scored_before = time.time(), scoring
        with adapt.adapted(model, x, wanted[-1], lr, progress=score, lmbd=lmbd):
            pass
        adapting += time.time() - started - (scoring - scored_before)
    means = {s: {k: float(np.mean(v)) for k, v in row.items()} for s, row in scores.items()}
    return means, adapting / len(clean)


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('--names', nargs='+', default=None,
                   help=f'models under --model-dir (default: {cli.DEFAULT_MODEL} and bsd68-N2S)')
    p.add_argument('--model-dir', default=cli.MODEL_DIR, help='folder of the models')
    p.add_argument('--data-dir', default=cli.DATA_DIR, help='where BSD68 is built')
    p.add_argument('--images', type=cli.positive_int, default=10,
                   help='the first N test images (with --tune: of the 4 validation images)')
    p.add_argument('--sigmas', type=float, nargs='+', default=[5, 25, 50],
                   help='noise std on 0..255')
    p.add_argument('--steps', type=cli.positive_int, nargs='+', default=None,
                   help='adaptation steps to score (default: n2s_app.adapt.ADAPT_STEPS)')
    p.add_argument('--lrs', type=float, nargs='+', default=None,
                   help='adaptation learning rates (default: n2s_app.adapt.ADAPT_LR)')
    p.add_argument('--lmbds', nargs='+', default=None, choices=LMBD_CHOICES,
                   help='noise level of the adaptation loss: model (its own) or image (2 x the '
                        'image\'s blind noise estimate) (default: n2s_app.adapt.ADAPT_LMBD)')
    p.add_argument('--tune', action='store_true',
                   help='score the held-out validation images instead of test images')
    p.add_argument('--from', dest='from_dir', default=None,
                   help='--tune: the BSD68 PNG folders (as for download.py --from)')
    p.add_argument('--out', default='results/adapt', help='output folder')
    args = p.parse_args(argv)
    if args.tune:
        clean, seed = validation_clean(args.from_dir)[:args.images], 9100
        what = f'{len(clean)} of the 4 BSD68 validation images'
    cli.start_tensorflow(training=False)
    from models import load_model
    from utils.data.datasets import DATASETS
    from utils.evaluation.baselines import nlm
    from utils.evaluation.metrics import PSNR

    if not args.tune:
        clean = [im.clean for im in DATASETS['bsd68'].test_images(args.data_dir)][:args.images]
        seed, what = 9000, f'the first {len(clean)} BSD68 test images'
    names = args.names or list(dict.fromkeys([cli.DEFAULT_MODEL, 'bsd68-N2S']))
    steps = args.steps or [adapt.ADAPT_STEPS]
    lrs = args.lrs or [adapt.ADAPT_LR]
    lmbds = args.lmbds or [adapt.ADAPT_LMBD]
    rows: List[Dict] = []

    def add(sigma: float, method: str, plain: float, refined: Optional[float] = None,
            seconds: Optional[float] = None) -> None:
        row = {'sigma': f'{sigma:g}', 'method': method, 'psnr': f'{plain:.2f}',
               'refined': '' if refined is None else f'{refined:.2f}',
               'seconds': '' if seconds is None else f'{seconds:.1f}'}
        rows.append(row)
        print(' | '.join(row.values()), flush=True)

    for sigma in args.sigmas:
        noisy = noisy_images(clean, sigma, seed=seed)
        add(sigma, 'noisy input', np.mean([PSNR(c, n) for c, n in zip(clean, noisy)]))
        started = time.time()
        add(sigma, 'NLM (utils.evaluation.baselines.nlm)',
            np.mean([PSNR(c, nlm(n)) for c, n in zip(clean, noisy)]), None,
            (time.time() - started) / len(clean))
        for name in names:
            model = load_model(args.model_dir, name)
            for i, (lmbd, lr) in enumerate(itertools.product(lmbds, lrs)):
                result, seconds = adapt_scores(model, clean, noisy, steps, lr, lmbd)
                if i == 0:
                    add(sigma, name, result[0]['plain'], result[0]['refined'])
                for s in sorted(set(steps)):
                    add(sigma, f'{name} --adapt {s} --adapt-lr {lr:g} --adapt-lmbd {lmbd}',
                        result[s]['plain'], result[s]['refined'],
                        seconds if s == max(steps) else None)
    stem = 'tune_adapt' if args.tune else 'adapt'
    os.makedirs(args.out, exist_ok=True)
    write_csv_atomic(os.path.join(args.out, f'{stem}.csv'), rows)
    table = [f'### Adapting to the image on {what} (mean PSNR, dB)', '',
             '| sigma | method | PSNR | refined | s/image |', '|---|---|---|---|---|'] + \
        [f"| {r['sigma']} | {r['method']} | {r['psnr']} | {r['refined']} | {r['seconds']} |"
         for r in rows] + \
        ['', f"s/image: adapting for the largest step count (scoring left out); "
             f"{environment.machine_label()}"]
    write_text_atomic(os.path.join(args.out, f'{stem}.md'), '\n'.join(table) + '\n')
    print('\n'.join(table))


if __name__ == '__main__':
    cli.run(main)
