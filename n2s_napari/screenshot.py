"""The documentation's screenshot of the Denoise widget (docs/napari.png): the cell sample
denoised with the default model in a napari window, the widget docked beside it.

    DISPLAY=:99 QT_QPA_PLATFORM=offscreen python -m n2s_napari.screenshot docs/napari.png

Needs an X display for napari's OpenGL canvas (Xvfb: `Xvfb :99 &`)."""
import sys
import time


def main(path: str) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from n2s_napari.sample_data import noisy_cell
    from n2s_napari.widgets import DenoiseWidget
    viewer = napari.Viewer(show=False)
    viewer.window.resize(1400, 800)
    (data, meta), = noisy_cell()
    viewer.add_image(data, **meta)
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name='Denoise (Noise2Same)')
    widget.denoise()
    deadline = time.time() + 600
    while len(viewer.layers) < 2 and time.time() < deadline:
        QApplication.processEvents()
        time.sleep(0.05)
    if len(viewer.layers) < 2:
        raise RuntimeError('the denoised layer did not appear in 10 minutes')
    viewer.grid.enabled = True  # the noisy and the denoised layer side by side
    viewer.reset_view()
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    viewer.screenshot(path, canvas_only=False)
    print(f'wrote {path}')


if __name__ == '__main__':
    import os
    main(sys.argv[1] if len(sys.argv) > 1 else 'docs/napari.png')
    os._exit(0)  # no Qt teardown: it can abort beside the finished worker thread
