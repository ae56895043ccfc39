"""The benchmarks' plots: matplotlib when it is installed (``pip install -e '.[bench]'``), else a note."""


def pyplot(path):
    """``matplotlib.pyplot`` drawing off-screen, or None (with a note naming ``path``) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"note: matplotlib is not installed, skipping {path}")
        return None
    return plt


def save(plt, fig, ax, path):
    """Grid, legend, tight layout, then ``path`` at 100 dpi; the figure is closed."""
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
