"""test_single.py's work after its flags: where each output goes, and the loop that denoises
file after file (a failed file is one line of error, the others go on) with the model-fit
notes summed up."""
import os
import sys
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional

from tqdm.auto import tqdm

from n2s_app import adapt
from utils.core import image_io
from utils.evaluation import fit
from utils.evaluation.figure import save_figure_atomic
from utils.prediction.photo import denoise, model_input, output_pixels
from utils.prediction.predictor import PredictOptions
from utils.prediction.refine import describe

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


def predict_options(args) -> PredictOptions:
    """The flags --tta, --refine, --tile-size, --margin and --colour as PredictOptions."""
    return PredictOptions(tta=args.tta, refine=args.refine, tile_size=args.tile_size,
                          margin=args.margin, colour=args.colour)


def denoise_file(model, plan: Dict[str, Optional[str]], args,
                 note: Callable[[str], None] = print) -> None:
    """Read, denoise and write one file (atomically); ValueError/OSError name the problem.
    `note` gets the one-line model-fit note (utils/evaluation/fit.py) when the image's noise
    level lies outside the model's training range, before the (possibly slow) denoising, and
    the refinement's line (`refine.describe`) after it."""
    image = image_io.read_image(plan['input'])
    image_io.check_format(plan['output'], image.dtype)
    grey = model_input(image, model.in_channels, keep_colour=False)
    message = fit.unfit_message(model.name, model.saved, grey, model.dim, args.model_dir,
                                plan['input'])
    if message:
        note(message)
    with adapt.adapted(model, grey, args.adapt, args.adapt_lr, lmbd=args.adapt_lmbd) \
            if args.adapt else nullcontext():
        reports: List = []
        x, denoised = denoise(model.restored_predictor(), image, predict_options(args), reports)
    if reports:
        note(f"{os.path.basename(plan['input'])}: {describe(reports)}")
    image_io.write_image_atomic(plan['output'], output_pixels(denoised, image))
    if plan['figure']:
        save_figure_atomic(plan['figure'], x, image_io.to_dtype(denoised, image.pixels),
                           args.show, title=f"{args.name}: {os.path.basename(plan['input'])}")


def denoise_all(model, plans: List[Dict[str, Optional[str]]], args) -> None:
    """Denoise every planned file with `model`; exit status 1 when a file failed."""
    if len(plans) == 1:
        denoise_file(model, plans[0], args)
        print(f"wrote {plans[0]['output']} and {plans[0]['figure']}")
        return
    failed: List[str] = []
    unfit: List[str] = []  # inputs outside the model's noise range: the first note in full
    bar = tqdm(plans, desc=f'denoising with {args.name}', unit='file',
               mininterval=1 if sys.stderr.isatty() else 30)

    def note(message: str) -> None:  # about the loop's current `plan`
        if not message.startswith('note:'):  # the refinement's line of each image
            bar.write(message)
            return
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
