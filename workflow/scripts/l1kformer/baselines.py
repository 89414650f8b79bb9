"""Simple, strong baselines, scored on the same static mask as the models.

Rank mode (log-scores for every gene at every masked rank position, then the metrics of
:mod:`l1kformer.metrics`, constrained decoding included):
- ``position_frequency``: how often each gene sat at each rank position in train;
- ``position_frequency_smoothed``: the same table smoothed along positions (Gaussian, sigma 8): its
  constrained metrics are "most frequent missing gene" and its assignment is the Hungarian one;
- ``mean_rank``: missing genes sorted by their mean train rank and assigned in that order.
Expression mode (masked values in the original units):
- ``gene_mean``: the gene's train mean;
- ``linear_shrunk``: the conditional Gaussian mean with covariance (1 - a) S + a tr(S)/G I, a chosen
  on the val split's static mask (real L1000 wants much more shrinkage than Ledoit-Wolf picks);
- ``linear_ledoit_wolf``: the same with Ledoit-Wolf's own a;
- ``knn``: mean of the k nearest train profiles by distance on the observed genes;
- ``oracle``: on simulated data, the Bayes-optimal prediction from the generator's parameters.
"""

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.ndimage import gaussian_filter1d

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


def rank_baselines(ranks_path, train_rows, test_rows, test_positions, sigma=8.0, log=print):
    import h5py

    with h5py.File(ranks_path, "r") as h5:
        n_genes = h5["ranks"].shape[1]
    counts, mean_rank = position_counts(ranks_path, train_rows, n_genes)
    freq = np.log((counts + 0.5) / (counts.sum(axis=1, keepdims=True) + 0.5 * n_genes))
    smooth = gaussian_filter1d(counts.astype(np.float64), sigma, axis=0, mode="nearest")
    smooth = np.log((smooth + 0.5) / (smooth.sum(axis=1, keepdims=True) + 0.5 * n_genes))
    ranks, positions = masked_set(ranks_path, "ranks", test_rows, test_positions)
    parts = {"position_frequency": [], "position_frequency_smoothed": [], "mean_rank": []}
    for seq, pos in zip(ranks, positions):
        true = seq[pos].astype(np.int64)
        parts["position_frequency"].append(score_profile(freq[pos], true))
        parts["position_frequency_smoothed"].append(score_profile(smooth[pos], true))
        scores = -np.abs(mean_rank[None, :] - pos[:, None])
        in_order = np.sort(true)[np.argsort(mean_rank[np.sort(true)], kind="stable")]
        parts["mean_rank"].append(score_profile(scores, true, assignment=in_order))
    log(f"rank baselines on {len(ranks)} test profiles x {positions.shape[1]} masked positions")
    return {name: summarize_rank(p) for name, p in parts.items()}


# --- expression ---------------------------------------------------------------------------------

def moments(expr_path, rows):
    """Mean (G) and covariance (G x G, divisor n) of ``rows``, accumulated in float64."""
    total, cross, n = 0.0, 0.0, 0
    for _, v in in_order(expr_path, "expression", rows):
        v = v.astype(np.float64)
        total = total + v.sum(axis=0)
        cross = cross + v.T @ v
        n += len(v)
    mean = total / n
    return mean, cross / n - np.outer(mean, mean), n


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


def expression_baselines(expr_path, split, val_mask, test_mask, k_neighbours=10, knn_reference=20000,
                         tune_profiles=500, oracle=None, seed=0, log=print):
    """All expression baselines on the test mask; shrinkage tuned on (at most ``tune_profiles`` of)
    the val mask. ``oracle(rows, values, positions)``, on simulated data, gives the Bayes prediction."""
    mean, cov, n_train = moments(expr_path, split["train"])
    test_values, test_pos = masked_set(expr_path, "expression", *test_mask)
    results, info = {}, {"n_train": n_train, "n_test": len(test_values)}
    results["gene_mean"] = flat_metrics(np.broadcast_to(mean, test_values.shape)[
        np.arange(len(test_pos))[:, None], test_pos], test_values, test_pos)

    val_rows, val_positions = val_mask
    pick = np.sort(np.random.default_rng(seed).permutation(len(val_rows))[:tune_profiles])
    val_values, val_pos = masked_set(expr_path, "expression", val_rows[pick], val_positions[pick])
    val_true = np.take_along_axis(val_values, val_pos, axis=1)
    tuning = {}
    for a in SHRINKAGE_GRID:
        pred = conditional_mean(mean, np.linalg.inv(shrink(cov, a)), val_values, val_pos)
        tuning[a] = float(((pred - val_true) ** 2).mean())
    best_a = min(tuning, key=tuning.get)
    info.update(shrinkage=best_a, shrinkage_val_mse={str(a): m for a, m in tuning.items()})
    log(f"shrinkage chosen on {len(val_values)} val profiles: a = {best_a} (val MSE {tuning[best_a]:.4f})")
    pred = conditional_mean(mean, np.linalg.inv(shrink(cov, best_a)), test_values, test_pos)
    results["linear_shrunk"] = flat_metrics(pred, test_values, test_pos)

    lw = ledoit_wolf_shrinkage(expr_path, split["train"], seed=seed)
    info["ledoit_wolf_shrinkage"] = lw
    pred = conditional_mean(mean, np.linalg.inv(shrink(cov, lw)), test_values, test_pos)
    results["linear_ledoit_wolf"] = flat_metrics(pred, test_values, test_pos)

    ref_rows = np.sort(np.random.default_rng(seed).permutation(split["train"])[:knn_reference])
    reference = read_rows(expr_path, "expression", ref_rows)
    pred = knn_predict(reference, test_values, test_pos, k=k_neighbours)
    results["knn"] = flat_metrics(pred, test_values, test_pos)
    info.update(knn_k=k_neighbours, knn_reference_profiles=len(reference))

    if oracle is not None:
        pred = oracle(test_mask[0], test_values.astype(np.float64), test_pos)
        results["oracle"] = flat_metrics(pred, test_values, test_pos)
    for name, m in results.items():
        log(f"{name}: MSE {m['mse']:.4f}, MAE {m['mae']:.4f}, Pearson {m['pearson']:.4f}")
    return results, info
