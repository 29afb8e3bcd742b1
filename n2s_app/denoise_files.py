"""test_single.py's work after its flags: where each output goes, and the loop that denoises
file after file (a failed file is one line of error, the others go on) with the model-fit
notes summed up."""
import os
import sys
from contextlib import nullcontext
from dataclasses import replace
from typing import Callable, Dict, List, Optional, Tuple

from tqdm.auto import tqdm

from n2s_app import adapt, cli
from n2s_app.model_source import default_model_for
from utils.core import image_io, stack_io
from utils.core.noise import measured_noise
from utils.evaluation import fit
from utils.evaluation.figure import save_figure_atomic
from utils.prediction.photo import denoise, model_input, output_pixels
from utils.prediction.predictor import PredictOptions
from utils.prediction.refine import describe, summarise
from utils.prediction.stack import denoise_stack

STACK_SUFFIXES = {'same': None, 'tiff': '.ome.tif', 'bigtiff': '.ome.tif', 'zarr': '.ome.zarr'}
STACK_BATCH = 1  # tiles per network call on stacks (4: 0.7 GB more peak memory)
UNFIT_SHOWN = 5  # several inputs: the summary names this many of those outside the model's range


def output_paths(inputs: List[str], args) -> List[Dict]:
    """For each input: its denoised image and figure paths (None: no figure; stacks have
    none) and whether it is a stack (`stack_io.is_stack`: written with `denoise_stack_file`).
    Raises ValueError when an output would replace an input or two inputs share an output."""
    single = len(inputs) == 1
    plans = []
    for path in inputs:
        stem, suffix = os.path.splitext(os.path.basename(path))
        folder = args.output_dir or os.path.dirname(path.rstrip('/'))
        stack = stack_io.is_stack(path)
        default = (stack_io.output_name(path, STACK_SUFFIXES[args.stack_format]) if stack
                   else f'{stem}_denoised{suffix}')
        output = args.output if single and args.output else os.path.join(folder, default)
        if stack and not output.rstrip('/').lower().endswith(('.zarr', '.tif', '.tiff')):
            raise ValueError(f"{output}: a denoised stack is written as TIFF (.tif) or "
                             f"OME-Zarr (.zarr); choose such an --output")
        figure = None
        if (single or args.figures) and not stack:
            figure = (args.figure if single and args.figure else
                      os.path.join(folder, f'{stem}_figure.png'))
        plans.append({'input': path, 'output': output, 'figure': figure, 'stack': stack})
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
    """The flags --tta, --refine (None, 'gate' or 'bm3d'), --tile-size, --margin and --colour
    as PredictOptions."""
    return PredictOptions(tta=args.tta, refine=bool(args.refine),
                          bm3d=args.refine == 'bm3d', tile_size=args.tile_size,
                          margin=args.margin, colour=args.colour)


def choose_model(model, noise: Optional[float], args, loaded: Dict
                 ) -> Tuple[object, Optional[str]]:
    """(the model for an image of relative noise `noise`, a line saying why when it is not
    `model`): `model` when --name was given, else the one `model_source.default_model_for`
    names, loaded once into `loaded` (name -> model)."""
    if args.name is not None:
        return model, None
    name = default_model_for(noise, args.model_dir)
    if name == model.name:
        return model, None
    if name not in loaded:
        from models import load_model
        loaded[name] = load_model(args.model_dir, name, precision=args.precision)
    return loaded[name], (f"estimated noise above {cli.NOISY_ABOVE} x the image's std: "
                          f"denoised with {name}, trained on Gaussian and photon noise "
                          f"(--name {model.name} to use {model.name})")


def denoise_file(model, plan: Dict[str, Optional[str]], args,
                 note: Callable[[str], None] = print, loaded: Optional[Dict] = None) -> None:
    """Read, denoise and write one file (atomically); ValueError/OSError name the problem.
    Without --name a very noisy image is denoised by another shipped model (`choose_model`,
    loaded once into `loaded`). `note` gets that choice, the one-line model-fit note
    (utils/evaluation/fit.py) when the image's noise level lies outside the model's training
    range, before the (possibly slow) denoising, and the refinement's line
    (`refine.describe`) after it."""
    image = image_io.read_image(plan['input'])
    image_io.check_format(plan['output'], image.dtype)
    grey = model_input(image, model.in_channels, keep_colour=False)
    noise = measured_noise(grey, model.dim)
    model, why = choose_model(model, noise, args, {} if loaded is None else loaded)
    if why:
        note(f"{os.path.basename(plan['input'])}: {why}")
    message = fit.unfit_message(model.name, model.saved, grey, model.dim, args.model_dir,
                                plan['input'], noise)
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
                           args.show, title=f"{model.name}: {os.path.basename(plan['input'])}")


def denoise_stack_file(model, plan: Dict, args, note: Callable[[str], None] = print) -> None:
    """Denoise one stack (a TIFF of several pages or an OME-Zarr image) tile by tile into a TIFF
    or OME-Zarr (`plan['output']`'s suffix; BigTIFF with --stack-format bigtiff or above 2 GB),
    never holding it whole (utils/prediction/stack.py); `note` gets what was done."""
    if args.adapt:
        raise ValueError("--adapt trains on one image held in memory; it does not take stacks "
                         "(denoise the stack without it, or adapt on one of its frames first)")
    if args.refine == 'bm3d':
        raise ValueError("--refine bm3d filters one image held in memory; it does not take "
                         "stacks (denoise the stack with --refine)")
    stack = stack_io.open_stack(plan['input'])
    predictor = model.restored_predictor()
    output = plan['output'].rstrip('/')
    name = os.path.basename(plan['input'].rstrip('/'))
    with tqdm(desc=f'{name} with {model.name}', unit='tile',
              mininterval=1 if sys.stderr.isatty() else 30) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        options = replace(predict_options(args), batch_size=STACK_BATCH)
        if output.lower().endswith('.zarr'):
            with stack_io.zarr_output(output, stack) as out:
                result = denoise_stack(predictor, stack, out, options, progress)
        else:
            folder = os.path.dirname(os.path.abspath(output))
            with stack_io.scratch_array(folder, stack) as out:
                result = denoise_stack(predictor, stack, out, options, progress)
                stack_io.write_tiff_pages(output, out, stack,
                                          bigtiff=True if args.stack_format == 'bigtiff' else None)
    done = f"{name}: {stack.describe().split(': ', 1)[1]}; {result.frames} frame(s) denoised"
    if result.constant:
        done += f", {result.constant} constant (empty) frame(s) passed through unchanged"
    note(done)
    for message in result.notes:
        note(f"{name}: {message}")
    if result.reports:
        note(f"{name}: {summarise(result.reports)}")


def denoise_all(model, plans: List[Dict], args) -> None:
    """Denoise every planned file with `model`; exit status 1 when a file failed."""
    if len(plans) == 1:
        (denoise_stack_file if plans[0]['stack'] else denoise_file)(model, plans[0], args)
        print(f"wrote {plans[0]['output']}" + (f" and {plans[0]['figure']}"
                                               if plans[0]['figure'] else ''))
        return
    failed: List[str] = []
    loaded: Dict = {}  # the models chosen for single images besides `model` (`choose_model`)
    unfit: List[str] = []  # inputs outside the model's noise range: the first note in full
    bar = tqdm(plans, desc=f'denoising with {model.name}' if args.name else 'denoising',
               unit='file',
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
            if plan['stack']:
                denoise_stack_file(model, plan, args, note)
            else:
                denoise_file(model, plan, args, note, loaded)
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
              f"the model was trained on (as the first note says): {shown}")
    if failed:
        print(f"failed ({len(failed)}): {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)
