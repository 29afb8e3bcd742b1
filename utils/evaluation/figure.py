"""The side-by-side figure of a noisy and a denoised image."""

import numpy as np

from utils.core.files import atomic_write


def save_figure_atomic(path: str, noisy: np.ndarray, denoised: np.ndarray, show: bool,
                       title: str = '') -> None:
    """Side-by-side figure of input and output (matplotlib, Agg unless `show`)."""
    import matplotlib
    if not show:
        matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    low, high = float(np.min(noisy)), float(np.max(noisy))
    scale = lambda x: np.clip((x - low) / max(high - low, 1e-12), 0, 1)
    fig, axes = plt.subplots(1, 2, figsize=(12, 6 * noisy.shape[0] / max(noisy.shape[1], 1) + 1))
    for ax, image, label in zip(axes, (noisy, denoised), ('input', 'denoised')):
        ax.imshow(scale(image), cmap='gray' if image.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(label)
        ax.axis('off')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=100)
    if show:
        plt.show()
    plt.close(fig)
