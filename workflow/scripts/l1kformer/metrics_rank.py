"""Rank-mode metrics on the static test mask, for models and baselines alike.

The model (or a baseline) gives log-scores for every gene at every masked rank position.
Unconstrained metrics rank all genes; constrained ones use what the visible sequence tells: the masked
positions hold exactly the genes missing from it, so scores are restricted (and renormalised) to those
genes, and the assignment of genes to positions is solved one-to-one (Hungarian, scipy) on the
log-scores. Rank error and top-k are counted (counting.py), never sorted.
Scoring works on blocks of profiles (``score_rank_block``: profiles x k x genes, in torch, on the device
the scores are on) and adds to running sums (``RankTally``): memory is bounded by the block, not by the
test set. Scores that depend only on the position (the frequency baselines) go through
``PositionTable``, whose unconstrained metrics are computed once for every (position, gene).
"""

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.special import log_softmax

from l1kformer.counting import counted

RANK_SUMMARY = {"ce": "ce", "top1": "top1", "top5": "top5", "rank_error": "mean_rank_error", "c_ce": "c_ce",
                "c_top1": "c_top1", "c_top5": "c_top5", "c_rank_error": "c_mean_rank_error",
                "assign_top1": "assign_top1"}


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
    c = counted(sub, local_t, with_ce=False)
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
    u = counted(scores, torch.from_numpy(true).to(scores.device), with_ce)
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
    """:func:`counting.counted` (without cross-entropy) for the scores -|gene_position[g] - position| of each
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
        u = counted(-(gp[:, None, :] - pos[:, :, None].to(gp.dtype)).abs(), true_t, with_ce=False)
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
