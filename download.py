"""Get a published Noise2Same data set into the data folder.

    python download.py --dataset bsd68                              # the original files (gdown)
    python download.py --dataset bsd68 --from ../shared/data/bsd68  # built from local PNG folders
    python download.py --dataset bsd68 --source dncnn               # built from the DnCNN repository's PNGs
    python download.py --dataset bsd68-blind --from ../shared/data/bsd68  # training sigma 0..55
    python download.py --dataset bsd68-mixed --from ../shared/data/bsd68  # and Poisson-Gaussian
    python download.py --dataset bsd68 --from ../shared/data/bsd68 --sigma 10  # into Denoising_data/sigma10

BSD68 built from PNGs (--from or --source dncnn): utils/data/bsd68_build.py says how (fixed noise
seed, 396 training + 4 validation images); --sigma S builds training and test images at
another noise level, by default into DATA_DIR/sigmaS (train and test with --data-dir there and
--noise-sigma S). Offline, a download fails with one line saying where
to put the files by hand. A complete data set is never overwritten.
"""
import argparse
import os
from typing import List, Optional

from n2s_app import cli
from utils.core import environment
from utils.data import bsd68_build
from utils.data.datasets import DATASETS, DRIVE_FOLDER


def fetch_drive(dataset, data_dir: str) -> None:
    """The original files from the authors' Google Drive folder."""
    gdown = environment.import_extra('gdown', 'downloading from Google Drive')
    try:
        gdown.download_folder(DRIVE_FOLDER, output=data_dir, quiet=False)
    except Exception as error:  # gdown raises many types when offline or rate-limited
        hint = " or build bsd68 from its PNGs with --from DIR" if dataset.name == 'bsd68' else ''
        raise OSError(f"download failed ({type(error).__name__}, no network?); download {DRIVE_FOLDER} by "
                      f"hand and put the {dataset.name} files under {data_dir} "
                      f"(layout: utils/data/datasets.py){hint}") from None
    if not dataset.available(data_dir):
        raise OSError(f"downloaded, but {dataset.name}'s files are not where expected under "
                      f"{data_dir}; move them into the layout of utils/data/datasets.py")


def build_bsd68(args: argparse.Namespace) -> None:
    """BSD68 or bsd68-blind built from PNG folders, local (--from) or downloaded (--source
    dncnn)."""
    from tqdm.auto import tqdm

    from utils.data.datasets import BLIND_SIGMA, MIXED_NOISE
    folder = os.path.join(args.data_dir, DATASETS[args.dataset].folder or 'BSD68')
    sigma = {'bsd68-blind': BLIND_SIGMA, 'bsd68-mixed': MIXED_NOISE}.get(args.dataset, args.sigma)
    if args.from_dir:
        bsd68_build.build_bsd68(args.from_dir, folder, sigma)
    else:
        bsd68_build.build_from_dncnn(folder, progress=lambda jobs: tqdm(jobs, desc='fetching PNGs'),
                                     sigma=sigma)


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('--dataset', required=True,
                   choices=sorted(name for name in DATASETS if name != 'demo'))
    p.add_argument('--data-dir', default=cli.DATA_DIR, help='folder of the data sets')
    p.add_argument('--source', choices=['drive', 'dncnn'], default='drive',
                   help="drive: the original files (default); dncnn: bsd68 built from the DnCNN "
                        "repository's PNGs")
    p.add_argument('--from', dest='from_dir', metavar='DIR', default=None,
                   help='bsd68 built from the PNG folders in DIR (train400/ and test68/, or a '
                        'DnCNN checkout)')
    p.add_argument('--sigma', type=cli.positive_float, default=None,
                   help='with bsd68 built (--from or --source dncnn): the noise sigma of its '
                        'training and test images on 0..255 (default 25, the original); another '
                        'value builds into DATA_DIR/sigmaS unless --data-dir is given')
    args = p.parse_args(argv)
    built = ('bsd68', 'bsd68-blind', 'bsd68-mixed')
    if (args.from_dir or args.source == 'dncnn') and args.dataset not in built:
        p.error('--from and --source dncnn build bsd68, bsd68-blind and bsd68-mixed only')
    if args.dataset in built[1:] and not (args.from_dir or args.source == 'dncnn'):
        p.error(f'{args.dataset} is built from the BSD68 PNGs: pass --from DIR or --source dncnn')
    if args.sigma is not None and not (args.dataset == 'bsd68' and (
            args.from_dir or args.source == 'dncnn')):
        p.error('--sigma needs --dataset bsd68 built from its PNGs (--from DIR or --source dncnn)')
    if args.dataset == 'bsd68':
        args.sigma = bsd68_build.SIGMA if args.sigma is None else args.sigma
        if args.sigma != bsd68_build.SIGMA and args.data_dir == cli.DATA_DIR:
            args.data_dir = os.path.join(cli.DATA_DIR, f'sigma{args.sigma:g}')
    dataset = DATASETS[args.dataset]
    if dataset.available(args.data_dir):
        if args.dataset == 'bsd68':  # the same noise, or an error naming the one found
            bsd68_build.check_noise(dataset.root(args.data_dir), args.sigma)
        print(f'{args.dataset} is already in {args.data_dir}')
        return
    if args.from_dir or args.source == 'dncnn':
        build_bsd68(args)
    else:
        fetch_drive(dataset, args.data_dir)
    print(f'{args.dataset} is ready in {args.data_dir}')
    if args.dataset == 'bsd68' and args.sigma != bsd68_build.SIGMA:
        print(f"noise sigma {args.sigma:g}: train and test with --data-dir {args.data_dir} "
              f"(and --noise-sigma {args.sigma:g} for lmbd)")


if __name__ == '__main__':
    cli.run(main)
