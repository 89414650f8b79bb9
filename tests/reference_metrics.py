"""Reference implementations of the test metrics, one profile or one flat array at a time: the package's
blocked, streamed scoring (metrics_rank.py, metrics_expression.py) is checked against them."""

import numpy as np

from l1kformer.metrics_expression import correlations_within
from l1kformer.metrics_rank import RankTally, score_rank_block


def rank_error(scores, target):
    """Genes scored above the target, ties (other than the target itself) counted half: the expected
    number above under random tie-breaking, so a constant score cannot look perfect (numpy rows; the
    blocked scoring counts the same in counting.counted)."""
    true = np.take_along_axis(scores, target[:, None], axis=1)
    return (scores > true).sum(axis=1) + 0.5 * ((scores == true).sum(axis=1) - 1)


def score_profile(scores, true_genes, assignment=None):
    """Per-position results for one profile (k x n_genes scores, k true genes): a block of one."""
    block = score_rank_block(np.asarray(scores)[None], np.asarray(true_genes)[None],
                             None if assignment is None else np.asarray(assignment)[None])
    return {k: v[0] for k, v in block.items()}


def summarize_rank(parts):
    """Mean metrics over all masked positions from a list of per-profile (or block) result dicts."""
    tally = RankTally()
    for p in parts:
        tally.add(p)
    return tally.summary()


def pearson(a, b):
    """Pearson r; NaN where either side is constant (a correlation is undefined there)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def grouped_correlations(pred, true, groups, spearman=False):
    """Mean correlation within groups (profiles or genes) that have at least 3 values."""
    out = correlations_within(pred, true, groups, spearman)
    return float(np.mean(out)) if out else float("nan")


def expression_metrics(pred, true, profile, gene):
    """Errors of masked-value predictions (original units); all arguments are flat arrays."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    err = pred - true
    return {
        "mse": float((err ** 2).mean()),
        "mae": float(np.abs(err).mean()),
        "pearson": pearson(pred, true),
        "profile_pearson": grouped_correlations(pred, true, profile),
        "profile_spearman": grouped_correlations(pred, true, profile, spearman=True),
        "gene_pearson": grouped_correlations(pred, true, gene),
        "gene_spearman": grouped_correlations(pred, true, gene, spearman=True),
    }
