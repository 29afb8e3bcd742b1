"""The napari widgets: *Denoise* (an image layer with a shipped model, any model folder or a
bioimage.io package; 2D, z-stacks, time series, volumes with 3D models, RGB) and *Train* (N2S
or N2SP on image layers or a folder, as train.py / train_pro.py train, optionally fine-tuning
a shipped model).

Work runs in a process of its own (n2s_napari/jobs.py says why), waited for by a worker
thread (napari.qt.threading), with a progress bar and a Cancel button; the viewer stays
responsive and never imports TensorFlow. An error is one line in napari's notification area.
"""
import os
import threading
from typing import List

import numpy as np
from magicgui.widgets import (CheckBox, ComboBox, Container, FileEdit, Label, LineEdit,
                              ProgressBar, PushButton, SpinBox)
from qtpy.QtCore import QObject, Signal

from n2s_app import model_source
from n2s_napari import jobs
from n2s_napari.axes import layer_axes

NO_INIT = '(none: train from scratch)'
FINE_TUNE_FROM = 'bsd68-N2S'  # the README's recipe for a folder of one's own images
FINE_TUNE_LR = '1e-4'


class _Progress(QObject):
    """Progress reported from the worker thread, delivered in the GUI thread."""
    changed = Signal(int, int)


def _notify_error(error: BaseException) -> None:
    from napari.utils.notifications import show_error
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    show_error(text if isinstance(error, (ValueError, OSError))
               else f"{type(error).__name__}: {text}")


def _image_layers(viewer) -> List:
    from napari.layers import Image
    return [layer for layer in viewer.layers if isinstance(layer, Image)]


class _Worker:
    """Runs one job at a time (`jobs.run`: a process of its own, waited for by a thread), with
    a progress bar, Cancel and a one-line error."""

    def __init__(self, container: Container, run_label: str):
        self.run = PushButton(text=run_label)
        self.cancel = PushButton(text='Cancel', enabled=False)
        self.bar = ProgressBar(value=0, min=0, max=1, label='progress')
        self.status = Label(value='')
        container.extend([self.run, self.cancel, self.bar, self.status])
        self.progress = _Progress()
        self.progress.changed.connect(self._show)
        self.stop = threading.Event()
        self.cancel.changed.connect(self.stop.set)
        self.job = None

    def _show(self, done: int, total: int) -> None:
        self.bar.max = max(total, 1)
        self.bar.value = min(done, self.bar.max)

    def start(self, job: str, kwargs: dict, on_done) -> None:
        """Run `jobs.<job>(**kwargs)` in its own process, waited for by a worker thread."""
        from napari.qt.threading import create_worker
        self.stop.clear()
        work = lambda: jobs.run(job, kwargs, self.progress.changed.emit, self.stop.is_set)
        thread = create_worker(work, _start_thread=False, _ignore_errors=True)  # errors: _failed
        thread.returned.connect(on_done)
        thread.errored.connect(self._failed)
        thread.finished.connect(self._idle)
        self.run.enabled, self.cancel.enabled = False, True
        self.status.value = 'working...'
        self.job = thread
        thread.start()

    def _failed(self, error: BaseException) -> None:
        if isinstance(error, jobs.JobCancelled):
            from napari.utils.notifications import show_info
            show_info(str(error))
        else:
            _notify_error(error)

    def _idle(self) -> None:
        self.run.enabled, self.cancel.enabled = True, False
        self.status.value = ''
        self.job = None


class DenoiseWidget(Container):
    """Denoise an image layer into a new layer (the input's scale, translation and metadata)."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.layer = ComboBox(label='image', choices=lambda _: _image_layers(self.viewer))
        self.model = ComboBox(label='model', choices=lambda _: model_source.find_models(
            model_source.SHIPPED_MODELS))
        self.path = FileEdit(label='or folder / .zip', mode='r', nullable=True,
                             tooltip='a model folder (train.py writes one) or a bioimage.io '
                                     'package (export.py --bioimageio); overrides the model')
        self.refine = CheckBox(label='refine', value=True,
                               tooltip='put back the signal the network removed (as '
                                       'test_single.py does by default)')
        self.tta = CheckBox(label='self-ensemble (8x time)', value=False)
        self.adapt = SpinBox(label='adapt steps', value=0, min=0, max=2000,
                             tooltip='first train a copy of the model on the image (its middle '
                                     'frame) for this many steps; 0: off')
        self.extend([self.layer, self.model, self.path, self.refine, self.tta, self.adapt])
        self.worker = _Worker(self, 'Denoise')
        self.worker.run.changed.connect(self.denoise)
        default = 'blind32-N2S'
        if default in self.model.choices:
            self.model.value = default
        for event in ('inserted', 'removed', 'reordered'):
            getattr(self.viewer.layers.events, event).connect(lambda _: self.reset_choices())

    def model_path(self) -> str:
        chosen = str(self.path.value) if self.path.value not in (None, '') else ''
        if chosen and chosen != '.':
            return chosen
        if not self.model.value:
            raise ValueError(f"no model chosen and none in {model_source.SHIPPED_MODELS}; give "
                             f"a model folder or a bioimage.io package")
        return os.path.join(model_source.SHIPPED_MODELS, self.model.value)

    def denoise(self) -> None:
        """Start denoising the chosen layer (errors before the start: one notification)."""
        try:
            layer = self.layer.value
            if layer is None:
                raise ValueError('no image layer to denoise: open or add one first')
            data = layer.data[0] if layer.multiscale else layer.data
            if data.ndim - (1 if layer.rgb else 0) < 2:
                raise ValueError(f"layer {layer.name!r} has {data.ndim} axis; Noise2Same "
                                 f"denoises images of 2 or more axes")
            path = self.model_path()
        except ValueError as error:
            _notify_error(error)
            return
        self.worker.start('denoise', dict(
            data=np.asarray(data), rgb=bool(layer.rgb), scale=tuple(layer.scale),
            name=layer.name, model_path=path, refine=self.refine.value, tta=self.tta.value,
            adapt=self.adapt.value), lambda result: self._add(layer, *result))

    def _add(self, layer, out: np.ndarray, label: str, notes: List[str]) -> None:
        from napari.utils.notifications import show_info
        kwargs = dict(scale=layer.scale, translate=layer.translate, rgb=layer.rgb,
                      metadata=dict(layer.metadata), name=f'{layer.name} denoised ({label})')
        if not layer.rgb:
            kwargs.update(colormap=layer.colormap.name, contrast_limits=layer.contrast_limits)
        self.viewer.add_image(out, **kwargs)
        for note in notes:
            show_info(note)


class TrainWidget(Container):
    """Train N2S or N2SP (train.py / train_pro.py) on image layers or a folder; the model is
    saved as those scripts save it and can then be chosen in *Denoise*."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.layers = ComboBox(label='images', choices=lambda _: _image_layers(self.viewer),
                               nullable=True, tooltip='every frame of the layer is a '
                                                      'training image')
        self.folder = FileEdit(label='or folder', mode='d', nullable=True,
                               tooltip='a folder of PNG, JPEG or TIFF images (overrides the '
                                       'layer)')
        self.method = ComboBox(label='method', choices=['N2S', 'N2SP'], value='N2S')
        self.name = LineEdit(label='model name', value='napari-N2S')
        self.model_dir = FileEdit(label='model folder', mode='d',
                                  value=model_source.SHIPPED_MODELS)
        self.init = ComboBox(label='start from',
                             choices=lambda _: [NO_INIT] + model_source.find_models(
                                 model_source.SHIPPED_MODELS))
        self.steps = SpinBox(label='steps', value=2000, min=1, max=1_000_000)
        self.batch = SpinBox(label='batch size', value=16, min=1, max=512)
        self.patch = SpinBox(label='patch size', value=64, min=16, max=512, step=16)
        self.filters = SpinBox(label='width (from scratch)', value=32, min=4, max=128,
                               tooltip='first_output_filters of a new network; a fine-tuned '
                                       'one keeps its own')
        self.extend([self.layers, self.folder, self.method, self.name, self.model_dir,
                     self.init, self.steps, self.batch, self.patch, self.filters])
        if FINE_TUNE_FROM in self.init.choices:
            self.init.value = FINE_TUNE_FROM
        self.worker = _Worker(self, 'Train')
        self.worker.run.changed.connect(self.train)
        for event in ('inserted', 'removed', 'reordered'):
            getattr(self.viewer.layers.events, event).connect(lambda _: self.reset_choices())

    def arguments(self, images: str) -> List[str]:
        """The command line of train.py / train_pro.py for these settings."""
        name = self.model_name()
        steps = int(self.steps.value)
        argv = ['--images', images, '--name', name, '--model-dir', str(self.model_dir.value),
                '--steps', str(steps), '--batch-size', str(self.batch.value),
                '--patch-size', str(self.patch.value), '--noise-sigma', 'auto',
                '--save-steps', str(max(1, min(500, steps // 4)))]
        if self.init.value and self.init.value != NO_INIT:
            argv += ['--init-from', os.path.join(model_source.SHIPPED_MODELS, self.init.value),
                     '--lr', FINE_TUNE_LR, '--lr-schedule', 'cosine']
        else:
            argv += ['--filters', str(self.filters.value)]
        if self.method.value == 'N2SP':
            argv += ['--pro-steps', str(max(1, steps // 8))]
        return argv

    def model_name(self) -> str:
        name = self.name.value.strip()
        if not name or os.sep in name or name.startswith('-'):
            raise ValueError('give the model a name (a folder name: no slashes, not starting '
                             'with -)')
        return name

    def images_folder(self) -> str:
        """The training images: the folder given, else the layer's frames written as TIFF
        files into <model folder>/<name>-images/ (kept: a continued run checks them; a folder
        holding other images is refused rather than mixed)."""
        if self.folder.value not in (None, '') and str(self.folder.value) not in ('', '.'):
            return str(self.folder.value)
        layer = self.layers.value
        if layer is None:
            raise ValueError('choose an image layer or a folder of training images')
        data = np.asarray(layer.data[0] if layer.multiscale else layer.data, np.float32)
        axes = layer_axes(data.ndim, layer.rgb, 2)
        frames = data.reshape((-1,) + data.shape[len(axes) - (3 if layer.rgb else 2):])
        folder = os.path.join(str(self.model_dir.value), f'{self.model_name()}-images')
        names = [f'{layer.name}-{i:04d}.tif' for i in range(len(frames))]
        import tifffile

        from utils.core.files import atomic_write
        if os.path.isdir(folder) and os.listdir(folder):
            if sorted(os.listdir(folder)) != sorted(names) or not all(
                    np.array_equal(tifffile.imread(os.path.join(folder, n)), f)
                    for n, f in zip(names, frames)):
                raise ValueError(f"{folder} holds other training images (an earlier run of "
                                 f"this name); choose another model name or remove it")
            return folder
        os.makedirs(folder, exist_ok=True)
        for name, frame in zip(names, frames):
            with atomic_write(os.path.join(folder, name)) as tmp:
                tifffile.imwrite(tmp, frame)
        return folder

    def train(self) -> None:
        try:
            argv = self.arguments(self.images_folder())
        except (ValueError, OSError) as error:
            _notify_error(error)
            return
        self.worker.start('train', dict(argv=argv, pro=self.method.value == 'N2SP'),
                          self._done)

    def _done(self, path: str) -> None:
        """Say where the model is and offer it in the docked Denoise widgets' model lists
        (which list the shipped models' folder: the default model folder here)."""
        from napari.utils.notifications import show_info
        name = os.path.basename(path)
        for widget in self.viewer.window.dock_widgets.values():
            if isinstance(widget, DenoiseWidget):
                widget.reset_choices()
                if name in widget.model.choices:
                    widget.model.value = name
        show_info(f"trained {path}; Denoise lists it when it is in "
                  f"{model_source.SHIPPED_MODELS}, else give it its folder")
