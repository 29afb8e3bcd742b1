"""Stopping training between two steps: on Ctrl-C (SIGINT) and SIGTERM, or when a progress
callback (a GUI's Cancel) raises TrainingStopped.

Python runs a signal's handler between two bytecodes of the main thread, wherever it is; the
handlers of n2s_app.cli.run raise KeyboardInterrupt, which can land inside TensorFlow's Python
code that its C++ calls back (e.g. `Context._handle`, read by the EagerTensor constructor), which
then goes on with a null context and crashes the process (a segmentation fault). The loop defers
them to the end of a step; a second signal runs its handler at once.
"""
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List

StepCallback = Callable[[int, int], None]  # on_step(step, steps): after each training step


class TrainingStopped(KeyboardInterrupt):
    """Raised by a TrainOptions.on_step callback (utils/training/loop.py) to end training after
    the current step: the loop saves it, as on Ctrl-C, and re-raises."""


@contextmanager
def deferred_signals(signums=(signal.SIGINT, signal.SIGTERM)) -> Iterator[Callable[[], None]]:
    """Within the block, the Python handlers of `signums` wait: the block calls the function it
    gets (between two steps) to run those of the signals received meanwhile, in order. A second
    signal before that runs its handler at once (a user who insists). Outside the main thread,
    or for a signal without a Python handler, nothing changes."""
    pending: List[int] = []
    previous: Dict[int, Callable] = {}

    def defer(signum, frame):
        if pending:  # the second: at once
            previous[signum](signum, frame)
        else:
            pending.append(signum)

    def run_pending() -> None:
        while pending:
            signum = pending.pop(0)
            previous[signum](signum, None)

    if threading.current_thread() is threading.main_thread():
        for signum in signums:
            if callable(signal.getsignal(signum)):
                previous[signum] = signal.signal(signum, defer)
    try:
        yield run_pending
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    run_pending()  # a signal that came after the block's last check
