"""Get a published Noise2Same data set into the data folder.

    python download.py --dataset bsd68                              # the original files (gdown)
    python download.py --dataset bsd68 --from ../shared/data/bsd68  # built from local PNG folders
    python download.py --dataset bsd68 --source dncnn               # built from the DnCNN repository's PNGs
    python download.py --dataset bsd68-blind --from ../shared/data/bsd68  # training sigma 0..55

BSD68 built from PNGs (--from or --source dncnn): utils/bsd68_build.py says how (fixed noise
seed, 396 training + 4 validation images). Offline, a download fails with one line saying where
to put the files by hand. A complete data set is never overwritten.
"""
import argparse
import os
from typing import List, Optional

from utils import cli
from utils.datasets import DATASETS, DRIVE_FOLDER


def fetch_drive(dataset, data_dir: str) -> None:
    """The original files from the authors' Google Drive folder."""
    gdown = cli.import_extra('gdown', 'downloading from Google Drive')
    try:
        gdown.download_folder(DRIVE_FOLDER, output=data_dir, quiet=False)
    except Exception as error:  # gdown raises many types when offline or rate-limited
        hint = " or build bsd68 from its PNGs with --from DIR" if dataset.name == 'bsd68' else ''
        raise OSError(f"download failed ({type(error).__name__}, no network?); download {DRIVE_FOLDER} by "
                      f"hand and put the {dataset.name} files under {data_dir} "
                      f"(layout: utils/datasets.py){hint}") from None
    if not dataset.available(data_dir):
        raise OSError(f"downloaded, but {dataset.name}'s files are not where expected under "
                      f"{data_dir}; move them into the layout of utils/datasets.py")


def build_bsd68(args: argparse.Namespace) -> None:
    """BSD68 or bsd68-blind built from PNG folders, local (--from) or downloaded (--source
    dncnn)."""
    from tqdm.auto import tqdm

    from utils import bsd68_build
    from utils.datasets import BLIND_SIGMA
    blind = args.dataset == 'bsd68-blind'
    folder = os.path.join(args.data_dir, DATASETS[args.dataset].folder or 'BSD68')
    sigma = BLIND_SIGMA if blind else bsd68_build.SIGMA
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
    args = p.parse_args(argv)
    built = ('bsd68', 'bsd68-blind')
    if (args.from_dir or args.source == 'dncnn') and args.dataset not in built:
        p.error('--from and --source dncnn build bsd68 and bsd68-blind only')
    if args.dataset == 'bsd68-blind' and not (args.from_dir or args.source == 'dncnn'):
        p.error('bsd68-blind is built from the BSD68 PNGs: pass --from DIR or --source dncnn')
    dataset = DATASETS[args.dataset]
    if dataset.available(args.data_dir):
        print(f'{args.dataset} is already in {args.data_dir}')
        return
    if args.from_dir or args.source == 'dncnn':
        build_bsd68(args)
    else:
        fetch_drive(dataset, args.data_dir)
    print(f'{args.dataset} is ready in {args.data_dir}')


if __name__ == '__main__':
    cli.run(main)
