"""What adapting to the image (`test_single.py --adapt`) gains: BSD68 test images at several
noise levels, PSNR without and with adaptation per model, against the noisy input and NLM.

    python -m benchmarks.adapt                                  # 10 images, sigma 5 25 50, ~1 h on 2 cores
    python -m benchmarks.adapt --images 3 --sigmas 5 --lrs 4e-5 2e-4 --steps 50 100

Noise: numpy default_rng(9000 + sigma), Gaussian, float, unclipped, drawn for the images in
their order (the first N of the 68, as the noise-level benchmark draws them). Seconds per
image are the adaptation and prediction of one image (tracing included), on this machine,
with whatever else runs beside (say so when quoting them). Writes a Markdown table and a CSV.
"""
import os
import time
from typing import Dict, List, Optional

import numpy as np

from benchmarks.noise_levels import noisy_images
from utils import cli


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('--names', nargs='+', default=[cli.DEFAULT_MODEL, 'bsd68-N2SP'],
                   help='models under --model-dir')
    p.add_argument('--model-dir', default=cli.MODEL_DIR, help='folder of the models')
    p.add_argument('--data-dir', default=cli.DATA_DIR, help='where BSD68 is built')
    p.add_argument('--images', type=cli.positive_int, default=10, help='first N test images')
    p.add_argument('--sigmas', type=float, nargs='+', default=[5, 25, 50],
                   help='noise std on 0..255')
    p.add_argument('--steps', type=cli.positive_int, nargs='+', default=None,
                   help='adaptation steps (default: utils.adapt.ADAPT_STEPS)')
    p.add_argument('--lrs', type=float, nargs='+', default=None,
                   help='adaptation learning rates (default: utils.adapt.ADAPT_LR)')
    p.add_argument('--out', default='results/adapt', help='output folder')
    args = p.parse_args(argv)
    cli.start_tensorflow(training=False)
    from models import load_model
    from utils import adapt
    from utils.baselines import nlm
    from utils.datasets import DATASETS
    from utils.evaluation_utils import PSNR

    clean = [im.clean for im in DATASETS['bsd68'].test_images(args.data_dir)][:args.images]
    steps_list = args.steps or [adapt.ADAPT_STEPS]
    lrs = args.lrs or [adapt.ADAPT_LR]
    rows: List[Dict] = []

    def add(method: str, sigma: float, scores: List[float], seconds: Optional[float] = None):
        rows.append({'sigma': f'{sigma:g}', 'method': method, 'psnr': f'{np.mean(scores):.2f}',
                     'seconds': '' if seconds is None else f'{seconds:.1f}'})
        print(f"sigma {sigma:g} | {method} | {np.mean(scores):.2f} dB"
              + ('' if seconds is None else f" | {seconds:.1f} s/image"), flush=True)

    for sigma in args.sigmas:
        noisy = noisy_images(clean, sigma)
        add('noisy input', sigma, [PSNR(c, n) for c, n in zip(clean, noisy)])
        started = time.time()
        add('NLM (utils.baselines.nlm)', sigma,
            [PSNR(c, nlm(n)) for c, n in zip(clean, noisy)],
            (time.time() - started) / len(clean))
        for name in args.names:
            model = load_model(args.model_dir, name)
            started = time.time()
            add(name, sigma, [PSNR(c, model.predict(n)) for c, n in zip(clean, noisy)],
                (time.time() - started) / len(clean))
            for steps in steps_list:
                for lr in lrs:
                    scores, started = [], time.time()
                    for c, n in zip(clean, noisy):
                        with adapt.adapted(model, n, steps, lr):
                            scores.append(PSNR(c, model.predict(n)))
                    add(f'{name} --adapt {steps} (lr {lr:g})', sigma, scores,
                        (time.time() - started) / len(clean))
    os.makedirs(args.out, exist_ok=True)
    cli.write_csv_atomic(os.path.join(args.out, 'adapt.csv'), rows)
    table = ['| sigma | method | PSNR (dB) | s/image |', '|---|---|---|---|'] + \
        [f"| {r['sigma']} | {r['method']} | {r['psnr']} | {r['seconds']} |" for r in rows]
    cli.write_text_atomic(os.path.join(args.out, 'adapt.md'), '\n'.join(table) + '\n')
    print('\n'.join(table))


if __name__ == '__main__':
    cli.run(main)
