"""The blind noise model against the truth: `utils.core.noise.estimate_noise_model`, the same
scaled by its kurtosis estimate (`kurtosis_scale`, the second opinion the refinement's guard
consults at low noise) and, for comparison, scikit-image's one-sigma `estimate_sigma` (the
refinement's noise level before), on images whose noise is known.

    python -m benchmarks.noise_model        # BSD68's 68 test images and 8 scikit-image photos

Noise: Gaussian sigma 5 10 15 25 35 50 (default_rng(9000 + sigma), as benchmarks.noise_levels)
and Poisson-Gaussian with peaks 1 3 10 30 100 and read noise 0 and 2 photons (as
`benchmarks.noise_levels --poisson`), on 0..255. The error of an estimate is the ratio of its
root-mean-square noise std over the image's clean values to the true one, minus 1 (so +0.10:
10 % too noisy). Writes --out/noise_model.md and noise_model.csv (per image).
"""
import os
import time
from typing import List, Optional, Tuple

import numpy as np

from benchmarks.noise_levels import noisy_images, poisson_images, poisson_settings, SIGMAS
from n2s_app import cli
from utils.core import environment
from utils.core.files import write_csv_atomic, write_text_atomic

PHOTOS = ('camera', 'moon', 'coins', 'cell', 'brick', 'grass', 'text', 'page')


def photos() -> List[Tuple[str, np.ndarray]]:
    """Grey scikit-image photographs (clean), float64 on 0..255."""
    from skimage import color, data
    out = []
    for name in PHOTOS:
        image = getattr(data, name)()
        image = color.rgb2gray(image[..., :3]) * 255 if image.ndim == 3 else image
        out.append((name, np.asarray(image, np.float64)))
    return out


def true_variance(clean: np.ndarray, setting) -> np.ndarray:
    if not isinstance(setting, str):
        return np.full(clean.shape, float(setting) ** 2)
    _, peak, read = next(s for s in poisson_settings() if s[0] == setting)
    return np.clip(clean, 0, None) * 255 / peak + (255 * read / peak) ** 2


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('--data-dir', default=cli.DATA_DIR, help='where BSD68 is built')
    p.add_argument('--images', type=cli.positive_int, default=68, help='first N BSD68 test images')
    p.add_argument('--out', default='results/noise_model', help='output folder')
    args = p.parse_args(argv)
    from skimage.restoration import estimate_sigma
    from tqdm.auto import tqdm

    from utils.core.noise import estimate_noise_model, kurtosis_scale
    from utils.data.datasets import DATASETS
    tests = [(t.name, np.asarray(t.clean, np.float64))
             for t in DATASETS['bsd68'].test_images(args.data_dir)[:args.images]]
    sets = {'BSD68': tests, 'photos': photos()}
    settings = list(SIGMAS) + [label for label, _, _ in poisson_settings()]
    rows = []
    started = time.time()
    for setting in tqdm(settings, desc='noise settings'):
        for group, images in sets.items():
            clean = [c for _, c in images]
            if isinstance(setting, str):
                _, peak, read = next(s for s in poisson_settings() if s[0] == setting)
                noisy = poisson_images(clean, peak, read)
            else:
                noisy = noisy_images(clean, setting)
            for (name, c), x in zip(images, noisy):
                truth = float(np.sqrt(true_variance(c, setting).mean()))
                model = estimate_noise_model(x)
                scale = kurtosis_scale(x, model)
                rows.append({'setting': setting if isinstance(setting, str) else f'sigma {setting:g}',
                             'group': group, 'image': name,
                             'model': round(model.std(c) / truth - 1, 4),
                             'kurtosis': round(np.sqrt(scale) * model.std(c) / truth - 1, 4)
                             if np.isfinite(scale) else float('nan'),
                             'one_sigma': round(float(estimate_sigma(x)) / truth - 1, 4),
                             'spread': round(float(model.spread[0]), 4)})
    os.makedirs(args.out, exist_ok=True)
    write_csv_atomic(os.path.join(args.out, 'noise_model.csv'), rows)
    lines = [f"### The blind noise model against the truth: error of the rms noise std "
             f"(median / 90th percentile of |error| / worst signed), "
             f"{environment.machine_label()}, {time.strftime('%Y-%m-%d')}, "
             f"{time.time() - started:.0f} s in all", '',
             f'| noise | BSD68 ({len(tests)}): noise model | BSD68: its kurtosis scaling | '
             f'BSD68: one sigma (estimate_sigma) | photos ({len(PHOTOS)}): noise model | '
             f'photos: kurtosis scaling | photos: one sigma |', '|---|---|---|---|---|---|---|']
    for setting in dict.fromkeys(r['setting'] for r in rows):
        cells = []
        for group in sets:
            for field in ('model', 'kurtosis', 'one_sigma'):
                e = np.array([r[field] for r in rows
                              if r['setting'] == setting and r['group'] == group])
                nan = int(np.isnan(e).sum())
                e = e[np.isfinite(e)]
                worst = e[np.argmax(np.abs(e))]
                cells.append(f'{np.median(np.abs(e)):.3f} / {np.percentile(np.abs(e), 90):.3f} '
                             f'/ {worst:+.2f}' + (f' ({nan} none)' if nan else ''))
        lines.append(f'| {setting} | ' + ' | '.join(cells) + ' |')
    text = '\n'.join(lines) + '\n'
    print(text)
    write_text_atomic(os.path.join(args.out, 'noise_model.md'), text)


if __name__ == '__main__':
    cli.run(main)
