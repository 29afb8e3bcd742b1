"""Denoise image files (PNG, JPEG or TIFF; 8- or 16-bit; grey, RGB, RGBA or palette) with a
trained model; writes each denoised image (same dtype, clipped, colour kept) and, for one
input, a side-by-side figure. The output is refined by default (--no-refine: the network's
output alone), and a line is printed when the image's noise level lies outside what the model
was trained on.

    python test_single.py photo.png                      # -> photo_denoised.png, photo_figure.png
    python test_single.py scan.tif --name N2S-3000 --output out/scan_clean.tif --show
    python test_single.py a.png b.tif folder/ --output-dir out/   # many files, the model loaded once
    python test_single.py photo.png --adapt              # first train a copy on the photo itself

With several files, one that fails gets a one-line error and the others go on; the exit status
is then 1 and a summary names the failed files. Inputs are never overwritten.
"""
import argparse
import os
import sys
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional

from utils import adapt, cli, fit, image_utils

UNFIT_SHOWN = 5  # several inputs: the summary names this many of those outside the model's range


def output_paths(inputs: List[str], args) -> List[Dict[str, Optional[str]]]:
    """For each input: its denoised image and figure paths (None: no figure). Raises
    ValueError when an output would replace an input or two inputs share an output."""
    single = len(inputs) == 1
    plans = []
    for path in inputs:
        stem, suffix = os.path.splitext(os.path.basename(path))
        folder = args.output_dir or os.path.dirname(path)
        output = (args.output if single and args.output else
                  os.path.join(folder, f'{stem}_denoised{suffix}'))
        figure = None
        if single or args.figures:
            figure = (args.figure if single and args.figure else
                      os.path.join(folder, f'{stem}_figure.png'))
        plans.append({'input': path, 'output': output, 'figure': figure})
    sources = {os.path.abspath(p) for p in inputs}
    written: Dict[str, str] = {}
    for plan in plans:
        for path in filter(None, (plan['output'], plan['figure'])):
            target = os.path.abspath(path)
            if target in sources:
                raise ValueError(f"output {path} is the input image; choose another --output "
                                 f"or --output-dir")
            if target in written:
                raise ValueError(f"{written[target]} and {plan['input']} would both write {path}: "
                                 f"denoise them into different --output-dir folders")
            written[target] = plan['input']
    return plans


def denoise_file(model, plan: Dict[str, Optional[str]], args,
                 note: Callable[[str], None] = print) -> None:
    """Read, denoise and write one file (atomically); ValueError/OSError name the problem.
    `note` gets the one-line model-fit note (utils/fit.py) when the image's noise level lies
    outside the model's training range, before the (possibly slow) denoising."""
    image = image_utils.read_image(plan['input'])
    image_utils.check_format(plan['output'], image.dtype)
    grey = image_utils.model_input(image, model.in_channels, keep_colour=False)
    message = fit.unfit_message(model.name, model.saved, grey, model.dim, args.model_dir,
                                plan['input'])
    if message:
        note(message)
    with adapt.adapted(model, grey, args.adapt, args.adapt_lr, lmbd=args.adapt_lmbd) \
            if args.adapt else nullcontext():
        x, denoised = image_utils.denoise(model, image, args.tile_size, args.margin, args.tta,
                                          args.refine, args.colour)
    image_utils.write_image_atomic(plan['output'], image_utils.output_pixels(denoised, image))
    if plan['figure']:
        image_utils.save_figure_atomic(plan['figure'], x,
                                       image_utils.to_dtype(denoised, image.pixels), args.show,
                                       title=f"{args.name}: {os.path.basename(plan['input'])}")


def main(argv: Optional[List[str]] = None) -> None:
    p = cli.new_parser(__doc__)
    p.add_argument('images', nargs='+', metavar='IMAGE',
                   help='input image files, folders (their PNG, JPEG and TIFF files) or globs; '
                        'never modified')
    p.add_argument('--model-dir', default=cli.MODEL_DIR, help='folder of the model directories')
    p.add_argument('--name', default=cli.DEFAULT_MODEL,
                   help=f'model directory name (default: {cli.DEFAULT_MODEL}, the best fast '
                        f'shipped model; blind-N2S: better still, 3x slower)')
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
                   help=f'tile size for images over {image_utils.TILE_ABOVE} pixels')
    p.add_argument('--margin', type=cli.positive_int, default=32, help='tile overlap / 2')
    p.add_argument('--tta', action='store_true',
                   help='test-time self-ensemble over the 8 flips and rotations (8x the time)')
    p.add_argument('--refine', action=argparse.BooleanOptionalAction, default=cli.DEFAULT_REFINE,
                   help='put back the signal in what the network removed (utils/refine.py: a '
                        'Wiener filter at the noise level estimated from the image); better at '
                        'every noise level in benchmarks/noise_levels.py')
    p.add_argument('--colour', choices=image_utils.COLOUR_MODES, default='opponent',
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
    cli.add_precision_flag(p)
    args = p.parse_args(argv)

    inputs = image_utils.find_images(args.images, 'IMAGE')
    if len(inputs) > 1 and (args.output or args.figure):
        raise ValueError(f"--output and --figure name the outputs of one input, not of "
                         f"{len(inputs)}: use --output-dir")
    plans = output_paths(inputs, args)
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
    for plan in plans:
        for path in filter(None, (plan['output'], plan['figure'])):
            image_utils.check_writable(path)
    if len(plans) == 1:  # fail before loading the model
        image_utils.check_format(plans[0]['output'], image_utils.read_image(inputs[0]).dtype)
    cli.require_checkpoint(args.model_dir, args.name, f'python train.py --name {args.name}')

    cli.start_tensorflow(training=False)
    from tqdm.auto import tqdm
    from models import load_model
    model = load_model(args.model_dir, args.name, precision=args.precision)
    if len(plans) == 1:
        denoise_file(model, plans[0], args)
        print(f"wrote {plans[0]['output']} and {plans[0]['figure']}")
        return
    failed: List[str] = []
    unfit: List[str] = []  # inputs outside the model's noise range: the first note in full
    bar = tqdm(plans, desc=f'denoising with {args.name}', unit='file',
               mininterval=1 if sys.stderr.isatty() else 30)

    def note(message: str) -> None:  # about the loop's current `plan`
        if not unfit:
            bar.write(message)
        unfit.append(plan['input'])

    for plan in bar:
        try:
            denoise_file(model, plan, args, note)
        except (ValueError, OSError) as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else \
                type(error).__name__
            bar.write(f"error: {plan['input']}: {message}", file=sys.stderr)
            failed.append(plan['input'])
    done = len(plans) - len(failed)
    where = args.output_dir or 'beside the inputs'
    print(f"denoised {done} of {len(plans)} files into {where}")
    if len(unfit) > 1:
        shown = ', '.join(unfit[:UNFIT_SHOWN]) + (', ...' if len(unfit) > UNFIT_SHOWN else '')
        print(f"note: {len(unfit)} of {len(plans)} images lie outside the noise range "
              f"{args.name} was trained on (as the first note says): {shown}")
    if failed:
        print(f"failed ({len(failed)}): {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    cli.run(main)
