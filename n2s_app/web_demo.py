"""The web demo (`python demo.py`): upload an image or pick an example, get it denoised.

`DenoiseService` does the work and knows nothing of the web page: it lists the model
directories, loads each model once, and denoises an image file with the same code path as
test_single.py (`image_io.read_image` / `denoise` / `output_pixels`). `build_app` puts a
Gradio page in front of it. Image arrays are (H, W) grey or (H, W, C) channels last.
"""
import contextlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np

from n2s_app.adapt import ADAPT_SECONDS, ADAPT_STEPS, adapted
from n2s_app.cli import DEFAULT_MODEL, DEFAULT_REFINE, NOISY_ABOVE, NOISY_MODEL
from n2s_app.model_source import default_model_for
from utils.core import image_io
from utils.core.files import atomic_write
from utils.core.noise import measured_noise
from utils.evaluation.fit import unfit_message
from utils.evaluation.metrics import PSNR, SSIM
from utils.model_io.checkpoints import latest_checkpoint
from utils.prediction.photo import denoise, model_input, output_pixels
from utils.prediction.predictor import PredictOptions
from utils.prediction.refine import describe

MAX_PIXELS = 25_000_000  # larger uploads are refused (test_single.py tiles any size)
MAX_UPLOAD = '200mb'  # Gradio refuses larger uploads before storing them
KEEP_FILES = 48  # newest files kept in the demo's folders: those of about the last 10 requests
CACHE_HOURS = 1  # and none older than this (Gradio's delete_cache, checked every 10 minutes)


def prune(folder: str, keep: int, since: float = 0.0) -> int:
    """Delete all but the `keep` newest files under `folder` that were modified after `since`
    (a time.time()), and the folders they leave empty. Returns how many were deleted."""
    files = []
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            try:
                mtime = os.stat(path).st_mtime
            except FileNotFoundError:  # pruned by a concurrent request
                continue
            if mtime >= since:
                files.append((mtime, path))
    deleted = 0
    for _, path in sorted(files, reverse=True)[keep:]:
        try:
            os.remove(path)
            deleted += 1
        except FileNotFoundError:
            continue
        with contextlib.suppress(OSError):  # not empty, or gone
            parent = os.path.dirname(path)
            if os.path.abspath(parent) != os.path.abspath(folder):
                os.rmdir(parent)
    return deleted


@dataclass
class Result:
    """What one request returns: 8-bit views of input and output for the page, the denoised
    file in the input's bit depth, and a one-paragraph report."""
    input_view: np.ndarray
    output_view: np.ndarray
    path: str
    report: str


def display_range(pixels: np.ndarray) -> tuple:
    """(low, high) of an image's values for an 8-bit view: the dtype's range for integers,
    min..max for floats."""
    if np.issubdtype(pixels.dtype, np.integer):
        return 0.0, float(np.iinfo(pixels.dtype).max)
    return float(np.min(pixels)), float(max(np.max(pixels), np.min(pixels) + 1e-12))


def to_view(image: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip(np.round((image - low) / (high - low) * 255), 0, 255).astype(np.uint8)


# the first choice of the page when both models are there: test_single.py's default, the
# model chosen per image by its noise (`n2s_app.model_source.default_model_for`)
AUTOMATIC = f'automatic: {DEFAULT_MODEL}, or {NOISY_MODEL} for very noisy images'


class DenoiseService:
    """Denoises image files with the models under `model_dir`, one request at a time.

    Models are loaded on first use and kept; a lock serialises prediction, so concurrent
    requests get their own, correct results. Outputs go to fresh folders under `out_dir`.
    After each request the files written under `cache_dir` (default `out_dir`; the web page
    passes Gradio's upload cache, which holds out_dir) since the service started are pruned to
    the `keep` newest.
    """

    def __init__(self, model_dir: str, out_dir: Optional[str] = None,
                 cache_dir: Optional[str] = None, keep: int = KEEP_FILES):
        self.model_dir = model_dir
        self.out_dir = out_dir or tempfile.mkdtemp(prefix='n2s-web-')
        self.cache_dir, self.keep = cache_dir or self.out_dir, keep
        self.started = time.time()
        self._models: Dict[str, object] = {}
        self._lock = threading.Lock()

    def model_names(self) -> List[str]:
        """Every model directory under model_dir, sorted (with or without a checkpoint)."""
        if not os.path.isdir(self.model_dir):
            return []
        folder = lambda name: os.path.join(self.model_dir, name)
        return sorted(name for name in os.listdir(self.model_dir)
                      if os.path.isdir(folder(name)) and not name.startswith('.'))

    def choices(self) -> List[str]:
        """The models to choose from: AUTOMATIC first when both of its models are there."""
        names = self.model_names()
        return ([AUTOMATIC] if {DEFAULT_MODEL, NOISY_MODEL} <= set(names) else []) + names

    def default_model(self) -> Optional[str]:
        names = self.choices()
        return next((n for n in (AUTOMATIC, DEFAULT_MODEL) if n in names),
                    names[0] if names else None)

    def model(self, name: str):
        """The model `name`, loaded once (ValueError when its folder has no checkpoint)."""
        if name not in self._models:
            from models import load_model
            folder = os.path.join(self.model_dir, name)
            if not os.path.isdir(folder) or latest_checkpoint(folder) is None:
                raise ValueError(f"model {name} has no checkpoint in {folder}; train it first or "
                                 f"choose another model")
            self._models[name] = load_model(self.model_dir, name)
        return self._models[name]

    def denoise(self, path: str, name: str, sigma: float = 0.0, tta: bool = False, seed: int = 0,
                progress: Callable[[float, str], None] = lambda fraction, text: None,
                adapt_steps: int = 0, refine: bool = DEFAULT_REFINE) -> Result:
        """Denoise the image file `path` with model `name` (colour stays colour); with
        sigma > 0 the image is taken as clean, Gaussian noise of that std (on the 0..255
        scale) is added first, and PSNR and SSIM against it are reported. adapt_steps > 0:
        first adapt the model to the image (`n2s_app.adapt`; the loaded model gets its weights
        back afterwards). refine: `utils.prediction.refine` the output. The report says when
        the image's noise lies outside the model's training range (`utils.evaluation.fit`).
        Bad input raises ValueError with a readable message."""
        if not path or not os.path.isfile(path):
            raise ValueError("no image given: upload a PNG, JPEG or TIFF file")
        if os.path.getsize(path) == 0:
            raise ValueError(f"{os.path.basename(path)} is empty: upload an image file")
        height, width = image_io.image_size(path)
        if height * width > MAX_PIXELS:
            raise ValueError(f"{os.path.basename(path)} has {height * width / 1e6:.0f} "
                             f"megapixels; the web demo takes up to {MAX_PIXELS / 1e6:.0f} (use "
                             f"test_single.py, which tiles any size)")
        progress(0.1, 'reading')
        image = image_io.read_image(path)
        low, high = display_range(image.pixels)
        clean = None
        if sigma > 0:
            clean = image.colour
            scale = (high - low) / 255.0
            noise = np.random.default_rng(seed).normal(0, sigma * scale, clean.shape)
            image = image_io.LoadedImage(image.pixels, clean + noise, image.alpha)
        progress(0.2, 'denoising')
        started = time.time()
        chosen, noise = '', None
        if name == AUTOMATIC:  # as test_single.py without --name
            noise = measured_noise(model_input(image, 1, keep_colour=False))
            name = default_model_for(noise, self.model_dir)
            chosen = (f" (chosen: estimated noise above {NOISY_ABOVE} x the image's std)"
                      if name == NOISY_MODEL else ' (chosen for its noise level)')
        with self._lock:
            model = self.model(name)
            grey = model_input(image, model.in_channels, keep_colour=False)
            note = unfit_message(name, model.saved, grey, model.dim, self.model_dir,
                                 os.path.basename(path), noise)
            step = lambda done, steps: progress(0.2 + 0.6 * done / steps,
                                                f'adapting to the image: step {done}/{steps}')
            with adapted(model, grey, adapt_steps, progress=step) if adapt_steps else \
                    contextlib.nullcontext():
                reports: list = []
                x, denoised = denoise(model.restored_predictor(), image,
                                      PredictOptions(tta=tta, refine=refine), reports)
        seconds = time.time() - started
        progress(0.9, 'writing')
        out = self._write(path, output_pixels(denoised, image))
        prune(self.cache_dir, self.keep, self.started)
        report = (f"{name}{chosen}: {x.shape[1]}x{x.shape[0]} pixels" +
                  (", self-ensemble" if tta else '') + (", refined" if refine else '') +
                  (f", adapted to the image for {adapt_steps} steps" if adapt_steps else '') +
                  f", {seconds:.1f} s")
        if clean is not None:
            reference = model_input(image_io.LoadedImage(image.pixels, clean, None),
                                    model.in_channels)
            data_range = high - low
            report += (f"; Gaussian noise sigma {sigma:g} added. PSNR / SSIM against the clean "
                       f"upload: noisy {self._scores(reference, x, data_range)}, denoised "
                       f"{self._scores(reference, denoised, data_range)}")
        if reports:
            report += '. ' + describe(reports)[0].upper() + describe(reports)[1:]
        if note:
            report += '. ' + note[0].upper() + note[1:]
        return Result(to_view(x, low, high), to_view(denoised, low, high), out, report)

    @staticmethod
    def _scores(reference: np.ndarray, image: np.ndarray, data_range: float) -> str:
        scale = 255.0 / data_range
        return f"{PSNR(reference * scale, image * scale):.2f} dB / " \
               f"{SSIM(reference, image, data_range=data_range):.4f}"

    def _write(self, path: str, pixels: np.ndarray) -> str:
        """The denoised file, named after the input, in a fresh folder; a TIFF when the
        input's format cannot hold the pixels (e.g. float TIFF -> PNG)."""
        stem, suffix = os.path.splitext(os.path.basename(path))
        known = ('.png', '.jpg', '.jpeg') + image_io.TIFF_SUFFIXES
        suffix = suffix.lower() if suffix.lower() in known else '.png'
        try:
            image_io.check_format(stem + suffix, pixels.dtype)
        except ValueError:
            suffix = '.tif'
        os.makedirs(self.out_dir, exist_ok=True)
        out = os.path.join(tempfile.mkdtemp(dir=self.out_dir), f'{stem}_denoised{suffix}')
        image_io.write_image_atomic(out, pixels)
        return out


def example_images(data_dir: str) -> List[List]:
    """Example rows [file, sigma to add]: noisy demo photographs built offline from
    scikit-image's (camera, astronaut, sigma 25 already in), and a clean one (coins) to which
    the page adds noise."""
    from PIL import Image

    from utils.data.datasets import DATASETS, grey_photo
    folder = os.path.join(data_dir, 'web_examples')
    files = {'noisy_camera.png': 0, 'noisy_astronaut.png': 0, 'clean_coins.png': 25}
    if not all(os.path.isfile(os.path.join(folder, f)) for f in files):
        demo = DATASETS['demo']
        tests = demo.test_images(data_dir)  # builds the demo set when missing
        os.makedirs(folder, exist_ok=True)
        views = {'noisy_camera.png': tests[0].noisy, 'noisy_astronaut.png': tests[1].noisy,
                 'clean_coins.png': grey_photo('coins')}
        for name, array in views.items():
            with atomic_write(os.path.join(folder, name)) as tmp:
                Image.fromarray(np.clip(np.round(array), 0, 255).astype(np.uint8)).save(tmp)
    return [[os.path.join(folder, f), sigma] for f, sigma in files.items()]


def build_app(service: DenoiseService, examples: List[List]):
    """The Gradio page in front of `service`."""
    import gradio as gr

    def run(path, name, sigma, tta, adapt, refine=DEFAULT_REFINE, progress=gr.Progress()):
        try:
            result = service.denoise(path, name, float(sigma or 0), bool(tta),
                                     progress=lambda f, text: progress(f, desc=text),
                                     adapt_steps=ADAPT_STEPS if adapt else 0,
                                     refine=bool(refine))
        except (ValueError, OSError) as error:
            raise gr.Error(str(error).strip().splitlines()[0] if str(error).strip()
                           else type(error).__name__)
        return (result.input_view, result.output_view), result.path, result.report

    with gr.Blocks(title='Noise2Same denoising demo',
                   delete_cache=(600, CACHE_HOURS * 3600)) as app:
        gr.Markdown('# Noise2Same / Noise2SamePro denoising\nUpload a noisy image (PNG, JPEG or '
                    'TIFF; 8 or 16 bits; grey or colour) or pick an example. A clean picture can '
                    'be given noise first, and is then used as the reference for PSNR and SSIM.')
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label='image', file_types=['image', '.tif', '.tiff'],
                                 type='filepath', elem_id='upload')
                model = gr.Dropdown(service.choices(), value=service.default_model(),
                                    label='model (trained_models/)')
                sigma = gr.Slider(0, 75, value=0, step=1, label='add Gaussian noise, sigma '
                                  '(0..255 scale; 0 = the upload is already noisy)')
                tta = gr.Checkbox(False, label='self-ensemble (8 flips and rotations, 8x slower)')
                adapt = gr.Checkbox(False, label=f'adapt the model to this image first '
                                    f'({ADAPT_STEPS} training steps: about {ADAPT_SECONDS} s on '
                                    f'2 CPU cores; nothing is saved)')
                refine = gr.Checkbox(DEFAULT_REFINE, label='refine: put back the detail the '
                                     'network removed with the noise (a Wiener filter at the '
                                     'noise level estimated from the image)')
                button = gr.Button('Denoise', variant='primary', elem_id='denoise')
            with gr.Column(scale=2):
                compare = gr.ImageSlider(label='input | denoised (drag the slider)', type='numpy',
                                         elem_id='compare')
                download = gr.File(label='denoised image (input bit depth)', elem_id='download')
                report = gr.Markdown(elem_id='report')
        gr.Examples(examples, inputs=[upload, sigma])
        button.click(run, [upload, model, sigma, tta, adapt, refine], [compare, download, report],
                     api_name='denoise', concurrency_limit=2)
    return app
