"""The rank-mode baselines, scored on the same static mask as the models (log-scores for every gene at
every masked rank position, then the metrics of :mod:`l1kformer.metrics_rank`, constrained decoding
included):
- ``position_frequency``: how often each gene sat at each rank position in train;
- ``position_frequency_smoothed``: the same table smoothed along positions (Gaussian, sigma 8): its
  constrained metrics are "most frequent missing gene" and its assignment is the Hungarian one;
- ``mean_rank``: missing genes sorted by their mean train rank and assigned in that order;
- ``gaussian_positions``: each profile as the vector of its genes' rank positions; the missing genes'
  positions predicted by the shrunk conditional Gaussian mean given the visible genes' positions (the
  estimator of ``linear_shrunk``, shrinkage chosen on the val mask: baselines.py), scores minus the
  distance to the predicted position, missing genes assigned to the masked positions in order of
  predicted position.
"""

import numpy as np

from l1kformer.baselines import check_variance, conditional_mean, masked_blocks, moments, tune_shrinkage
from l1kformer.loader import masked_set
from l1kformer.metrics_rank import (PositionBins, PositionTable, RankTally, in_position_order, score_distance_block,
                                    score_table_block)
from l1kformer.parallel import ordered_map
from l1kformer.position_prior import log_frequencies, position_counts


RANK_BASELINES = ("position_frequency", "position_frequency_smoothed", "mean_rank", "gaussian_positions")


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
