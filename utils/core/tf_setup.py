"""How TensorFlow starts: quietly, and with oneDNN chosen per job.

TensorFlow prints C++ log lines when it is imported and when it first looks for a GPU (on a CPU
machine an E-level "failed call to cuInit" among them) before TF_CPP_MIN_LOG_LEVEL takes
effect. `import_tensorflow` hides that start-up output; set N2S_TF_LOGS=1 to see it.

oneDNN: its CPU kernels make TRAINING about 30 % faster on AVX2 CPUs (e.g. AMD Zen 3), where
TensorFlow leaves them off, but there a change of input shape costs seconds in PREDICTION (each
BSD68 image or web upload). Training jobs therefore call `use_onednn(True)`; prediction jobs
keep TensorFlow's own choice (on for CPUs with AVX-512 VNNI/BF16 or AMX, off otherwise). An
explicit TF_ENABLE_ONEDNN_OPTS in the environment always wins.
"""
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
_started = False  # True once `import_tensorflow` has started TensorFlow in this process


def use_onednn(on: bool) -> None:
    """Choose oneDNN for this process unless TF_ENABLE_ONEDNN_OPTS is set; call it before
    TensorFlow is imported (later it has no effect)."""
    if 'tensorflow' not in sys.modules:
        os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1' if on else '0')


def import_tensorflow():
    """Import TensorFlow and initialise its devices with stderr silenced (unless N2S_TF_LOGS=1);
    returns the module. Python errors raised meanwhile still propagate. Once per process: the
    device probe runs even when TensorFlow was imported elsewhere first."""
    global _started
    if _started or os.environ.get('N2S_TF_LOGS') == '1':
        import tensorflow as tf
        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf
        tf.config.list_physical_devices()  # the CUDA probe, and its cuInit message
        tf.constant(0.0) + 1.0  # the first op: the eager context and its device lines
        _started = True
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf
