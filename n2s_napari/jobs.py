"""The widgets' work, run in a process of its own (multiprocessing 'spawn'): TensorFlow is never
imported into napari's process. Importing it there after napari's OpenGL canvas exists crashed
the viewer (a segmentation fault in the static initialisers of TensorFlow's LLVM, with Mesa's
LLVM-based OpenGL already loaded: napari 0.9.2, PyQt5, llvmpipe). A separate process also keeps
the viewer responsive while TensorFlow computes, and a crash of the job cannot take the viewer.

`run(job, kwargs, progress, cancelled)` starts the process and waits for it (from a worker
thread): progress(done, total) as the job reports it, cancelled() polled; the job's result or
its error (ValueError, OSError or RuntimeError, one line) comes back. Like every 'spawn'
process, the job's process imports the main module again: a script that opens napari and
uses the widgets needs the usual `if __name__ == '__main__':` guard.
"""
import multiprocessing
import queue
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from utils.core.stack_io import Stack

ERRORS = (ValueError, OSError, RuntimeError)  # re-raised in the viewer as the kind they were
CANCEL_SECONDS = 60  # after Cancel, a job that has not stopped is ended


class JobCancelled(Exception):
    """The job stopped because Cancel was pressed (training: its last step is saved)."""


def run(job: str, kwargs: Dict, progress: Callable[[int, int], None],
        cancelled: Callable[[], bool]):
    """Run the function `job` of this module with `kwargs` in a new process; return its result.
    Cancel: the job is asked to stop between two tiles or steps, and ended if it has not
    within 60 s."""
    context = multiprocessing.get_context('spawn')
    messages = context.Queue()
    stop = context.Event()
    process = context.Process(target=_child, args=(job, kwargs, messages, stop), daemon=True)
    process.start()
    deadline = None  # once Cancel is pressed: when the process is ended if it goes on
    try:
        while True:
            if cancelled() and deadline is None:
                stop.set()
                deadline = time.monotonic() + CANCEL_SECONDS
            if deadline is not None and time.monotonic() > deadline:
                process.terminate()
                raise JobCancelled('cancelled')
            try:
                kind, *payload = messages.get(timeout=0.1)
            except queue.Empty:
                if not process.is_alive() and messages.empty():
                    raise RuntimeError(f"the {job} process ended unexpectedly (exit code "
                                       f"{process.exitcode})")
                continue
            if kind == 'progress':
                progress(*payload)
            elif kind == 'result':
                return payload[0]
            elif kind == 'cancelled':
                raise JobCancelled(payload[0])
            else:  # 'error': the kind among ERRORS it is one of, else RuntimeError
                kind, message = payload
                raise {e.__name__: e for e in ERRORS}.get(kind, RuntimeError)(message)
    finally:
        if process.is_alive():
            process.join(5)
        if process.is_alive():
            process.terminate()


def _child(job: str, kwargs: Dict, messages, stop) -> None:
    from utils.prediction.stack import Cancelled
    from utils.training.interrupts import TrainingStopped
    try:
        result = globals()[job](progress=lambda done, total: messages.put(
            ('progress', int(done), int(total))), cancelled=stop.is_set, **kwargs)
        messages.put(('result', result))
    except (Cancelled, TrainingStopped) as stopped:
        messages.put(('cancelled', str(stopped) or 'cancelled'))
    except Exception as error:  # sent back as a one-line message
        text = str(error).strip().splitlines()[0] if str(error).strip() else ''
        kind = next((e.__name__ for e in ERRORS if isinstance(error, e)), None)
        messages.put(('error', kind or 'RuntimeError',
                      text if kind else f"{type(error).__name__}: {text}"))


def denoise(data: np.ndarray, rgb: bool, scale: Tuple[float, ...], name: str, model_path: str,
            refine: bool, tta: bool, adapt: int, progress, cancelled
            ) -> Tuple[np.ndarray, str, List[str]]:
    """A layer's data denoised: (float32 array of its shape, the model's label, notes)."""
    from contextlib import nullcontext

    from n2s_app import adapt as adapting
    from n2s_app import model_source
    from n2s_napari.axes import layer_axes, middle_frame
    from utils.prediction.photo import LUMA, denoise_array
    from utils.prediction.predictor import PredictOptions
    from utils.prediction.stack import denoise_stack
    loaded = model_source.load(model_path)
    predictor = loaded.predictor
    axes = layer_axes(data.ndim, rgb, predictor.dim)
    stack = Stack(data, axes, name, 'layer', scale=dict(zip(axes, map(float, scale))))
    options = PredictOptions(refine=refine, tta=tta, batch_size=1)
    context = nullcontext()
    if adapt:
        if loaded.model is None:
            raise ValueError('a bioimage.io package cannot be adapted; choose a model folder '
                             'or set adapt steps to 0')
        frame = middle_frame(data, axes, predictor.dim)
        if 'S' in axes and predictor.in_channels == 1:  # as test_single.py: the luminance
            frame = frame @ LUMA if frame.shape[-1] == 3 else frame.mean(axis=-1)
        context = adapting.adapted(loaded.model, frame, adapt, progress=progress)
    with context:
        if axes == 'YXS' and predictor.in_channels == 1:  # a colour photograph
            progress(0, 1)
            out = denoise_array(predictor, np.asarray(data, np.float64), options)
            progress(1, 1)
            return out, loaded.label, []
        out = np.zeros(data.shape, np.float32)
        result = denoise_stack(predictor, stack, out, options, progress=progress,
                               cancelled=cancelled)
    notes = list(result.notes)
    if result.constant:
        notes.append(f"{result.constant} constant (empty) frame(s) passed through unchanged")
    return out, loaded.label, notes


def train(argv: List[str], pro: bool, progress, cancelled) -> str:
    """train.py (or train_pro.py with `pro`) with the command line `argv`; returns the model's
    folder. Cancel ends it after the current step, which is saved."""
    import train as train_script
    import train_pro
    from utils.training.interrupts import TrainingStopped

    def on_step(step: int, steps: int) -> None:
        progress(step, steps)
        if cancelled():
            raise TrainingStopped(f'cancelled at step {step} (saved)')
    try:
        (train_pro if pro else train_script).main(argv, on_step=on_step)
    except SystemExit as ended:  # 1: cli.exit_if_nothing_trained; 2: a flag argparse refused
        if ended.code == 1:
            raise ValueError(f"nothing to train: the model is already at step "
                             f"{argv[argv.index('--steps') + 1]} (raise the steps to continue)"
                             ) from ended
        raise ValueError(f"train.py refused the settings (exit status {ended.code}): "
                         f"{' '.join(argv)}") from ended
    return f"{argv[argv.index('--model-dir') + 1]}/{argv[argv.index('--name') + 1]}"


def probe(progress, cancelled, seconds: float = 0.0, fail: Optional[str] = None) -> str:
    """A job for the tests: reports progress for `seconds` (cancellable), or raises `fail`."""
    import time
    if fail:
        raise ValueError(fail)
    steps = max(1, int(seconds * 20))
    for done in range(steps):
        if cancelled():
            from utils.prediction.stack import Cancelled
            raise Cancelled('cancelled')
        progress(done + 1, steps)
        time.sleep(0.05)
    return 'done'
