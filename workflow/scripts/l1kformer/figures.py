"""Writing a figure: the one way every plot module (plots.py, downstream_plots.py) saves a PNG."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from l1kformer.fileio import atomic_path  # noqa: E402


def save(fig, path):
    """Lay out ``fig``, write it to ``path`` as a PNG (atomically) and close it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
