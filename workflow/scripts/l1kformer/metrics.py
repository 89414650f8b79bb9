"""Metrics for masked prediction on the static test mask.

Rank mode: the model (or a baseline) gives log-scores for every gene at every masked rank position.
Unconstrained metrics rank all genes; constrained ones use what the visible sequence tells: the masked
positions hold exactly the genes missing from it, so scores are restricted (and renormalised) to those
genes, and the assignment of genes to positions is solved one-to-one (Hungarian, scipy) on the
log-scores. Rank error = number of candidate genes scored above the true gene (0 is perfect; ties
count half).
Expression mode: errors in the original units, pooled and per profile / per gene correlations.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import log_softmax
from scipy.stats import rankdata

def _above_and_tied(scores, target):
    """Per row: how many scores exceed the target's, and which scores equal it (the target included)."""
    true = np.take_along_axis(scores, target[:, None], axis=1)
    return (scores > true).sum(axis=1), scores == true


def _rank_error(above, tied):
    return above + 0.5 * (tied.sum(axis=1) - 1)


def rank_error(scores, target):
    """Genes scored above the target, ties (other than the target itself) counted half: the expected
    number above under random tie-breaking, so a constant score cannot look perfect."""
    return _rank_error(*_above_and_tied(scores, target))


def hungarian(scores):
    """One-to-one assignment maximising the summed scores: column index for each row (k x k)."""
    rows, cols = linear_sum_assignment(-scores)
    out = np.empty(len(rows), dtype=np.int64)
    out[rows] = cols
    return out


def score_profile(scores, true_genes, assignment=None):
    """Per-position results for one profile.

    ``scores``: k x n_genes log-scores (k masked positions in rank order); ``true_genes``: k gene ids.
    ``assignment`` (k gene ids) replaces the Hungarian assignment when a method defines its own.
    Returns a dict of k-vectors.
    """
    k = len(true_genes)
    rows = np.arange(k)
    # the true gene's place in a stable descending sort, by counting (no sort of k x n_genes scores):
    # genes scored above it, plus genes tied with it and of lower index
    above, tied = _above_and_tied(scores, true_genes)
    place = above + (tied & (np.arange(scores.shape[1]) < true_genes[:, None])).sum(axis=1)
    shifted = scores - scores.max(axis=1, keepdims=True)  # log-softmax at the true gene, as scipy's
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    missing = np.sort(true_genes)  # the genes absent from the visible sequence
    local = np.searchsorted(missing, true_genes)  # true gene as an index into ``missing``
    sub = scores[:, missing]
    sub_logp = log_softmax(sub, axis=1)
    sub_order = np.argsort(-sub, axis=1, kind="stable")
    assign = missing[hungarian(sub_logp)] if assignment is None else np.asarray(assignment)
    return {
        "ce": -(shifted[rows, true_genes] - log_norm),
        "top1": place == 0,
        "top5": place < 5,
        "rank_error": _rank_error(above, tied),
        "pred_gene": scores.argmax(axis=1),
        "c_ce": -sub_logp[np.arange(k), local],
        "c_top1": sub_order[:, 0] == local,
        "c_top5": (sub_order[:, :5] == local[:, None]).any(axis=1),
        "c_rank_error": rank_error(sub, local),
        "c_pred_gene": missing[sub_order[:, 0]],
        "assign_gene": assign,
        "assign_top1": assign == true_genes,
    }


def summarize_rank(parts):
    """Mean metrics over all masked positions from a list of per-profile result dicts."""
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return {
        "ce": float(cat["ce"].mean()), "top1": float(cat["top1"].mean()), "top5": float(cat["top5"].mean()),
        "mean_rank_error": float(cat["rank_error"].mean()),
        "c_ce": float(cat["c_ce"].mean()), "c_top1": float(cat["c_top1"].mean()),
        "c_top5": float(cat["c_top5"].mean()), "c_mean_rank_error": float(cat["c_rank_error"].mean()),
        "assign_top1": float(cat["assign_top1"].mean()),
    }


def by_position(positions, values, n_genes, n_bins=20):
    """Mean of ``values`` in ``n_bins`` equal bins of rank position: (bin starts, means)."""
    edges = np.linspace(0, n_genes, n_bins + 1)
    which = np.clip(np.digitize(positions, edges) - 1, 0, n_bins - 1)
    sums = np.bincount(which, weights=values, minlength=n_bins)
    counts = np.bincount(which, minlength=n_bins)
    return edges[:-1].tolist(), (sums / np.maximum(counts, 1)).tolist()


def pearson(a, b):
    """Pearson r; NaN where either side is constant (a correlation is undefined there)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def grouped_correlations(pred, true, groups, spearman=False):
    """Mean correlation within groups (profiles or genes) that have at least 3 values."""
    out = []
    order = np.argsort(groups, kind="stable")
    groups, pred, true = groups[order], pred[order], true[order]
    bounds = np.flatnonzero(np.diff(groups)) + 1
    for p, t in zip(np.split(pred, bounds), np.split(true, bounds)):
        if len(p) >= 3:
            if spearman:
                p, t = rankdata(p), rankdata(t)
            r = pearson(p, t)
            if np.isfinite(r):
                out.append(r)
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
