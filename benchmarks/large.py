"""Stacks larger than memory: wall time, throughput and peak memory (RSS) of `test_single.py`'s
stack path on synthetic noisy uint16 z-stacks of several sizes on disk, and the output against
in-memory prediction of one frame (tiles must not show seams).

    python -m benchmarks.large                          # 0.25, 1 and 4 GB (about 1 hour on 2 cores)
    python -m benchmarks.large --sizes 0.05 0.1 --out /tmp/large   # a quick look

Each size is one fresh process (`--child`) that denoises the stack as `test_single.py STACK`
does (frame by frame, tile by tile, refined unless --no-refine, written as BigTIFF through a
scratch Zarr); its
peak RSS is the kernel's (wait4), its time that of the denoising alone (the model loaded and
traced first on one frame). The stacks are 2048 x 2048 frames of a 16-bit camera's range
(about 2,000-42,000 counts, Poisson noise of 4 counts per photon plus read noise 50); every
16th frame is empty (zeros, passed through unchanged). Writes results/large/large.md and
large.json; the stacks go to --work (deleted afterwards unless --keep).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, Iterator, List

import numpy as np

SIDE = 2048  # pixels of a frame's side
GAIN, READ = 4.0, 50.0  # counts per photon, read noise (counts)
EMPTY_EVERY = 16  # every 16th frame is empty


def clean_frame(k: int) -> np.ndarray:
    """Frame k of the synthetic specimen: blobs and stripes drifting with k, 2,000-42,000."""
    yy, xx = np.mgrid[:SIDE, :SIDE].astype(np.float32) / SIDE
    pattern = (np.sin(40 * yy + 0.3 * k) * np.cos(55 * xx - 0.2 * k)) ** 2
    pattern *= 0.5 + 0.5 * np.sin(7 * (xx + yy) + 0.1 * k)
    return 2000 + 40000 * pattern


def noisy_frame(k: int) -> np.ndarray:
    if k % EMPTY_EVERY == EMPTY_EVERY - 1:
        return np.zeros((SIDE, SIDE), np.uint16)
    rng = np.random.default_rng([2026, k])
    counts = rng.poisson(clean_frame(k) / GAIN) * GAIN + rng.normal(0, READ, (SIDE, SIDE))
    return np.clip(np.round(counts), 0, 65535).astype(np.uint16)


def write_stack(path: str, frames: int) -> None:
    """A BigTIFF z-stack (OME axes ZYX) written frame by frame, through a temporary file (an
    interrupted run leaves no truncated stack to be reused)."""
    import tifffile

    from utils.core.files import atomic_write

    def pages() -> Iterator[np.ndarray]:
        for k in range(frames):
            yield noisy_frame(k)
    with atomic_write(path) as tmp:
        tifffile.imwrite(tmp, data=pages(), shape=(frames, SIDE, SIDE), dtype=np.uint16,
                         bigtiff=True, ome=True,
                         metadata={'axes': 'ZYX', 'PhysicalSizeX': 0.1, 'PhysicalSizeY': 0.1,
                                   'PhysicalSizeZ': 0.5})


def child(args) -> None:
    """Denoise args.child into args.output as test_single.py does; print the timing as JSON."""
    from n2s_app import cli
    cli.start_tensorflow(training=False)
    from models import load_model
    from n2s_app.denoise_files import denoise_stack_file
    from utils.prediction.predictor import PredictOptions
    model = load_model(args.model_dir, args.name)
    predictor = model.restored_predictor()
    predictor.predict(noisy_frame(0)[:512, :512].astype(np.float64),
                      PredictOptions(refine=args.refine))  # trace first: not timed
    options = argparse.Namespace(adapt=None, name=args.name, tta=False,
                                 refine='gate' if args.refine else None,
                                 tile_size=512, margin=32, colour='opponent',
                                 stack_format='bigtiff')
    start = time.perf_counter()
    denoise_stack_file(model, {'input': args.child, 'output': args.output, 'figure': None,
                               'stack': True}, options, note=lambda m: None)
    print(json.dumps({'seconds': time.perf_counter() - start}))


def measure(path: str, output: str, args) -> Dict:
    """Run the child on one stack; its time and peak RSS."""
    process = subprocess.Popen([sys.executable, '-m', 'benchmarks.large', '--child', path,
                                '--output', output, '--model-dir', args.model_dir,
                                '--name', args.name,
                                '--refine' if args.refine else '--no-refine'],
                               stdout=subprocess.PIPE)
    out = process.stdout.read().decode()  # to its end: the child has closed it
    process.stdout.close()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if status != 0:
        raise RuntimeError(f"the child failed on {path} (status {status})")
    return {'seconds': json.loads(out.strip().splitlines()[-1])['seconds'],
            'peak_rss_gb': usage.ru_maxrss * 1024 / 1e9}


def seams(path: str, output: str, frame: int, args) -> Dict:
    """One frame of the output against in-memory prediction of the whole frame (refined as
    test_single.py refines a single image, with --refine), rounded to uint16 as the output is:
    the largest difference, all over and on the tile borders, relative to the frame's range."""
    import tifffile

    from models import load_model
    from utils.prediction.predictor import PredictOptions
    noisy = tifffile.imread(path, key=frame).astype(np.float64)
    with tifffile.TiffFile(output) as tif:
        denoised = tif.pages[frame].asarray().astype(np.float64)
    predictor = load_model(args.model_dir, args.name).restored_predictor()
    expected = predictor.predict(noisy, PredictOptions(refine=args.refine))
    expected = np.clip(np.round(expected), 0, 65535)
    difference = np.abs(denoised - expected) / np.ptp(noisy)
    border = np.zeros(noisy.shape, bool)
    step = 512 - 2 * 32  # tiles of 512 overlapping by 2 x 32: kept parts end every 448 pixels
    for edge in range(32 + step, SIDE, step):
        border[edge - 2:edge + 2, :] = border[:, edge - 2:edge + 2] = True
    return {'max_relative': float(difference.max()),
            'max_relative_at_borders': float(difference[border].max())}


def main(argv: List[str] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sizes', type=float, nargs='+', default=[0.25, 1.0, 4.0],
                   help='stack sizes on disk, GB (1e9 bytes)')
    p.add_argument('--model-dir', default='trained_models/')
    p.add_argument('--name', default='blind32-N2S')
    p.add_argument('--work', default='/tmp/n2s-large', help='folder of the stacks')
    p.add_argument('--out', default='results/large')
    p.add_argument('--keep', action='store_true', help='keep the stacks and outputs')
    p.add_argument('--refine', action=argparse.BooleanOptionalAction, default=True,
                   help="refine each frame (test_single.py's default; --no-refine: the "
                        "network's output, 1.75x faster)")
    p.add_argument('--child', help=argparse.SUPPRESS)
    p.add_argument('--output', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for size in args.sizes:  # the parent loads no model before the children are done: a
        frames = max(1, int(round(size * 1e9 / (SIDE * SIDE * 2))))  # forked child's RSS
        path = os.path.join(args.work, f'stack-{size:g}GB.ome.tif')  # counts the parent's
        output = os.path.join(args.work, f'stack-{size:g}GB_denoised.ome.tif')
        if not os.path.exists(path):
            write_stack(path, frames)
        row = {'size_gb': os.path.getsize(path) / 1e9, 'frames': frames,
               'voxels': frames * SIDE * SIDE, **measure(path, output, args)}
        row['voxels_per_second'] = row['voxels'] / row['seconds']
        rows.append(row)
        print(json.dumps(row), flush=True)
    for size, row in zip(args.sizes, rows):
        path = os.path.join(args.work, f'stack-{size:g}GB.ome.tif')
        output = os.path.join(args.work, f'stack-{size:g}GB_denoised.ome.tif')
        row.update(seams(path, output, min(2, row['frames'] - 1), args))
        if not args.keep:
            os.remove(path)
            os.remove(output)
    report(rows, args)


def report(rows: List[Dict], args) -> None:
    from utils.core.environment import machine_label
    from utils.core.files import write_json_atomic, write_text_atomic
    first = rows[0]
    refined = 'refined' if args.refine else 'not refined'
    lines = [f"# Stacks larger than memory ({args.name}, {refined}; {machine_label()})", '',
             f"python -m benchmarks.large --sizes {' '.join(f'{s:g}' for s in args.sizes)}"
             + ('' if args.refine else ' --no-refine'),
             '',
             '| stack on disk | frames (2048 x 2048, uint16) | time (s) | voxels / s | '
             'vs smallest | peak RSS (GB) | vs smallest | max diff to in-memory (of range) | '
             'at tile borders |', '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(
            f"| {r['size_gb']:.2f} GB | {r['frames']} | {r['seconds']:.0f} | "
            f"{r['voxels_per_second'] / 1e6:.2f} M | "
            f"{r['voxels_per_second'] / first['voxels_per_second'] - 1:+.1%} | "
            f"{r['peak_rss_gb']:.2f} | {r['peak_rss_gb'] / first['peak_rss_gb'] - 1:+.1%} | "
            f"{r['max_relative']:.1e} | {r['max_relative_at_borders']:.1e} |")
    lines += ['', 'Peak RSS: the denoising process as the kernel counts it (wait4), model and '
              'TensorFlow included. The difference: one frame of the output against '
              f'`predict(frame, refine={args.refine})` of the whole frame in memory, both '
              'rounded to uint16, relative to the frame\'s range; the tile borders: 4 pixels '
              'about the '
              'edges of the tiles\' kept parts.']
    write_text_atomic(os.path.join(args.out, 'large.md'), '\n'.join(lines) + '\n')
    write_json_atomic(os.path.join(args.out, 'large.json'), {
        'machine': machine_label(), 'refine': args.refine, 'model': args.name, 'rows': rows})
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
