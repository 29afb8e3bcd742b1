"""Download a published Noise2Same data set with gdown into the data folder.

    python download.py --dataset bsd68
Offline, it fails with one line saying where to put the files by hand.
"""
import argparse
from typing import List, Optional

from utils import cli
from utils.datasets import DATASETS, DRIVE_FOLDER


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--dataset', required=True,
                   choices=sorted(name for name in DATASETS if name != 'demo'))
    p.add_argument('--data-dir', default=cli.DATA_DIR)
    args = p.parse_args(argv)
    dataset = DATASETS[args.dataset]
    if dataset.available(args.data_dir):
        print(f'{args.dataset} is already in {args.data_dir}')
        return
    import gdown
    try:
        gdown.download_folder(DRIVE_FOLDER, output=args.data_dir, quiet=False)
    except Exception as error:  # gdown raises many types when offline or rate-limited
        raise OSError(f"download failed ({type(error).__name__}, no network?); download {DRIVE_FOLDER} by "
                      f"hand and put the {args.dataset} files under {args.data_dir} "
                      f"(layout: utils/datasets.py)") from None
    if not dataset.available(args.data_dir):
        raise OSError(f"downloaded, but {args.dataset}'s files are not where expected under "
                      f"{args.data_dir}; move them into the layout of utils/datasets.py")
    print(f'{args.dataset} is ready in {args.data_dir}')


if __name__ == '__main__':
    cli.run(main)
