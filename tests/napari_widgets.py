"""The napari plugin in a headless viewer (QT_QPA_PLATFORM=offscreen, pytest-qt, napari's
make_napari_viewer): its manifest, Denoise on 2D, time-series and RGB layers against the
prediction it stands for, one notification for bad input, Cancel, sample data, and Train
of a tiny model whose result then denoises. Run by tests/test_napari.py in a process of its
own (pytest tests/napari_widgets.py runs them directly)."""
import os

import numpy as np
import pytest

REQUIRED = os.environ.get('N2S_REQUIRE_EXTRAS') == '1'
if not os.environ.get('DISPLAY'):  # napari's canvas needs OpenGL: test_napari.py starts Xvfb
    pytest.skip('no X display: run through tests/test_napari.py (it starts Xvfb)',
                allow_module_level=True)
os.environ.setdefault('QT_QPA_PLATFORM', 'offscreen')
# The tests compare the widgets' results with in-process prediction: TensorFlow is imported
# before the first viewer exists (imported after an OpenGL canvas, it crashes the process; the
# widgets themselves never import it: tests/test_napari.py checks that in a process of its own)
from n2s_app import cli  # noqa: E402

cli.start_tensorflow(training=False)
napari = __import__('napari') if REQUIRED else pytest.importorskip('napari')
pytest.importorskip('pytestqt')

from n2s_napari import sample_data  # noqa: E402
from n2s_napari.axes import layer_axes  # noqa: E402
from n2s_napari.widgets import DenoiseWidget, TrainWidget  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 240_000  # ms: TensorFlow's first trace on a shared 2-core machine


def noisy_image(shape, seed=0, sigma=20.0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[-2], :shape[-1]]
    clean = 120 + 60 * np.sin(yy / 7.0) * np.cos(xx / 11.0)
    clean = np.broadcast_to(clean, shape)
    return clean, (clean + rng.normal(0, sigma, shape)).astype(np.float32)


@pytest.fixture
def errors(monkeypatch):
    """The one-line error notifications the widgets show."""
    shown = []
    import napari.utils.notifications as notifications
    monkeypatch.setattr(notifications, 'show_error', shown.append)
    return shown


def test_manifest_is_valid_and_names_the_widgets_and_samples():
    import npe2
    manifest = npe2.PluginManifest.from_file(os.path.join(ROOT, 'n2s_napari', 'napari.yaml'))
    assert manifest.name == 'noise2same-tf2'
    assert {w.display_name for w in manifest.contributions.widgets} == {'Denoise', 'Train'}
    assert {s.key for s in manifest.contributions.sample_data} == {'camera', 'cell'}
    for command in manifest.contributions.commands:  # every python_name resolves
        module, _, name = command.python_name.partition(':')
        assert callable(getattr(__import__(module, fromlist=[name]), name)), command.id


def test_sample_data_are_the_demo_noise():
    (camera, meta), = sample_data.noisy_camera()
    assert camera.shape == (256, 384) and 'camera' in meta['name']
    from utils.data.datasets import Demo, grey_photo
    clean = grey_photo('camera')[Demo.test_crops[0][1]]
    assert abs(np.std(camera - clean) - sample_data.SIGMA) < 0.5
    (cell, _), = sample_data.noisy_cell()
    assert cell.shape == (660, 550) and np.all(cell >= 0)


def test_layer_axes():
    assert layer_axes(2, False, 2) == 'YX'
    assert layer_axes(3, False, 2) == 'TYX'
    assert layer_axes(3, True, 2) == 'YXS'
    assert layer_axes(4, False, 3) == 'TZYX'
    with pytest.raises(ValueError, match='spatial axes'):
        layer_axes(1, False, 2)
    with pytest.raises(ValueError, match='3D model needs'):
        layer_axes(2, False, 3)


@pytest.mark.slow
def test_denoise_widget_on_2d_time_series_and_rgb_layers(make_napari_viewer, qtbot, errors):
    from models import load_model
    from utils.prediction.photo import denoise_array
    from utils.prediction.predictor import PredictOptions
    viewer = make_napari_viewer()
    clean, noisy = noisy_image((70, 90))
    layer = viewer.add_image(noisy, name='noisy', scale=(0.5, 0.25),
                             metadata={'source': 'test'})
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.model.value == 'blind32-N2S'
    widget.denoise()
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=TIMEOUT)
    out = viewer.layers[-1]
    assert out.name == 'noisy denoised (blind32-N2S)'
    assert tuple(out.scale) == (0.5, 0.25) and out.metadata['source'] == 'test'
    predictor = load_model(os.path.join(ROOT, 'trained_models'), 'blind32-N2S') \
        .restored_predictor()
    expected = denoise_array(predictor, noisy.astype(np.float64), PredictOptions(refine=True))
    np.testing.assert_allclose(out.data, expected, atol=1e-3 * np.ptp(noisy))
    assert np.mean((out.data - clean) ** 2) < 0.5 * np.mean((noisy - clean) ** 2)

    # a time series: frame by frame, an empty frame passes through unchanged
    series = np.stack([noisy, noisy[::-1].copy(), np.zeros_like(noisy)])
    widget.layer.value = viewer.add_image(series, name='series')
    widget.refine.value = False
    qtbot.waitUntil(lambda: widget.worker.job is None, timeout=TIMEOUT)
    widget.denoise()
    qtbot.waitUntil(lambda: len(viewer.layers) == 4, timeout=TIMEOUT)
    frames = viewer.layers[-1].data
    assert frames.shape == series.shape
    np.testing.assert_allclose(frames[1], predictor.predict(series[1]), atol=1e-4 * np.ptp(noisy))
    assert np.array_equal(frames[2], series[2])

    # RGB: colour kept
    rgb = np.stack([noisy, noisy * 0.8, noisy * 0.6], axis=-1).astype(np.float32)
    widget.layer.value = viewer.add_image(rgb, name='rgb', rgb=True)
    widget.denoise()
    qtbot.waitUntil(lambda: len(viewer.layers) == 6, timeout=TIMEOUT)
    assert viewer.layers[-1].rgb and viewer.layers[-1].data.shape == rgb.shape
    np.testing.assert_allclose(viewer.layers[-1].data, denoise_array(
        predictor, rgb.astype(np.float64), PredictOptions(refine=False)),
        atol=1e-3 * np.ptp(rgb))  # luminance and chrominance, as test_single.py
    assert errors == []


def test_denoise_widget_bad_input_is_one_notification(make_napari_viewer, errors, tmp_path,
                                                     qtbot):
    viewer = make_napari_viewer()
    widget = DenoiseWidget(viewer)
    widget.denoise()  # no layer
    assert len(errors) == 1 and 'no image layer' in errors[0]
    viewer.add_image(np.zeros((70, 90), np.float32), name='grey')
    widget.reset_choices()
    widget.path.value = str(tmp_path / 'nothing-here')
    widget.denoise()  # no such model: the worker's error, one line
    qtbot.waitUntil(lambda: widget.worker.job is None, timeout=TIMEOUT)
    assert len(errors) == 2 and 'no model folder' in errors[1], errors
    assert '\n' not in errors[1]


def test_denoise_widget_wrong_channel_count(make_napari_viewer, errors, tmp_path, qtbot):
    """A 3-channel model on a grey layer: one notification (the stack layout's error)."""
    from models import Noise2Same
    rng = np.random.default_rng(0)
    Noise2Same(str(tmp_path), 'rgb', in_channels=3, net_config={'first_output_filters': 2}) \
        .train(rng.normal(size=(4, 24, 24, 3)).astype(np.float32), [16, 16], batch_size=2,
               steps=1, verbose=False)
    viewer = make_napari_viewer()
    viewer.add_image(rng.normal(size=(40, 40)).astype(np.float32), name='grey')
    widget = DenoiseWidget(viewer)
    widget.path.value = str(tmp_path / 'rgb')
    widget.denoise()
    qtbot.waitUntil(lambda: widget.worker.job is None, timeout=TIMEOUT)
    assert len(errors) == 1 and 'channels' in errors[0] and '\n' not in errors[0], errors
    assert len(viewer.layers) == 1


@pytest.mark.slow
def test_denoise_widget_cancel(make_napari_viewer, errors, qtbot, monkeypatch):
    """Cancel between tiles: no layer is added, no error, one 'cancelled' note."""
    import napari.utils.notifications as notifications
    infos = []
    monkeypatch.setattr(notifications, 'show_info', infos.append)
    viewer = make_napari_viewer()
    _, frames = noisy_image((60, 256, 256))
    viewer.add_image(frames, name='stack')
    widget = DenoiseWidget(viewer)
    widget.refine.value = False
    widget.denoise()
    qtbot.waitUntil(lambda: widget.worker.bar.value > 0, timeout=TIMEOUT)
    widget.worker.cancel.changed.emit(True)
    qtbot.waitUntil(lambda: widget.worker.job is None, timeout=TIMEOUT)
    assert len(viewer.layers) == 1 and errors == [] and infos == ['cancelled']


@pytest.mark.slow
def test_train_widget_trains_a_tiny_model_that_then_denoises(make_napari_viewer, qtbot, errors,
                                                           tmp_path, monkeypatch):
    from n2s_app import model_source
    monkeypatch.setattr(model_source, 'SHIPPED_MODELS', str(tmp_path))  # the models' folder
    viewer = make_napari_viewer()
    docked = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(docked, name='Denoise')
    assert 'tiny' not in docked.model.choices
    _, noisy = noisy_image((4, 64, 64))
    viewer.add_image(noisy, name='training')
    widget = TrainWidget(viewer)
    widget.layers.value = viewer.layers['training']
    widget.model_dir.value = str(tmp_path)
    widget.name.value = 'tiny'
    widget.init.value = '(none: train from scratch)'
    widget.filters.value = 4
    widget.steps.value = 6
    widget.batch.value = 2
    widget.patch.value = 32
    done = []
    import napari.utils.notifications as notifications
    original = notifications.show_info
    notifications.show_info = done.append
    try:
        widget.train()
        qtbot.waitUntil(lambda: widget.worker.job is None and bool(done or errors),
                        timeout=TIMEOUT)
    finally:
        notifications.show_info = original
    assert errors == [] and done and 'trained' in done[0]
    model_dir = tmp_path / 'tiny'
    assert (model_dir / 'settings.json').exists() and (model_dir / 'ckpt-6.index').exists()
    assert len(list((tmp_path / 'tiny-images').glob('*.tif'))) == 4
    assert docked.model.value == 'tiny'  # offered in the docked Denoise widget

    denoise = DenoiseWidget(viewer)
    denoise.path.value = str(model_dir)
    denoise.layer.value = viewer.layers['training']
    denoise.denoise()
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=TIMEOUT)
    out = viewer.layers[-1].data
    assert out.shape == noisy.shape and np.all(np.isfinite(out))
