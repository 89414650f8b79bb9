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
from scipy.linalg import cho_factor, cho_solve
from scipy.ndimage import gaussian_filter1d

from l1kformer.errors import InputError
from l1kformer.loader import in_order, read_rows
from l1kformer.metrics import expression_metrics, score_profile, summarize_rank

SHRINKAGE_GRID = (0.01, 0.03, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def masked_set(path, dataset, mask_rows, mask_positions):
    """All values of a masked set and its positions, aligned (profiles x genes, profiles x k)."""
    values = read_rows(path, dataset, mask_rows)
    return values, mask_positions.astype(np.int64)


# --- rank ---------------------------------------------------------------------------------------

def position_counts(ranks_path, train_rows, n_genes):
    """counts[position, gene] over training profiles, and each gene's mean rank position."""
    counts = np.zeros(n_genes * n_genes, dtype=np.int64)
    pos = np.arange(n_genes, dtype=np.int64)
    for _, ranks in in_order(ranks_path, "ranks", train_rows):
        counts += np.bincount((pos * n_genes + ranks.astype(np.int64)).ravel(), minlength=n_genes * n_genes)
    counts = counts.reshape(n_genes, n_genes)
    mean_rank = (counts * pos[:, None]).sum(axis=0) / np.maximum(counts.sum(axis=0), 1)
    return counts, mean_rank


def rank_baselines(ranks_path, split, val_mask, test_mask, smoothing_sigma, tune_profiles, log=print):
    """All rank baselines on the test mask; ``gaussian_positions`` tunes its shrinkage on the val mask."""
    import h5py

    with h5py.File(ranks_path, "r") as h5:
        n_genes = h5["ranks"].shape[1]
    counts, mean_rank = position_counts(ranks_path, split["train"], n_genes)
    freq = np.log((counts + 0.5) / (counts.sum(axis=1, keepdims=True) + 0.5 * n_genes))
    smooth = gaussian_filter1d(counts.astype(np.float64), smoothing_sigma, axis=0, mode="nearest")
    smooth = np.log((smooth + 0.5) / (smooth.sum(axis=1, keepdims=True) + 0.5 * n_genes))
    predict, info = gaussian_positions(ranks_path, split["train"], val_mask, tune_profiles, log)
    ranks, positions = masked_set(ranks_path, "ranks", *test_mask)
    predicted = predict(ranks, positions)
    parts = {"position_frequency": [], "position_frequency_smoothed": [], "mean_rank": [], "gaussian_positions": []}
    for seq, pos, gene_pos in zip(ranks, positions, predicted):
        true = seq[pos].astype(np.int64)
        parts["position_frequency"].append(score_profile(freq[pos], true))
        parts["position_frequency_smoothed"].append(score_profile(smooth[pos], true))
        parts["mean_rank"].append(score_by_position(mean_rank, pos, true))
        parts["gaussian_positions"].append(score_by_position(gene_pos, pos, true))
    log(f"rank baselines on {len(ranks)} test profiles x {positions.shape[1]} masked positions")
    results = {name: summarize_rank(p) for name, p in parts.items()}
    for name in ("mean_rank", "gaussian_positions"):  # distances, not probabilities: no cross-entropy
        results[name].update(ce=None, c_ce=None)
    return results, info


def score_by_position(gene_position, positions, true):
    """Scores of a method that places each gene at a position (``gene_position``, genes): minus the
    distance to each masked position; missing genes assigned to the masked positions in order of
    their predicted position."""
    scores = -np.abs(gene_position[None, :] - positions[:, None])
    missing = np.sort(true)
    in_order = missing[np.argsort(gene_position[missing], kind="stable")]
    return score_profile(scores, true, assignment=in_order)


def gene_positions(ranks):
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
    mean, cov, _ = moments(ranks_path, "ranks", train_rows, transform=gene_positions)
    check_variance(cov, ranks_path)

    def predict_with(precision, ranks, positions):
        out = gene_positions(ranks)
        missing = np.take_along_axis(ranks, positions, axis=1).astype(np.int64)
        np.put_along_axis(out, missing, conditional_mean(mean, precision, out, missing), axis=1)
        return out

    val_rows, val_positions = val_mask
    pick = np.sort(np.random.default_rng(seed).permutation(len(val_rows))[:tune_profiles])
    ranks, positions = masked_set(ranks_path, "ranks", val_rows[pick], val_positions[pick])
    truth = gene_positions(ranks)
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


def conditional_mean(mean, precision, values, positions):
    """E[x_M | x_O] = mu_M - P_MM^-1 P_MO (x_O - mu_O), with P = Sigma^-1.

    P_MO r_O is (P r~)_M for the residual r~ with its masked entries zeroed, one matrix product for
    all profiles; what remains per profile is a k x k Cholesky solve.
    """
    resid = values - mean
    np.put_along_axis(resid, positions, 0.0, axis=1)
    rhs_all = resid @ precision  # P is symmetric
    out = np.empty(positions.shape)
    for i, m in enumerate(positions):
        out[i] = mean[m] - cho_solve(cho_factor(precision[np.ix_(m, m)]), rhs_all[i, m])
    return out


def ledoit_wolf_shrinkage(expr_path, rows, max_rows=20000, seed=0):
    from sklearn.covariance import ledoit_wolf_shrinkage as lw

    rows = np.sort(np.random.default_rng(seed).permutation(rows)[:max_rows])
    x = read_rows(expr_path, "expression", rows).astype(np.float64)
    return float(lw(x))


def knn_predict(reference, values, positions, k=10, batch=256):
    """Mean of the k nearest reference profiles (distance on each profile's observed genes)."""
    ref = reference.astype(np.float64)
    ref_sq = ref * ref
    out = np.empty(positions.shape)
    for start in range(0, len(values), batch):
        x = values[start:start + batch].astype(np.float64)
        pos = positions[start:start + batch]
        obs = np.ones_like(x)
        np.put_along_axis(obs, pos, 0.0, axis=1)
        xo = x * obs
        dist = ref_sq @ obs.T - 2 * ref @ xo.T + (xo * xo).sum(axis=1)  # reference x batch
        nearest = np.argpartition(dist, k - 1, axis=0)[:k]  # k x batch
        for j in range(len(x)):
            out[start + j] = ref[np.ix_(nearest[:, j], pos[j])].mean(axis=0)
    return out


def flat_metrics(pred, values, positions):
    true = np.take_along_axis(values, positions, axis=1)
    profile = np.repeat(np.arange(len(positions)), positions.shape[1])
    return expression_metrics(pred.ravel(), true.ravel(), profile, positions.ravel())


def expression_baselines(expr_path, split, val_mask, test_mask, knn_k, knn_reference, tune_profiles, seed=0,
                         log=print):
    """All expression baselines on the test mask; shrinkage tuned on (at most ``tune_profiles`` of)
    the val mask."""
    mean, cov, n_train = moments(expr_path, "expression", split["train"])
    check_variance(cov, expr_path)
    if len(split["train"]) < knn_k:
        raise InputError(expr_path, f"{len(split['train'])} training profiles are fewer than evaluate.knn_k "
                                    f"({knn_k}) neighbours")
    test_values, test_pos = masked_set(expr_path, "expression", *test_mask)
    results, info = {}, {"n_train": n_train, "n_test": len(test_values)}
    results["gene_mean"] = flat_metrics(np.broadcast_to(mean, test_values.shape)[
        np.arange(len(test_pos))[:, None], test_pos], test_values, test_pos)

    val_rows, val_positions = val_mask
    pick = np.sort(np.random.default_rng(seed).permutation(len(val_rows))[:tune_profiles])
    val_values, val_pos = masked_set(expr_path, "expression", val_rows[pick], val_positions[pick])
    val_true = np.take_along_axis(val_values, val_pos, axis=1)
    best_a, precision, tuning = tune_shrinkage(
        cov, lambda p: float(((conditional_mean(mean, p, val_values, val_pos) - val_true) ** 2).mean()))
    info.update(shrinkage=best_a, shrinkage_val_mse={str(a): m for a, m in tuning.items()})
    log(f"shrinkage chosen on {len(val_values)} val profiles: a = {best_a} (val MSE {tuning[best_a]:.4f})")
    pred = conditional_mean(mean, precision, test_values, test_pos)
    results["linear_shrunk"] = flat_metrics(pred, test_values, test_pos)

    lw = ledoit_wolf_shrinkage(expr_path, split["train"], seed=seed)
    info["ledoit_wolf_shrinkage"] = lw
    pred = conditional_mean(mean, np.linalg.inv(shrink(cov, lw)), test_values, test_pos)
    results["linear_ledoit_wolf"] = flat_metrics(pred, test_values, test_pos)

    ref_rows = np.sort(np.random.default_rng(seed).permutation(split["train"])[:knn_reference])
    reference = read_rows(expr_path, "expression", ref_rows)
    pred = knn_predict(reference, test_values, test_pos, k=knn_k)
    results["knn"] = flat_metrics(pred, test_values, test_pos)
    info.update(knn_k=knn_k, knn_reference_profiles=len(reference))
    for name, m in results.items():
        log(f"{name}: MSE {m['mse']:.4f}, MAE {m['mae']:.4f}, Pearson {m['pearson']:.4f}")
    return results, info
