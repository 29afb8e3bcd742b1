"""Benchmarks, each `python -m benchmarks.NAME --help`: quality (N2S vs N2SP over seeds),
noise_levels (PSNR against sigma), speed, web, curve (learning curves), adapt."""


def finish_plot(fig, ax, path: str, title: str, title_size: int = 8, legend_size: int = 8) -> None:
    """Title, grid and legend of a one-axes matplotlib figure, written atomically as a PNG
    (120 dpi) to `path`, then closed."""
    import matplotlib.pyplot as plt

    from utils.core.files import atomic_write
    ax.set_title(title, fontsize=title_size)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
