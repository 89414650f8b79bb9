"""Metrics for masked prediction on the static test mask.

Rank mode: the model (or a baseline) gives log-scores for every gene at every masked rank position.
Unconstrained metrics rank all genes; constrained ones use what the visible sequence tells: the masked
positions hold exactly the genes missing from it, so scores are restricted (and renormalised) to those
genes, and the assignment of genes to positions is solved one-to-one (Hungarian, scipy) on the
log-scores. Rank error = number of candidate genes scored above the true gene (0 is perfect; ties
count half); top-k = the true gene among the first k of a stable descending sort (ties broken by gene
index), computed by counting, never by sorting.
Scoring works on blocks of profiles (``score_rank_block``: profiles x k x genes, in torch, on the device
the scores are on) and adds to running sums (``RankTally``): memory is bounded by the block, not by the
test set. Scores that depend only on the position (the frequency baselines) go through
``PositionTable``, whose unconstrained metrics are computed once for every (position, gene).
Expression mode: errors in the original units, pooled and per profile / per gene correlations.
"""

import os
import tempfile

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.special import log_softmax
from scipy.stats import rankdata

RANK_SUMMARY = {"ce": "ce", "top1": "top1", "top5": "top5", "rank_error": "mean_rank_error", "c_ce": "c_ce",
                "c_top1": "c_top1", "c_top5": "c_top5", "c_rank_error": "c_mean_rank_error",
                "assign_top1": "assign_top1"}


def rank_error(scores, target):
    """Genes scored above the target, ties (other than the target itself) counted half: the expected
    number above under random tie-breaking, so a constant score cannot look perfect (numpy rows; the
    blocked scoring counts the same in :func:`_counted`)."""
    true = np.take_along_axis(scores, target[:, None], axis=1)
    return (scores > true).sum(axis=1) + 0.5 * ((scores == true).sum(axis=1) - 1)


def hungarian(scores, transposed=False):
    """One-to-one assignment maximising the summed scores: column index for each row (k x k).

    ``transposed`` solves the same problem with rows and columns swapped, which scipy does several
    times faster for smooth position tables. It finds the same assignment whenever the optimum is
    unique; callers use it only for scores without ties (where a tied optimum could go either way)."""
    if transposed:
        cols, rows = linear_sum_assignment(-scores.T)
    else:
        rows, cols = linear_sum_assignment(-scores)
    out = np.empty(len(rows), dtype=np.int64)
    out[rows] = cols
    return out


def assignments(scores, transposed=False):
    """:func:`hungarian` of each k x k block of ``scores`` (profiles x k x k): profiles x k column indices."""
    out = np.empty(scores.shape[:2], dtype=np.int64)
    for i, block in enumerate(scores):
        out[i] = hungarian(block, transposed)
    return out


def _counted(scores, target, with_ce=True):
    """Unconstrained metrics of a block by counting: ``scores`` (... x n) torch, ``target`` (...) the
    index of the true entry. Returns torch tensors shaped like ``target``."""
    true = scores.gather(-1, target.unsqueeze(-1))
    above = (scores > true).sum(-1, dtype=torch.int32)
    tied = scores == true
    n_tied = tied.sum(-1, dtype=torch.int32)
    place = above.clone()  # the true entry's place in a stable descending sort
    several = (n_tied > 1).nonzero(as_tuple=True)
    if len(several[0]):  # ties: those of lower index come first
        lower = torch.arange(scores.shape[-1], device=scores.device) < target[several].unsqueeze(-1)
        place[several] += (tied[several] & lower).sum(-1, dtype=torch.int32)
    out = {"top1": place == 0, "top5": place < 5,
           "rank_error": above.double() + 0.5 * (n_tied - 1).double(), "pred": scores.argmax(-1)}
    if with_ce:
        out["ce"] = torch.logsumexp(scores, -1) - true.squeeze(-1)
    return out


class PositionTable:
    """Scores that depend only on the rank position (``table``: positions x genes, numpy): the
    unconstrained metrics of every (position, true gene) pair, computed once. ``transposed``: solve
    the assignment on the transposed problem (faster; for smooth tables, see :func:`hungarian`)."""

    def __init__(self, table, with_ce=True, transposed=False):
        self.table = np.asarray(table, dtype=np.float64)
        self.transposed = transposed  # solve the assignment transposed (see hungarian)
        n_pos, n_genes = self.table.shape
        self.with_ce = with_ce
        asc = np.sort(self.table, axis=1)
        self.above = np.empty(self.table.shape, dtype=np.int64)
        self.n_tied = np.empty(self.table.shape, dtype=np.int64)
        for p in range(n_pos):
            right = np.searchsorted(asc[p], self.table[p], side="right")
            self.above[p] = n_genes - right
            self.n_tied[p] = right - np.searchsorted(asc[p], self.table[p], side="left")
        order = np.argsort(-self.table, axis=1, kind="stable")
        self.place = np.empty(self.table.shape, dtype=np.int64)
        np.put_along_axis(self.place, order, np.arange(n_genes)[None, :], axis=1)
        self.pred = order[:, 0]
        if with_ce:  # as in _counted
            t = torch.from_numpy(self.table)
            self.ce = (torch.logsumexp(t, -1, keepdim=True) - t).numpy()

    def score(self, positions, true):
        """Unconstrained metrics of profiles x k (positions, true genes), numpy."""
        place = self.place[positions, true]
        out = {"top1": place == 0, "top5": place < 5,
               "rank_error": self.above[positions, true] + 0.5 * (self.n_tied[positions, true] - 1),
               "pred_gene": self.pred[positions]}
        if self.with_ce:
            out["ce"] = self.ce[positions, true]
        return out

    def restricted(self, positions, missing):
        """profiles x k x k: the scores of the missing genes at the masked positions."""
        return torch.from_numpy(np.take(self.table, positions[:, :, None] * self.table.shape[1] + missing[:, None, :]))


def missing_genes(true):
    """(missing genes sorted, each true gene's index among them), numpy profiles x k."""
    missing = np.sort(true, axis=1)
    local = np.argsort(np.argsort(true, axis=1, kind="stable"), axis=1, kind="stable")
    return missing, local


def _constrained(sub, local, missing, assignment=None, with_ce=True, transposed=False):
    """Constrained metrics from ``sub`` (profiles x k x k torch: scores of the missing genes)."""
    local_t = torch.from_numpy(local).to(sub.device)
    c = _counted(sub, local_t, with_ce=False)
    out = {"c_top1": c["top1"], "c_top5": c["top5"], "c_rank_error": c["rank_error"],
           "c_pred_gene": np.take_along_axis(missing, c["pred"].cpu().numpy(), axis=1)}
    # scipy's log-softmax on the host, profile by profile and column-major, exactly as the assignment has
    # always been solved on: with tied scores the optimum chosen depends on the last bit of its input,
    # and numpy sums a row of a column-major array in another order than a row of a row-major one
    logp = np.stack([log_softmax(np.asfortranarray(m), axis=1) for m in sub.cpu().numpy()]) \
        if with_ce or assignment is None else None
    if with_ce:
        out["c_ce"] = -np.take_along_axis(logp, local[..., None], axis=-1)[..., 0]
    if assignment is None:
        assignment = np.take_along_axis(missing, assignments(logp, transposed), axis=1)
    true = np.take_along_axis(missing, local, axis=1)
    out["assign_gene"] = assignment
    out["assign_top1"] = assignment == true
    return out


def _numpy(part):
    return {k: v.cpu().numpy() if torch.is_tensor(v) else np.asarray(v) for k, v in part.items()}


def score_rank_block(scores, true, assignment=None, with_ce=True):
    """Per-position results for a block of profiles.

    ``scores``: profiles x k x n_genes log-scores (torch or numpy; k masked positions in rank order);
    ``true``: profiles x k gene ids (numpy). ``assignment`` (profiles x k gene ids) replaces the
    Hungarian assignment when a method defines its own. ``with_ce=False`` for scores that are not
    log-probabilities. Returns a dict of numpy profiles x k arrays.
    """
    scores = torch.as_tensor(scores)
    true = np.asarray(true, dtype=np.int64)
    missing, local = missing_genes(true)
    u = _counted(scores, torch.from_numpy(true).to(scores.device), with_ce)
    u["pred_gene"] = u.pop("pred")
    idx = torch.from_numpy(missing).to(scores.device)
    sub = scores.gather(-1, idx.unsqueeze(1).expand(-1, true.shape[1], -1))
    return _numpy({**u, **_constrained(sub, local, missing, assignment, with_ce)})


def score_table_block(table, positions, true, assignment=None):
    """:func:`score_rank_block` for scores that depend only on the position (a ``PositionTable``)."""
    true = np.asarray(true, dtype=np.int64)
    missing, local = missing_genes(true)
    sub = table.restricted(positions, missing)
    return _numpy({**table.score(positions, true),
                   **_constrained(sub, local, missing, assignment, table.with_ce, transposed=table.transposed)})


def _first(pred, lo, hi, steps):
    """Per query, the first index in [lo, hi) where the monotone predicate ``pred(index)`` (False ...
    False True ... True) holds, or ``hi``: a vectorised binary search."""
    for _ in range(steps):
        mid = (lo + hi) // 2
        hit = pred(mid) & (lo < hi)
        hi = torch.where(hit, mid, hi)
        lo = torch.where(hit | (lo >= hi), lo, mid + 1)
    return hi


def _in_runs(ordered, runs, fn, width):
    """Reduce ``fn`` over the gene ids ``ordered`` in the index ranges ``runs`` [(start, stop), ...] of
    each query, ``width`` the longest range: (values, valid) windows -> fn."""
    offsets = torch.arange(width, device=ordered.device)
    parts = []
    for start, stop in runs:
        idx = (start.unsqueeze(-1) + offsets).clamp(max=ordered.shape[1] - 1)
        genes = ordered.gather(1, idx.flatten(1)).view(idx.shape)
        parts.append((genes, offsets < (stop - start).unsqueeze(-1)))
    return fn(torch.cat([g for g, _ in parts], -1), torch.cat([v for _, v in parts], -1))


def _counted_distance(gene_position, positions, true, max_run=64):
    """:func:`_counted` (without cross-entropy) for the scores -|gene_position[g] - position| of each
    profile, by binary search in the sorted predicted positions instead of comparing every gene.

    Exact: x -> |x - p| rounds monotonically on each side of p, so the genes closer than the true one
    form one run of the sorted order on each side; ties (genes as far as the true one, in two runs of
    at most ``max_run``) are broken by gene id as the stable sort does. None if a run is longer."""
    n = gene_position.shape[1]
    srt, ordered = torch.sort(gene_position, dim=1, stable=True)
    p = positions.to(srt.dtype)
    dist_at = lambda i: (srt.gather(1, i.clamp(0, n - 1)) - p).abs()  # noqa: E731
    d_true = (gene_position.gather(1, true) - p).abs()
    mid = torch.searchsorted(srt, p)  # left of it: sorted positions below p
    zero, end, steps = torch.zeros_like(mid), torch.full_like(mid, n), int(np.ceil(np.log2(n + 1))) + 1

    def runs(d):
        """(first index on the left closer than d, first on the left within d, first on the right at
        or beyond d, first on the right beyond d)."""
        return (_first(lambda i: dist_at(i) < d, zero, mid, steps), _first(lambda i: dist_at(i) <= d, zero, mid, steps),
                _first(lambda i: dist_at(i) >= d, mid, end, steps), _first(lambda i: dist_at(i) > d, mid, end, steps))

    lt_left, le_left, lt_right, le_right = runs(d_true)
    above = (mid - lt_left) + (lt_right - mid)
    n_tied = (lt_left - le_left) + (le_right - lt_right)
    d_best = torch.minimum(torch.where(mid > 0, dist_at(mid - 1), torch.inf),
                           torch.where(mid < n, dist_at(mid), torch.inf))
    _, best_left, _, best_right = runs(d_best)
    width = int(max(n_tied.max(), (mid - best_left).max(), (best_right - mid).max(), 1))
    if width > max_run:
        return None
    place = above + _in_runs(ordered, [(le_left, lt_left), (lt_right, le_right)],
                             lambda g, ok: ((g < true.unsqueeze(-1)) & ok).sum(-1), width)
    pred = _in_runs(ordered, [(best_left, mid), (mid, best_right)],
                    lambda g, ok: torch.where(ok, g, n).amin(-1), width)
    return {"top1": place == 0, "top5": place < 5,
            "rank_error": above.double() + 0.5 * (n_tied - 1).double(), "pred_gene": pred}


def score_distance_block(gene_position, positions, true, assignment=None):
    """:func:`score_rank_block` (without cross-entropy) for methods that place each gene at a position
    (``gene_position``: profiles x genes, float64) and score a gene at a masked position by minus its
    distance; ``assignment``: the method's own (profiles x k gene ids), by default the missing genes
    in order of their predicted position."""
    true = np.asarray(true, dtype=np.int64)
    if assignment is None:
        assignment = in_position_order(gene_position, true)
    missing, local = missing_genes(true)
    gp, pos = torch.from_numpy(np.ascontiguousarray(gene_position)), torch.from_numpy(positions)
    true_t = torch.from_numpy(true)
    u = _counted_distance(gp, pos, true_t)
    if u is None:  # long runs of equal predicted positions: compare every gene
        u = _counted(-(gp[:, None, :] - pos[:, :, None].to(gp.dtype)).abs(), true_t, with_ce=False)
        u["pred_gene"] = u.pop("pred")
    sub = -(gp.gather(1, torch.from_numpy(missing))[:, None, :] - pos[:, :, None].to(gp.dtype)).abs()
    return _numpy({**u, **_constrained(sub, local, missing, assignment, with_ce=False)})


def in_position_order(gene_position, true):
    """profiles x k: the missing genes (``true``'s) sorted by their predicted position (``gene_position``,
    profiles x genes or 1 x genes), ties by gene id: a method's own assignment to the masked positions."""
    missing = np.sort(true, axis=1)
    predicted = np.take_along_axis(np.broadcast_to(gene_position, (len(true), gene_position.shape[1])), missing,
                                   axis=1)
    return np.take_along_axis(missing, np.argsort(predicted, axis=1, kind="stable"), axis=1)


def score_profile(scores, true_genes, assignment=None):
    """Per-position results for one profile (k x n_genes scores, k true genes): a block of one."""
    block = score_rank_block(np.asarray(scores)[None], np.asarray(true_genes)[None],
                             None if assignment is None else np.asarray(assignment)[None])
    return {k: v[0] for k, v in block.items()}


class RankTally:
    """Running sums of the per-position rank metrics over blocks (no per-profile results kept)."""

    def __init__(self):
        self.sums, self.n = {k: 0.0 for k in RANK_SUMMARY}, 0

    def add(self, part):
        self.n += part["top1"].size
        for key in RANK_SUMMARY:
            if key in part:
                self.sums[key] += float(np.sum(part[key], dtype=np.float64))
            else:
                self.sums[key] = None

    def summary(self):
        n = max(self.n, 1)
        return {name: (None if self.sums[key] is None else self.sums[key] / n) for key, name in RANK_SUMMARY.items()}


def summarize_rank(parts):
    """Mean metrics over all masked positions from a list of per-profile (or block) result dicts."""
    tally = RankTally()
    for p in parts:
        tally.add(p)
    return tally.summary()


class PositionBins:
    """Running means of per-position values in ``n_bins`` equal bins of rank position."""

    def __init__(self, n_genes, n_bins=20):
        self.edges = np.linspace(0, n_genes, n_bins + 1)
        self.counts = np.zeros(n_bins)
        self.sums = {}

    def add(self, positions, values):
        n_bins = len(self.counts)
        which = np.clip(np.digitize(positions.ravel(), self.edges) - 1, 0, n_bins - 1)
        self.counts += np.bincount(which, minlength=n_bins)
        for name, v in values.items():
            part = np.bincount(which, weights=np.asarray(v, dtype=np.float64).ravel(), minlength=n_bins)
            self.sums[name] = self.sums.get(name, 0.0) + part

    def result(self):
        """{"bin_start": bin starts, name: means}."""
        out = {"bin_start": self.edges[:-1].tolist()}
        out.update({k: (v / np.maximum(self.counts, 1)).tolist() for k, v in self.sums.items()})
        return out


def pearson(a, b):
    """Pearson r; NaN where either side is constant (a correlation is undefined there)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


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


def _correlations(pred, true, groups, spearman=False):
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


def grouped_correlations(pred, true, groups, spearman=False):
    """Mean correlation within groups (profiles or genes) that have at least 3 values."""
    out = _correlations(pred, true, groups, spearman)
    return float(np.mean(out)) if out else float("nan")


def row_correlations(pred, true, spearman=False):
    """Pearson (or Spearman) r of each row of two profiles x k arrays; NaN where a row is constant.
    The rows-of-equal-length case of :func:`_correlations`, kept apart because it runs per block on
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
    """The metrics of :func:`expression_metrics` over blocks of profiles (one row per profile).

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
            out["gene_pearson"] += _correlations(p, t, g)
            out["gene_spearman"] += _correlations(p, t, g, spearman=True)
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


def flat_metrics(pred, values, positions, spill_dir=None):
    """Metrics of predictions (profiles x k) of the masked ``positions`` of ``values``."""
    with ExpressionTally(spill_dir) as tally:
        tally.add(pred, np.take_along_axis(values, positions, axis=1), positions)
        return tally.result()
