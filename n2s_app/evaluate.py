"""test.py and test_pro.py: mean PSNR and SSIM of a model on a data set's test images."""
import itertools
import sys
from typing import List, Optional

from n2s_app.cli import parser, require_checkpoint, start_tensorflow
from n2s_app.train_plan import model_kwargs, resolve_dataset
from utils.core.files import write_csv_atomic


def test_main(argv: Optional[List[str]], doc: str, name: str, train_command: str) -> None:
    """test.py and test_pro.py: mean PSNR (and SSIM) of a model on a data set's test images."""
    import numpy as np
    from tqdm.auto import tqdm

    p = parser(doc, name=name)
    p.add_argument('--verbose', action='store_true', help='print PSNR and SSIM per image')
    p.add_argument('--csv', default=None, help='write per-image PSNR and SSIM to this CSV file')
    p.add_argument('--tta', action='store_true',
                   help='test-time self-ensemble: average over the 8 flips and 90-degree '
                        'rotations (8x the time; off in the original protocol)')
    p.add_argument('--refine', action='store_true',
                   help='also score the outputs refined by utils/prediction/refine.py (a Wiener '
                        'filter on what the network removed; not the original protocol), '
                        'printed beside')
    args = p.parse_args(argv)
    start_tensorflow(training=False)
    from models import Noise2Same

    dataset = resolve_dataset(args)
    dataset.test_images(args.data_dir)  # fail early on missing data
    require_checkpoint(args.model_dir, args.name, train_command)
    if args.csv:
        from utils.core.files import check_writable
        check_writable(args.csv)
    kwargs = model_kwargs(args, dataset)
    model = Noise2Same(args.model_dir, args.name, net_config=kwargs['net_config'],
                       precision=args.precision)
    progress = lambda images: tqdm(images, desc=f'testing {args.name}', unit='image',
                                   mininterval=1 if sys.stderr.isatty() else 30)
    rows = list(dataset.evaluate(model, args.data_dir, progress=progress, tta=args.tta,
                                 refine=args.refine))
    kinds = [('', '')] + ([('_refined', ' --refine')] if args.refine else [])
    if args.verbose:
        for row in rows:
            print(f"{row['group'] + ' ' if row['group'] else ''}{row['image']}: " + ', '.join(
                f"PSNR{label} {row['psnr' + key]:.2f} dB, SSIM{label} {row['ssim' + key]:.4f}"
                for key, label in kinds))
    groups = sorted({row['group'] for row in rows})
    for group, (key, label) in itertools.product(groups, kinds):
        chosen = [row for row in rows if row['group'] == group]
        name = f'{dataset.name} {group}'.strip()
        print(f"{name}{label}: mean PSNR {np.mean([r['psnr' + key] for r in chosen]):.2f} dB, "
              f"mean SSIM {np.mean([r['ssim' + key] for r in chosen]):.4f} over {len(chosen)} "
              f"images ({args.model_dir.rstrip('/')}/{args.name}{', TTA' if args.tta else ''}"
              f"{', refined: not the original protocol' if key else ''})")
    if args.csv:
        write_csv_atomic(args.csv, rows)
