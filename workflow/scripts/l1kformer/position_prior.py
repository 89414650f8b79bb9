"""position_prior: how often each gene sits at each rank position in the training profiles, and the
smoothed log-frequency table made from it (numpy only).

The table is the ``position_frequency_smoothed`` baseline (baselines_rank.py) and the starting point of every
rank head (layers.py, ``position_prior``): a rank model adds it to its logits, so that an untrained
model scores exactly as that baseline does and training can only add what the visible genes tell.
"""

import numpy as np
from scipy.ndimage import gaussian_filter1d

from l1kformer.loader import in_order


def position_counts(ranks_path, train_rows, n_genes, window_rows=16384):
    """counts[position, gene] over the training profiles (int64), and each gene's mean rank position."""
    counts = np.zeros(n_genes * n_genes, dtype=np.int64)
    offsets = np.arange(n_genes, dtype=np.int64) * n_genes  # position p's row of the flat table
    for _, ranks in in_order(ranks_path, "ranks", train_rows, window_rows):
        counts += np.bincount((ranks.astype(np.int64) + offsets).ravel(), minlength=n_genes * n_genes)
    counts = counts.reshape(n_genes, n_genes)
    pos = np.arange(n_genes, dtype=np.int64)
    mean_rank = (counts * pos[:, None]).sum(axis=0) / np.maximum(counts.sum(axis=0), 1)
    return counts, mean_rank


def log_frequencies(counts, sigma=None):
    """log P(gene | position) (positions x genes, float64) from ``counts``, smoothed along positions with
    a Gaussian of ``sigma`` positions first when given, with half a count added to every cell."""
    n_genes = counts.shape[1]
    table = counts.astype(np.float64)
    if sigma:
        table = gaussian_filter1d(table, sigma, axis=0, mode="nearest")
    return np.log((table + 0.5) / (table.sum(axis=1, keepdims=True) + 0.5 * n_genes))
