"""The expression-mode baselines, scored on the same static mask as the models (masked values in the
original units):
- ``gene_mean``: the gene's train mean;
- ``linear_shrunk``: the conditional Gaussian mean with covariance (1 - a) S + a tr(S)/G I, a chosen
  on the val split's static mask (real L1000 wants much more shrinkage than Ledoit-Wolf picks;
  baselines.py);
- ``linear_ledoit_wolf``: the same with Ledoit-Wolf's own a;
- ``knn``: mean of the k nearest train profiles by distance on the observed genes.
On simulated data the Bayes oracle (oracle.py) is scored beside them, in a step of its own.
"""

import numpy as np
import torch

from l1kformer.baselines import check_variance, conditional_mean, masked_blocks, moments, shrink, tune_shrinkage
from l1kformer.errors import InputError
from l1kformer.loader import masked_set, read_rows
from l1kformer.metrics_expression import ExpressionTally
from l1kformer.parallel import ordered_map


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
