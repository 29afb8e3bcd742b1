"""A user's folder of noisy photos, end to end (issue 18): train on it with one command, denoise
held-out photos of the same noise with test_single.py, and compare with NLM.

    python -m benchmarks.folder --sigma 10          # ~12 min on 2 cores
    python -m benchmarks.folder --sigma 50 --photos 40 --steps 2000

The photos: the first --photos of BSD68's 396 training images with the noise of
`download.py --sigma S` (Denoising_data/sigmaS, built from --from when missing), rounded and
clipped to 8-bit PNGs as a camera stores them. Held out: BSD68's 68 test images with that
noise, 8-bit PNGs too. Training is the command a user runs on such a folder (no noise level
given: --noise-sigma auto estimates it),

    python train.py --images PHOTOS --noise-sigma auto --init-from trained_models/bsd68-N2S \
        --lr 1e-4 --lr-schedule cosine --steps STEPS --batch-size 16 --precision mixed_bfloat16

then `python test_single.py HELD_OUT --output-dir ...` with the trained model and with the
starting model, refined (test_single's default) and with --no-refine; PSNR against the clean
images (0..255), and scikit-image's NLM (utils.evaluation.baselines.nlm) on the same PNGs. Everything
but the results goes under --work (photos, model, outputs; a rerun reuses a finished model).
Writes --out/sigmaS.md and .csv.
"""
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from n2s_app import cli
from utils.core import environment
from utils.core.files import write_csv_atomic, write_text_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_pngs(images: Sequence[np.ndarray], folder: str, names: Sequence[str]) -> None:
    """Each (H, W) float image (0..255) rounded and clipped to an 8-bit PNG in `folder`."""
    from utils.core.image_io import to_dtype, write_image_atomic
    os.makedirs(folder, exist_ok=True)
    for image, name in zip(images, names):
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            write_image_atomic(path, to_dtype(image, np.zeros(1, np.uint8)))


def read_pngs(folder: str, names: Sequence[str]) -> List[np.ndarray]:
    """The images `names` of `folder` as float64 (H, W) arrays."""
    from utils.core.image_io import read_image
    return [np.asarray(read_image(os.path.join(folder, n)).pixels, np.float64) for n in names]


def run(command: List[str]) -> float:
    """Run a repository script (exit on failure); its wall time in seconds."""
    print('$', ' '.join(command), flush=True)
    started = time.time()
    subprocess.run([sys.executable] + command, cwd=ROOT, check=True)
    return time.time() - started


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('--sigma', type=cli.positive_float, default=10.0,
                   help='noise std of the photos (0..255)')
    p.add_argument('--photos', type=cli.positive_int, default=40,
                   help='how many training photos the folder holds (of 396)')
    p.add_argument('--steps', type=cli.positive_int, default=2000, help='training steps')
    p.add_argument('--init-from', default='trained_models/bsd68-N2S',
                   help='shipped model to start from')
    p.add_argument('--data-dir', default=None,
                   help='the noisy BSD68 build (default: Denoising_data/sigmaS)')
    p.add_argument('--from', dest='source', default='../shared/data/bsd68',
                   help='BSD68 PNGs, to build Denoising_data/sigmaS when missing')
    p.add_argument('--work', default='runs/folder', help='folder of photos, model and outputs')
    p.add_argument('--out', default='results/folder', help='folder of the result table')
    args = p.parse_args(argv)

    from utils.data.datasets import TestImage, get_dataset
    from utils.evaluation.baselines import nlm
    from utils.evaluation.metrics import PSNR, score_denoiser
    tag = f'sigma{args.sigma:g}'
    data_dir = args.data_dir or os.path.join(cli.DATA_DIR, tag)
    dataset = get_dataset('bsd68', data_dir)
    if not dataset.available(data_dir):
        run(['download.py', '--dataset', 'bsd68', '--from', args.source,
             '--sigma', f'{args.sigma:g}', '--data-dir', data_dir])
    train = dataset.raw_training_images(data_dir)
    if args.photos > len(train):
        raise ValueError(f"--photos {args.photos}: the training set has {len(train)} images")
    test = dataset.test_images(data_dir)
    work = os.path.abspath(os.path.join(args.work, tag))
    # one photo folder per --photos, so that a rerun with fewer never trains on more
    photos = os.path.join(work, f'photos-{args.photos}')
    held_out = os.path.join(work, 'held_out')
    photo_names = [f'photo_{i:03d}.png' for i in range(args.photos)]
    test_names = [f'test_{i:02d}.png' for i in range(len(test))]
    write_pngs(train[:args.photos], photos, photo_names)
    write_pngs([t.noisy for t in test], held_out, test_names)
    clean = [np.asarray(t.clean, np.float64) for t in test]
    pngs = [TestImage(t.name, x, c) for t, x, c in zip(test, read_pngs(held_out, test_names),
                                                       clean)]

    name = f'folder-{tag}-{args.photos}'
    models = os.path.join(work, 'models')
    train_command = ['train.py', '--images', photos, '--noise-sigma', 'auto',
                     '--init-from', args.init_from, '--lr', '1e-4', '--lr-schedule', 'cosine',
                     '--steps', str(args.steps), '--batch-size', '16',
                     '--precision', 'mixed_bfloat16', '--save-steps', '500',
                     '--keep-checkpoints', '1', '--model-dir', models, '--name', name]
    wall_file = os.path.join(models, f'{name}.seconds')  # the training's wall time
    if not os.path.exists(os.path.join(models, name, f'ckpt-{args.steps}.index')):
        write_text_atomic(wall_file, f'{run(train_command):.0f}\n')
    train_seconds = None
    if os.path.exists(wall_file):
        with open(wall_file) as f:
            train_seconds = float(f.read())

    start_dir, start_name = os.path.split(os.path.abspath(args.init_from))
    rows: List[Dict] = [{'method': 'noisy input',
                         'psnr': score_denoiser(lambda x: x, pngs)['psnr']},
                        {'method': 'NLM (utils.evaluation.baselines.nlm)', **score_denoiser(nlm, pngs)}]
    for label, model_dir, model in ((f'{start_name} (the starting model)', start_dir,
                                     start_name),
                                    (f'trained on the folder ({args.steps} steps)', models,
                                     name)):
        for refine in (True, False):
            out = os.path.join(work, 'denoised', f'{model}-{"refined" if refine else "plain"}')
            seconds = run(['test_single.py', held_out, '--model-dir', model_dir, '--name', model,
                           '--output-dir', out] + ([] if refine else ['--no-refine']))
            denoised = read_pngs(out, [n.replace('.png', '_denoised.png') for n in test_names])
            rows.append({'method': label + (', refined (default)' if refine else
                                            ', --no-refine'),
                         'psnr': np.mean([PSNR(c, d) for c, d in zip(clean, denoised)]),
                         'seconds': seconds / len(test)})
    for row in rows:
        row['psnr'] = f"{row['psnr']:.2f}"
        row.pop('ssim', None)
        row['seconds'] = f"{row['seconds']:.2f}" if 'seconds' in row else ''

    os.makedirs(args.out, exist_ok=True)
    write_csv_atomic(os.path.join(args.out, f'{tag}.csv'), rows)
    shown = ' '.join(train_command).replace(work, f'{args.work}/{tag}')
    lines = [f'### A folder of {args.photos} noisy photos (sigma {args.sigma:g}): '
             f'{len(test)} held-out BSD68 test images, mean PSNR (dB)', '',
             '| method | PSNR | s/image |', '|---|---|---|']
    lines += [f"| {r['method']} | {r['psnr']} | {r['seconds']} |" for r in rows]
    lines += ['', f'Training: `python {shown}`' + (
        f' ({train_seconds / 60:.1f} min)' if train_seconds else ''),
        f's/image: test_single.py wall time over the {len(test)} files (model loading '
        f'included); '
        f'{environment.machine_label()}', '',
        f'Command: `python -m benchmarks.folder --sigma {args.sigma:g} --photos {args.photos} '
        f'--steps {args.steps}`']
    write_text_atomic(os.path.join(args.out, f'{tag}.md'), '\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    cli.run(main)
