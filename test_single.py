"""Denoise image files (PNG, JPEG or TIFF; 8- or 16-bit; grey, RGB, RGBA or palette) with a
trained model; writes each denoised image (same dtype, clipped, colour kept) and, for one
input, a side-by-side figure. The output is refined by default (--no-refine: the network's
output alone), and a line is printed when the image's noise level lies outside what the model
was trained on.

    python test_single.py photo.png                      # -> photo_denoised.png, photo_figure.png
    python test_single.py scan.tif --name N2S-3000 --output out/scan_clean.tif --show
    python test_single.py a.png b.tif folder/ --output-dir out/   # many files, the model loaded once
    python test_single.py photo.png --adapt              # first train a copy on the photo itself
    python test_single.py photo.png --refine bm3d        # then BM3D's Wiener stage (bm3d extra)

Stacks (a TIFF of several pages: z-stacks, time series, channels, BigTIFF, OME-TIFF; an
OME-Zarr folder) are read lazily and denoised tile by tile, frame by frame with a 2D model, so
memory stays bounded whatever their size; the output keeps their axes and pixel sizes:

    python test_single.py stack.ome.tif                  # -> stack_denoised.ome.tif
    python test_single.py stack.ome.zarr --stack-format tiff --output-dir out/

With several files, one that fails gets a one-line error and the others go on; the exit status
is then 1 and a summary names the failed files. Inputs are never overwritten.
"""
import os
import sys
from typing import List, Optional

from n2s_app import adapt, cli, denoise_files
from utils.core import image_io
from utils.core.files import check_writable
from utils.prediction.photo import COLOUR_MODES, TILE_ABOVE

REFINEMENTS = ('gate', 'bm3d')  # --refine


def bare_refine(argv: List[str]) -> List[str]:
    """argv with a `--refine` (or an abbreviation, `--ref`) that is followed by anything but one
    of REFINEMENTS (an image, as in `--refine photo.png`) written `--refine=gate`, so that
    argparse does not take the image for the refinement's name; nothing after `--`."""
    argv = [str(a) for a in argv]
    end = argv.index('--') if '--' in argv else len(argv)
    flag = lambda a: len(a) > 4 and '--refine'.startswith(a)
    return [('--refine=gate' if i < end and flag(a) and i + 1 < len(argv) and
             argv[i + 1] not in REFINEMENTS else a) for i, a in enumerate(argv)]


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('images', nargs='+', metavar='IMAGE',
                   help='input image files, OME-Zarr folders, folders (their PNG, JPEG and TIFF '
                        'files and Zarr folders) or globs; never modified')
    p.add_argument('--model-dir', default=cli.MODEL_DIR, help='folder of the model directories')
    p.add_argument('--name', default=None,
                   help=f'model directory name (default: {cli.DEFAULT_MODEL}, the best fast '
                        f'shipped model, and {cli.NOISY_MODEL}, trained on Gaussian and photon '
                        f'noise, for images whose estimated noise std is above '
                        f'{cli.NOISY_ABOVE} x their std; blind-N2S: better on Gaussian noise, '
                        f'3x slower)')
    p.add_argument('--output-dir', default=None,
                   help='folder of the outputs (default: beside each input)')
    p.add_argument('--output', default=None, help='one input: the denoised image (default: '
                                                  '<image>_denoised with the input\'s extension)')
    p.add_argument('--figure', default=None,
                   help='one input: the figure PNG (default: <image>_figure.png)')
    p.add_argument('--figures', action='store_true',
                   help='several inputs: also write a figure for each')
    p.add_argument('--show', action='store_true', help='also open the figure in a window')
    p.add_argument('--tile-size', type=cli.positive_int, default=512,
                   help=f'tile size for images over {TILE_ABOVE} pixels')
    p.add_argument('--margin', type=cli.positive_int, default=32, help='tile overlap / 2')
    p.add_argument('--tta', action='store_true',
                   help='test-time self-ensemble over the 8 flips and rotations (8x the time)')
    p.add_argument('--refine', nargs='?', choices=REFINEMENTS, const='gate',
                   default='gate' if cli.DEFAULT_REFINE else None,
                   help='gate: put back the signal in what the network removed, with the '
                        "image's estimated noise model (utils/prediction/refine.py); bm3d: "
                        "then BM3D's Wiener stage with that as its pilot (the bm3d extra, "
                        "seconds per photo; its licence allows non-commercial use only)")
    p.add_argument('--no-refine', dest='refine', action='store_const', const=None,
                   help="the network's output alone")
    p.add_argument('--colour', choices=COLOUR_MODES, default='opponent',
                   help='how a grey model denoises a colour image: opponent (luminance and '
                        'chrominance channels) or channels (R, G, B each); the output stays '
                        'colour')
    p.add_argument('--adapt', type=cli.positive_int, nargs='?', const=adapt.ADAPT_STEPS,
                   default=None, metavar='STEPS',
                   help=f'before denoising an image, train the model in memory on it for STEPS '
                        f'steps (default {adapt.ADAPT_STEPS}; nothing is written to the model)')
    p.add_argument('--adapt-lr', type=float, default=adapt.ADAPT_LR,
                   help='learning rate of --adapt')
    p.add_argument('--adapt-lmbd', choices=adapt.LMBD_CHOICES, default=adapt.ADAPT_LMBD,
                   help="noise level of --adapt's loss: model (the model's own loss) or image "
                        "(lmbd = 2 x the image's blind noise estimate)")
    p.add_argument('--stack-format', choices=tuple(denoise_files.STACK_SUFFIXES),
                   default='same',
                   help='the format of a denoised stack (a TIFF of several pages or an OME-Zarr '
                        'folder, denoised tile by tile): same as the input, tiff (OME-TIFF; '
                        'BigTIFF above 2 GB), bigtiff, or zarr (OME-Zarr)')
    cli.add_precision_flag(p)
    args = p.parse_args(bare_refine(sys.argv[1:] if argv is None else argv))

    inputs = image_io.find_images(args.images, 'IMAGE')
    if len(inputs) > 1 and (args.output or args.figure):
        raise ValueError(f"--output and --figure name the outputs of one input, not of "
                         f"{len(inputs)}: use --output-dir")
    plans = denoise_files.output_paths(inputs, args)
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
    for plan in plans:
        for path in filter(None, (plan['output'], plan['figure'])):
            check_writable(path)
    if len(plans) == 1 and not plans[0]['stack']:  # fail before loading the model
        image_io.check_format(plans[0]['output'], image_io.read_image(inputs[0]).dtype)
    name = args.name or cli.DEFAULT_MODEL
    cli.require_checkpoint(args.model_dir, name, f'python train.py --name {name}')
    if args.refine == 'bm3d':  # fail before any network runs
        from utils.prediction.bm3d_stage import bm3d_package
        bm3d_package()

    cli.start_tensorflow(training=False)
    from models import load_model
    model = load_model(args.model_dir, name, precision=args.precision)
    denoise_files.denoise_all(model, plans, args)

if __name__ == '__main__':
    cli.run(main)
