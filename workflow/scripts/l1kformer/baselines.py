"""Simple, strong baselines, scored on the same static mask as the models.

Rank mode (log-scores for every gene at every masked rank position, then the metrics of
:mod:`l1kformer.metrics`, constrained decoding included):
- ``position_frequency``: how often each gene sat at each rank position in train;
- ``position_frequency_smoothed``: the same table smoothed along positions (Gaussian, sigma 8): its
  constrained metrics are "most frequent missing gene" and its assignment is the Hungarian one;
- ``mean_rank``: missing genes sorted by their mean train rank and assigned in that order;
- ``gaussian_positions``: each profile as the vector of its genes' rank positions; the missing genes'
  positions predicted by the shrunk conditional Gaussian mean given the visible genes' positions (the
  estimator of ``linear_shrunk``, shrinkage chosen on the val mask), scores minus the distance to the
  predicted position, missing genes assigned to the masked positions in order of predicted position.
Expression mode (masked values in the original units):
- ``gene_mean``: the gene's train mean;
- ``linear_shrunk``: the conditional Gaussian mean with covariance (1 - a) S + a tr(S)/G I, a chosen
  on the val split's static mask (real L1000 wants much more shrinkage than Ledoit-Wolf picks);
- ``linear_ledoit_wolf``: the same with Ledoit-Wolf's own a;
- ``knn``: mean of the k nearest train profiles by distance on the observed genes.
On simulated data the Bayes oracle (oracle.py) is scored beside them, in a step of its own.
"""

import numpy as np
import torch

from l1kformer.errors import InputError
from l1kformer.loader import RowBatches, in_order, masked_batches, masked_set, read_rows
from l1kformer.metrics_expression import ExpressionTally
from l1kformer.metrics_rank import (PositionBins, PositionTable, RankTally, in_position_order, score_distance_block,
                                    score_table_block)
from l1kformer.parallel import ordered_map
from l1kformer.position_prior import log_frequencies, position_counts

SHRINKAGE_GRID = (0.01, 0.03, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


# --- rank ---------------------------------------------------------------------------------------

RANK_BASELINES = ("position_frequency", "position_frequency_smoothed", "mean_rank", "gaussian_positions")


def masked_blocks(path, dataset, mask_rows, mask_positions, block=256):
    """(values, positions) of a statically masked set, ``block`` profiles at a time, in row order."""
    return masked_batches(RowBatches(path, dataset, mask_rows, block), mask_rows, mask_positions)


def rank_baselines(ranks_path, split, val_mask, test_mask, smoothing_sigma, tune_profiles, log=print, block=128):
    """All rank baselines on the test mask; ``gaussian_positions`` tunes its shrinkage on the val mask.
    The test set is scored ``block`` profiles at a time into running sums."""
    import h5py

    with h5py.File(ranks_path, "r") as h5:
        n_genes = h5["ranks"].shape[1]
    counts, mean_rank = position_counts(ranks_path, split["train"], n_genes)
    freq, smooth = log_frequencies(counts), log_frequencies(counts, smoothing_sigma)
    tables = {"position_frequency": PositionTable(freq),
              "position_frequency_smoothed": PositionTable(smooth, transposed=True),
              "mean_rank": PositionTable(distance_scores(mean_rank, np.arange(n_genes)), with_ce=False)}
    predict, info = gaussian_positions(ranks_path, split["train"], val_mask, tune_profiles, log)
    tallies = {name: RankTally() for name in RANK_BASELINES}
    bins = {name: PositionBins(n_genes) for name in RANK_BASELINES}

    def score(ranks, pos):
        true = np.take_along_axis(ranks, pos, axis=1).astype(np.int64)
        return pos, {
            "position_frequency": score_table_block(tables["position_frequency"], pos, true),
            "position_frequency_smoothed": score_table_block(tables["position_frequency_smoothed"], pos, true),
            "mean_rank": score_table_block(tables["mean_rank"], pos, true, in_position_order(mean_rank[None, :], true)),
            "gaussian_positions": score_distance_block(predict(ranks, pos), pos, true)}

    n_profiles = 0
    for pos, part in ordered_map(score, masked_blocks(ranks_path, "ranks", *test_mask, block=block)):
        for name, result in part.items():
            tallies[name].add(result)
            bins[name].add(pos, {"mean_rank_error": result["rank_error"], "c_mean_rank_error": result["c_rank_error"]})
        n_profiles += len(pos)
    log(f"rank baselines on {n_profiles} test profiles x {test_mask[1].shape[1]} masked positions")
    # distances, not probabilities, for mean_rank and gaussian_positions: no cross-entropy (None)
    info["by_position"] = {name: b.result() for name, b in bins.items()}  # for the runs' by-position figure
    return {name: t.summary() for name, t in tallies.items()}, info


def distance_scores(gene_position, positions):
    """positions x genes: minus the distance of each gene's (predicted) position to each position."""
    return -np.abs(gene_position[None, :] - positions[:, None])


def rank_positions(ranks):
    """profiles x genes (float64): each gene's rank position, the inverse of each row's gene order."""
    out = np.empty(ranks.shape)
    np.put_along_axis(out, ranks.astype(np.int64), np.arange(ranks.shape[1], dtype=np.float64)[None, :], axis=1)
    return out


def gaussian_positions(ranks_path, train_rows, val_mask, tune_profiles, log=print, seed=0):
    """The conditional Gaussian on gene rank positions, covariance shrunk as ``linear_shrunk``'s, a
    chosen on (at most ``tune_profiles`` of) the val mask by the MSE of the predicted positions.

    Returns ``predict(ranks, positions)`` -> profiles x genes of positions (visible genes where they
    are, missing genes at their conditional mean), and the tuning record.
    """
    mean, cov, _ = moments(ranks_path, "ranks", train_rows, transform=rank_positions)
    check_variance(cov, ranks_path)

    def predict_with(precision, ranks, positions):
        out = rank_positions(ranks)
        missing = np.take_along_axis(ranks, positions, axis=1).astype(np.int64)
        np.put_along_axis(out, missing, conditional_mean(mean, precision, out, missing), axis=1)
        return out

    val_rows, val_positions = val_mask
    pick = np.sort(np.random.default_rng(seed).permutation(len(val_rows))[:tune_profiles])
    ranks, positions = masked_set(ranks_path, "ranks", val_rows[pick], val_positions[pick])
    truth = rank_positions(ranks)
    best, precision, tuning = tune_shrinkage(
        cov, lambda p: float(((predict_with(p, ranks, positions) - truth) ** 2).sum() / positions.size))
    log(f"gaussian_positions: shrinkage a = {best} chosen on {len(ranks)} val profiles "
        f"(position MSE {tuning[best]:.1f})")
    info = {"shrinkage": best, "shrinkage_val_position_mse": {str(a): m for a, m in tuning.items()}}
    return (lambda r, p: predict_with(precision, r, p)), info


# --- expression ---------------------------------------------------------------------------------

def moments(path, dataset, rows, transform=None):
    """Mean (G) and covariance (G x G, divisor n) of ``rows`` (after ``transform``), in float64."""
    total, cross, n = 0.0, 0.0, 0
    for _, v in in_order(path, dataset, rows):
        v = v.astype(np.float64) if transform is None else transform(v)
        total = total + v.sum(axis=0)
        cross = cross + v.T @ v
        n += len(v)
    mean = total / n
    return mean, cross / n - np.outer(mean, mean), n


def tune_shrinkage(cov, val_error):
    """The shrinkage a of ``SHRINKAGE_GRID`` whose precision inv((1 - a) S + a tr(S)/G I) gives the
    smallest ``val_error(precision)``: (a, that precision, {a: error})."""
    tuning, precisions = {}, {}
    for a in SHRINKAGE_GRID:
        precisions[a] = np.linalg.inv(shrink(cov, a))
        tuning[a] = val_error(precisions[a])
    best = min(tuning, key=tuning.get)
    return best, precisions[best], tuning


def check_variance(cov, path):
    if not np.trace(cov) > 0:
        raise InputError(path, "the training profiles have no variance on any gene (every profile the same): "
                               "there is nothing to learn or predict")


def shrink(cov, a):
    g = len(cov)
    return (1 - a) * cov + a * (np.trace(cov) / g) * np.eye(g)


def conditional_mean(mean, precision, values, positions, block=64):
    """E[x_M | x_O] = mu_M - P_MM^-1 P_MO (x_O - mu_O), with P = Sigma^-1.

    P_MO r_O is (P r~)_M for the residual r~ with its masked entries zeroed, one matrix product per
    block of profiles; what remains is a k x k Cholesky solve per profile, batched; blocks run side by
    side (:func:`l1kformer.parallel.ordered_map`).
    """
    p = torch.from_numpy(np.ascontiguousarray(precision, dtype=np.float64))
    g = p.shape[1]

    def solve(x, m):
        resid = x - mean
        np.put_along_axis(resid, m, 0.0, axis=1)
        rhs = (torch.from_numpy(resid) @ p).gather(1, torch.from_numpy(m))  # P is symmetric
        factor, info = torch.linalg.cholesky_ex(torch.from_numpy(np.take(precision, m[:, :, None] * g + m[:, None, :])))
        if info.any():
            raise np.linalg.LinAlgError("a masked block of the precision matrix is not positive definite")
        return mean[m] - torch.cholesky_solve(rhs.unsqueeze(-1), factor).squeeze(-1).numpy()

    blocks = ((values[s:s + block], positions[s:s + block]) for s in range(0, len(positions), block))
    parts = list(ordered_map(solve, blocks))
    return np.concatenate(parts) if parts else np.empty(positions.shape)


def ledoit_wolf_shrinkage(expr_path, rows, max_rows=20000, seed=0):
    from sklearn.covariance import ledoit_wolf_shrinkage as lw

    rows = np.sort(np.random.default_rng(seed).permutation(rows)[:max_rows])
    x = read_rows(expr_path, "expression", rows).astype(np.float64)
    return float(lw(x))


class Knn:
    """Mean of the ``k`` nearest reference profiles by squared distance on each profile's observed genes.

    Distances are screened in float32 (one matrix product per block, values centred on the reference
    mean); the ``shortlist`` nearest are recomputed exactly in float64 and the ``k`` chosen among them
    (ties by reference order). That is the exact answer whenever the shortlist's last screened distance
    exceeds the k-th by more than twice the float32 error bound; a profile where it does not is
    computed exactly against every reference.
    """

    def __init__(self, reference, k, shortlist=None):
        self.ref = np.asarray(reference, dtype=np.float64)
        self.k = k
        self.shortlist = min(len(self.ref), shortlist or 2 * k)
        self.centre = self.ref.mean(axis=0)
        centred = torch.from_numpy((self.ref - self.centre).astype(np.float32))
        self.both = torch.cat([centred * centred, centred], dim=1)  # [r^2, r]
        self.max_sq = float((centred.double() ** 2).sum(dim=1).max())

    def predict(self, values, positions):
        x = torch.from_numpy((values - self.centre).astype(np.float32))
        obs = torch.ones_like(x).scatter_(1, torch.from_numpy(positions), 0.0)
        xo = x * obs
        # sum over observed genes of (r - x)^2 = r^2 . obs - 2 r . xo + |xo|^2 (the last is constant per row)
        screen = torch.cat([obs, -2 * xo], dim=1) @ self.both.T  # profiles x reference
        near, cand = screen.topk(self.shortlist, dim=1, largest=False)  # sorted, nearest first
        # |float32 error| of a dot product of n terms <= n u sum |terms| (u = 2^-24); the terms here sum
        # to at most max |r|^2 + 2 |x| max |r|
        x_norm = xo.double().norm(dim=1)
        bound = 2 * self.both.shape[1] * 2.0**-24 * (self.max_sq + 2 * x_norm * np.sqrt(self.max_sq))
        safe = (near[:, -1].double() - near[:, self.k - 1].double() > 2 * bound).numpy()
        cand, obs = np.sort(cand.numpy(), axis=1), obs.numpy().astype(np.float64)
        nearest = np.empty((len(values), self.k), dtype=np.int64)
        nearest[safe] = self._exact_nearest(values[safe], obs[safe], cand[safe])
        everyone = np.arange(len(self.ref))[None, :]
        for i in np.flatnonzero(~safe):
            nearest[i] = self._exact_nearest(values[i:i + 1], obs[i:i + 1], everyone)[0]
        return self.ref[nearest[:, :, None], positions[:, None, :]].mean(axis=1)

    def _exact_nearest(self, values, obs, cand, chunk=2048):
        """The k of ``cand`` (profiles x candidates, sorted) nearest in exact float64 distance."""
        exact = np.empty(cand.shape)
        for s in range(0, cand.shape[1], chunk):
            diff = self.ref[cand[:, s:s + chunk]] - values[:, None, :]
            exact[:, s:s + chunk] = (diff * diff * obs[:, None, :]).sum(axis=2)
        return np.take_along_axis(cand, np.argsort(exact, axis=1, kind="stable")[:, : self.k], axis=1)


def knn_predict(reference, values, positions, k=10, block=64):
    """:class:`Knn` predictions of the masked ``positions`` of ``values`` (profiles x genes)."""
    knn = Knn(reference, k)
    return np.concatenate([knn.predict(values[s:s + block], positions[s:s + block])
                           for s in range(0, len(values), block)])


def expression_baselines(expr_path, split, val_mask, test_mask, knn_k, knn_reference, tune_profiles, seed=0,
                         log=print, block=64, spill_dir=None):
    """All expression baselines on the test mask; shrinkage tuned on (at most ``tune_profiles`` of)
    the val mask. The test set is predicted ``block`` profiles at a time into running metrics."""
    mean, cov, n_train = moments(expr_path, "expression", split["train"])
    check_variance(cov, expr_path)
    if len(split["train"]) < knn_k:
        raise InputError(expr_path, f"{len(split['train'])} training profiles are fewer than evaluate.knn_k "
                                    f"({knn_k}) neighbours")
    info = {"n_train": n_train, "n_test": len(test_mask[0])}
    val_rows, val_positions = val_mask
    pick = np.sort(np.random.default_rng(seed).permutation(len(val_rows))[:tune_profiles])
    val_values, val_pos = masked_set(expr_path, "expression", val_rows[pick], val_positions[pick])
    val_true = np.take_along_axis(val_values, val_pos, axis=1)
    best_a, precision, tuning = tune_shrinkage(
        cov, lambda p: float(((conditional_mean(mean, p, val_values, val_pos) - val_true) ** 2).mean()))
    info.update(shrinkage=best_a, shrinkage_val_mse={str(a): m for a, m in tuning.items()})
    log(f"shrinkage chosen on {len(val_values)} val profiles: a = {best_a} (val MSE {tuning[best_a]:.4f})")
    lw = ledoit_wolf_shrinkage(expr_path, split["train"], seed=seed)
    info["ledoit_wolf_shrinkage"] = lw
    precision_lw = np.linalg.inv(shrink(cov, lw))
    ref_rows = np.sort(np.random.default_rng(seed).permutation(split["train"])[:knn_reference])
    knn = Knn(read_rows(expr_path, "expression", ref_rows), knn_k)
    info.update(knn_k=knn_k, knn_reference_profiles=len(ref_rows))
    methods = {"gene_mean": lambda v, p: mean[p],
               "linear_shrunk": lambda v, p: conditional_mean(mean, precision, v, p),
               "linear_ledoit_wolf": lambda v, p: conditional_mean(mean, precision_lw, v, p),
               "knn": knn.predict}
    tallies = {name: ExpressionTally(spill_dir) for name in methods}

    def predict(values, pos):
        return np.take_along_axis(values, pos, axis=1), pos, {name: f(values, pos) for name, f in methods.items()}

    try:
        for true, pos, predictions in ordered_map(predict, masked_blocks(expr_path, "expression", *test_mask,
                                                                         block=block)):
            for name, pred in predictions.items():
                tallies[name].add(pred, true, pos)
        results = {name: t.result() for name, t in tallies.items()}
    finally:
        for t in tallies.values():
            t.close()
    for name, m in results.items():
        log(f"{name}: MSE {m['mse']:.4f}, MAE {m['mae']:.4f}, Pearson {m['pearson']:.4f}")
    return results, info
