"""Expression-mode metrics on the static test mask, for models and baselines alike: errors in the
original units, pooled, and correlations per profile and per gene, over blocks of profiles in bounded
memory (``ExpressionTally``)."""

import os
import tempfile

import numpy as np
from scipy.stats import rankdata

def _group_ranks(values, groups):
    """Ranks of ``values`` within each group (1-based, ties averaged: scipy's rankdata per group)."""
    order = np.lexsort((values, groups))
    v, g = values[order], groups[order]
    n = len(v)
    new_group = np.r_[True, g[1:] != g[:-1]]
    new_run = new_group | np.r_[True, v[1:] != v[:-1]]
    index = np.arange(n)
    group_start = np.maximum.accumulate(np.where(new_group, index, 0))
    run_start = np.maximum.accumulate(np.where(new_run, index, 0))
    run_id = np.cumsum(new_run) - 1
    run_end = np.r_[np.flatnonzero(new_run)[1:], n] - 1  # last index of each run
    ranks = np.empty(n)
    ranks[order] = (run_start + run_end[run_id]) / 2 - group_start + 1
    return ranks


def correlations_within(pred, true, groups, spearman=False):
    """The correlation within each group (profiles or genes) of at least 3 values, finite ones only
    (NaN for a group where either side is constant), computed for all groups at once."""
    if spearman:
        pred, true = _group_ranks(pred, groups), _group_ranks(true, groups)
    order = np.argsort(groups, kind="stable")
    g, p, t = groups[order], pred[order], true[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[starts, len(g)])
    rep = np.repeat(np.arange(len(starts)), sizes)
    pc = p - (np.add.reduceat(p, starts) / sizes)[rep]
    tc = t - (np.add.reduceat(t, starts) / sizes)[rep]
    flat = (np.maximum.reduceat(p, starts) == np.minimum.reduceat(p, starts)) | \
           (np.maximum.reduceat(t, starts) == np.minimum.reduceat(t, starts))
    denom = np.sqrt(np.add.reduceat(pc * pc, starts) * np.add.reduceat(tc * tc, starts))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.add.reduceat(pc * tc, starts) / denom
    keep = (sizes >= 3) & ~flat & (denom > 0) & np.isfinite(r)
    return list(r[keep])


def row_correlations(pred, true, spearman=False):
    """Pearson (or Spearman) r of each row of two profiles x k arrays; NaN where a row is constant.
    The rows-of-equal-length case of :func:`correlations_within`, kept apart because it runs per block on
    the hot path: ``rankdata(axis=1)`` and row sums are 2.6x faster than the general grouped ranks
    (measured 1.0 against 2.7 ms per block of 64 x 147)."""
    if spearman:
        pred, true = rankdata(pred, axis=1), rankdata(true, axis=1)
    flat = (np.ptp(pred, axis=1) == 0) | (np.ptp(true, axis=1) == 0)
    p = pred - pred.mean(axis=1, keepdims=True)
    t = true - true.mean(axis=1, keepdims=True)
    denom = np.sqrt((p * p).sum(axis=1) * (t * t).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (p * t).sum(axis=1) / denom
    r[flat | ~(denom > 0)] = np.nan
    return r


class ExpressionTally:
    """The expression metrics over blocks of profiles (one row per profile).

    Pooled errors and Pearson r from running sums and merged central moments; per-profile correlations
    row by row; per-gene correlations from a spill file (gene, prediction, truth in arrival order)
    read back a group of genes at a time, so memory stays under ``budget_bytes`` whatever the number
    of profiles. Use as a context manager (the spill files are removed on exit).
    """

    SPILL = (("gene", np.int32), ("pred", np.float64), ("true", np.float64))

    def __init__(self, spill_dir=None, budget_bytes=32 << 20):
        self.budget = budget_bytes
        self.n, self.sq, self.abs, self.n_genes = 0, 0.0, 0.0, 1
        self.mean, self.m2, self.cross = np.zeros(2), np.zeros(2), 0.0
        self.lo, self.hi = np.full(2, np.inf), np.full(2, -np.inf)
        self.rows = {"profile_pearson": [0.0, 0], "profile_spearman": [0.0, 0]}
        self._dir = tempfile.TemporaryDirectory(dir=spill_dir, prefix=".spill-")
        self._files = {name: open(os.path.join(self._dir.name, name), "wb") for name, _ in self.SPILL}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for f in self._files.values():
            f.close()
        self._dir.cleanup()

    def add(self, pred, true, gene):
        """A block: profiles x k predictions, true values and gene indices."""
        pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
        err = pred - true
        self.sq += float((err * err).sum())
        self.abs += float(np.abs(err).sum())
        both = np.stack([pred.ravel(), true.ravel()])
        self.lo, self.hi = np.minimum(self.lo, both.min(axis=1)), np.maximum(self.hi, both.max(axis=1))
        self._merge(both)
        if pred.shape[1] >= 3:
            for name, spearman in (("profile_pearson", False), ("profile_spearman", True)):
                r = row_correlations(pred, true, spearman)
                r = r[np.isfinite(r)]
                self.rows[name][0] += float(r.sum())
                self.rows[name][1] += len(r)
        self.n_genes = max(self.n_genes, int(np.max(gene)) + 1)
        for (name, dtype), values in zip(self.SPILL, (gene, pred, true)):
            self._files[name].write(np.ascontiguousarray(values, dtype=dtype).tobytes())

    def _merge(self, both):
        """Chan et al.'s pairwise update of the means, sums of squares and cross products."""
        n_b = both.shape[1]
        mean_b = both.mean(axis=1)
        c = both - mean_b[:, None]
        m2_b, cross_b = (c * c).sum(axis=1), float((c[0] * c[1]).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.m2 = self.m2 + m2_b + delta * delta * self.n * n_b / n
        self.cross += cross_b + delta[0] * delta[1] * self.n * n_b / n
        self.mean = self.mean + delta * n_b / n
        self.n = n

    def _gene_correlations(self):
        for f in self._files.values():
            f.flush()
        paths = {name: os.path.join(self._dir.name, name) for name, _ in self.SPILL}
        n_groups = max(1, -(-self.n * 20 * 8 // self.budget))  # 20 bytes per entry, working copies
        group_of = np.zeros(self.n_genes, dtype=np.int64)
        for i, part in enumerate(np.array_split(np.arange(self.n_genes), n_groups)):
            group_of[part] = i
        out = {"gene_pearson": [], "gene_spearman": []}
        for group in range(n_groups):
            parts = [[], [], []]
            for start in range(0, self.n, 1 << 20):
                g = np.fromfile(paths["gene"], dtype=np.int32, count=1 << 20, offset=4 * start)
                keep = group_of[g] == group
                parts[0].append(g[keep])
                for j, name in ((1, "pred"), (2, "true")):
                    parts[j].append(np.fromfile(paths[name], dtype=np.float64, count=1 << 20, offset=8 * start)[keep])
            g, p, t = (np.concatenate(x) for x in parts)
            out["gene_pearson"] += correlations_within(p, t, g)
            out["gene_spearman"] += correlations_within(p, t, g, spearman=True)
        return {k: float(np.mean(v)) if v else float("nan") for k, v in out.items()}

    def result(self):
        n = max(self.n, 1)
        flat = bool((self.hi - self.lo == 0).any())
        denom = np.sqrt(self.m2[0] * self.m2[1])
        out = {"mse": self.sq / n, "mae": self.abs / n,
               "pearson": float("nan") if flat or not denom > 0 else float(self.cross / denom)}
        out.update({k: s / c if c else float("nan") for k, (s, c) in self.rows.items()})
        out.update(self._gene_correlations())
        return {k: out[k] for k in ("mse", "mae", "pearson", "profile_pearson", "profile_spearman", "gene_pearson",
                                    "gene_spearman")}


def flat_metrics(pred, values, positions, spill_dir=None):
    """Metrics of predictions (profiles x k) of the masked ``positions`` of ``values``."""
    with ExpressionTally(spill_dir) as tally:
        tally.add(pred, np.take_along_axis(values, positions, axis=1), positions)
        return tally.result()
