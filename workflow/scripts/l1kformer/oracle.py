"""oracle: on simulated data, the Bayes-optimal prediction of the masked test values from the
generator's saved parameters (simulate.py), scored like the baselines. Two bounds, not baselines: no
method can do better in expectation. ``oracle`` knows each profile's metadata (cell line, compound,
dose, time, plate), which no model sees; ``oracle_no_metadata`` sums over them under the generator's
prior and sees only the visible values, as the models do: the fair bound for them.

:func:`oracle_predict` is the exact Bayes prediction of masked values given the visible ones *and
the metadata* (cell line, compound, dose, time, plate): a mixture over the latent states of
conditional Gaussian means, DUO covariance included. It ignores only the rounding to 3 decimals and
the cap at 15 (about 0.16% of the entries sit at the cap, real Level 3 0.19%), so it is a bound up to
that. :func:`blind_oracle_predict` is the same without the metadata: it sums over every plate,
treatment and state under the generator's prior (:func:`plate_prior`), seeing what a model sees.
The generator and its parameters are simulate.py's."""

import numpy as np
import pandas as pd

from l1kformer.loader import masked_set
from l1kformer.metrics_expression import flat_metrics
from l1kformer.parallel import ordered_map
from l1kformer.simulate import DOSES_UM, codes_from_meta, duo_partner, expected_values, load_truth

BLOCK = 64  # profiles per block of the metadata-free oracle, the blocks on the job's threads


def oracle_baseline(expr_path, samples_path, truth_path, test_mask, log=print):
    rows, positions = test_mask
    values, positions = masked_set(expr_path, "expression", rows, positions)
    values64 = values.astype(np.float64)
    truth = load_truth(truth_path)
    meta_all = pd.read_parquet(samples_path)
    meta = meta_all.iloc[rows].reset_index(drop=True)
    prior = plate_prior(truth, meta_all)
    blocks = [(slice(a, a + BLOCK),) for a in range(0, len(values64), BLOCK)]
    blind = ordered_map(lambda b: blind_oracle_predict(truth, prior, values64[b], positions[b]), blocks)
    preds = {"oracle": oracle_predict(truth, codes_from_meta(truth, meta), values64, positions),
             "oracle_no_metadata": np.concatenate([np.empty((0, positions.shape[1]))] + list(blind))}
    out = {}
    for name, pred in preds.items():
        out[name] = flat_metrics(pred, values, positions)
        log(f"{name}: MSE {out[name]['mse']:.4f}, MAE {out[name]['mae']:.4f}, Pearson {out[name]['pearson']:.4f}")
    return out


def oracle_predict(truth, codes, values, positions):
    """Bayes-optimal prediction of the masked values given the visible ones and the metadata.

    ``values``: profiles x genes (the masked entries are ignored); ``positions``: profiles x k gene
    indices. For each latent state, the conditional Gaussian mean (Woodbury with the DUO-blocked noise,
    one r x r solve) and the likelihood of the visible values; the prediction is their mixture under
    the state posterior. Exact up to the rounding and the cap of the generator.
    """
    n, g = values.shape
    mean = expected_values(truth, codes, np.arange(n))
    out = np.empty(positions.shape, dtype=np.float64)
    for i in range(n):
        hidden = np.zeros(g, dtype=bool)
        hidden[positions[i]] = True
        noise = _DuoNoise(truth["noise_sd"], float(truth["duo_rho"]), hidden)
        c = codes["cell"][i]
        preds, logliks = [], []
        for k, prob in enumerate(truth["state_prob"][c]):
            resid = np.where(hidden, 0.0, values[i] - mean[i] - truth["state_offset"][c, k])
            pred, loglik = _conditional(truth["loadings"][c, k], noise, resid, hidden)
            preds.append(mean[i] + truth["state_offset"][c, k] + pred)
            logliks.append(np.log(prob) + loglik)
        w = np.exp(np.array(logliks) - max(logliks))
        out[i] = (w / w.sum()) @ np.array(preds)[:, positions[i]]
    return out


def plate_prior(truth, meta):
    """What the generator draws a profile's metadata from, per plate: its cell line, time index, the log
    of its share of the wells and its share of vehicle wells (compound and dose are uniform among the
    treated wells). ``meta``: the metadata of *all* profiles (the layout)."""
    codes = codes_from_meta(truth, meta)
    n_plates = len(truth["plate_id"])
    wells = np.bincount(codes["plate"], minlength=n_plates)
    controls = np.bincount(codes["plate"], weights=codes["compound"] < 0, minlength=n_plates)
    cell = np.zeros(n_plates, dtype=int)
    time_index = np.zeros(n_plates, dtype=int)
    cell[codes["plate"]], time_index[codes["plate"]] = codes["cell"], codes["time_index"]
    return {"cell": cell, "time_index": time_index, "log_share": np.log(np.maximum(wells, 1) / wells.sum()),
            "control_share": controls / np.maximum(wells, 1), "present": wells > 0}


def blind_oracle_predict(truth, prior, values, positions):
    """Bayes-optimal prediction of the masked values given the visible ones only: the metadata (plate,
    hence cell line and time; vehicle or compound x dose; latent state) are unknown and summed over
    under the generator's own prior (``plate_prior``). The fair bound for a model that sees only
    expression; exact up to the rounding and the cap, as ``oracle_predict``.

    Every (plate, treatment, state) is one Gaussian component. Within a cell line and state the
    covariance is shared, and a component's mean is a plate term plus time factor x a treatment term,
    so the quadratic forms split into plate, treatment and cross terms: Sigma_OO^-1 is applied to
    plates + treatments vectors, not to their product; the prediction, linear in the mean, is applied
    once to the posterior-weighted mean.
    """
    n, g = values.shape
    tf = truth["time_factor"][prior["time_index"]]
    sig = truth["signature"]
    resp = DOSES_UM[None, :] / (DOSES_UM[None, :] + truth["ec50"][:, None])  # compounds x doses
    log_treat = np.log(1.0 / resp.size)  # compound and dose uniform among the treated wells
    out = np.empty(positions.shape, dtype=np.float64)
    for i in range(n):
        hidden = np.zeros(g, dtype=bool)
        hidden[positions[i]] = True
        noise = _DuoNoise(truth["noise_sd"], float(truth["duo_rho"]), hidden)
        x_o = np.where(hidden, 0.0, values[i])
        sig_o = np.where(hidden[None, :], 0.0, sig)
        d_sig = noise.solve(sig_o.T)  # D_OO^-1 of the signatures, shared by every (cell, state)
        parts = []  # (log scale, weight, weighted mean, weighted Sigma_OO^-1 residual, loadings) per (cell, state)
        for c in range(truth["cell_offset"].shape[0]):
            plates = np.flatnonzero((prior["cell"] == c) & prior["present"])
            if not len(plates):
                continue
            for k, prob in enumerate(truth["state_prob"][c]):
                load = truth["loadings"][c, k]
                solve, logdet = _woodbury(load, noise, hidden)
                base = (truth["mu"] + truth["cell_offset"][c] + truth["state_offset"][c, k]
                        + truth["plate_offset"][plates])
                a = np.where(hidden[None, :], 0.0, x_o - base)  # plates x genes
                ua, us = solve(a.T), solve(sig_o.T, d_sig)  # genes x plates, genes x compounds
                # a treated component's mean is base + f_q r_pd sig_p: quadratic forms per plate, per
                # compound and plate x compound, scaled by time factor and dose response
                f, r = tf[plates][:, None, None], resp[None, :, :]
                aa = (a * ua.T).sum(1)
                cross = (a @ us)[:, :, None]  # plates x compounds x 1
                self_ = (sig_o * us.T).sum(1)[None, :, None]
                ctrl = prior["control_share"][plates]
                common = prior["log_share"][plates] + np.log(prob) - 0.5 * (aa + logdet)
                log_vehicle = common + np.log(np.maximum(ctrl, 1e-300))
                log_treated = (common + np.log(np.maximum(1 - ctrl, 1e-300)) + log_treat)[:, None, None] \
                    - 0.5 * (-2 * f * r * cross + (f * r) ** 2 * self_)
                top = max(log_vehicle.max(), log_treated.max())
                w_vehicle, w_treated = np.exp(log_vehicle - top), np.exp(log_treated - top)
                wq = w_vehicle + w_treated.sum((1, 2))
                coef = (w_treated * f * r).sum((0, 2))  # weight of each compound's signature in the mean
                parts.append((top, wq.sum(), wq @ base + coef @ sig, ua @ wq - us @ coef, load))
        out[i] = _mixture_mean(parts, noise, hidden)[positions[i]]
    return out


def _mixture_mean(parts, noise, hidden):
    """The posterior mean (genes) from per-(cell, state) parts: (log scale, weight, weighted mean,
    weighted Sigma_OO^-1 residual, loadings); the conditional mean is linear in both."""
    top = max(p[0] for p in parts)
    scale = [np.exp(p[0] - top) for p in parts]
    pred = np.zeros(len(hidden))
    for s, (_, _, mean, resid, load) in zip(scale, parts):
        pred += s * (mean + _from_visible(load, noise, hidden, resid))
    return pred / sum(s * p[1] for s, p in zip(scale, parts))


def _woodbury(load, noise, hidden):
    """(u -> Sigma_OO^-1 u for genes x m arrays zero at the hidden genes, log det of Sigma_OO minus the
    noise's) for Sigma = L L^T + D."""
    load_o = np.where(hidden[:, None], 0.0, load)
    dl = noise.solve(load_o)
    inner = np.eye(load.shape[1]) + load_o.T @ dl
    _, logdet = np.linalg.slogdet(inner)

    def solve(u, du=None):
        """``du``: D_OO^-1 u when the caller has it already."""
        du = noise.solve(u) if du is None else du
        return du - dl @ np.linalg.solve(inner, load_o.T @ du)
    return solve, logdet


class _DuoNoise:
    """The noise covariance D restricted to the visible genes, for one profile's hidden set: D_OO^-1
    as a diagonal plus a coupling with the DUO partner, and D's entries between hidden and visible."""

    def __init__(self, sd, rho, hidden):
        g = len(sd)
        partner = duo_partner(g)
        self.safe = np.where(partner >= 0, partner, np.arange(g))  # the partner, or the gene itself
        both = (partner >= 0) & ~hidden & ~hidden[self.safe]
        var, cross = sd ** 2, -rho * sd * sd[self.safe]
        det = var * var[self.safe] - cross ** 2
        self.diag = np.where(hidden, 0.0, np.where(both, var[self.safe] / np.where(both, det, 1.0), 1.0 / var))
        self.couple = np.where(both, -cross / np.where(both, det, 1.0), 0.0)
        self.to_hidden = np.where(hidden & (partner >= 0) & ~hidden[self.safe], cross, 0.0)
        self.logdet = np.log(np.where(hidden, 1.0, np.where(both, np.sqrt(det), var))).sum()

    def solve(self, a):
        """D_OO^-1 a for a genes (x columns) array that is zero at the hidden genes."""
        diag, couple = (self.diag, self.couple) if a.ndim == 1 else (self.diag[:, None], self.couple[:, None])
        return diag * a + couple * a[self.safe]


def _conditional(load, noise, resid, hidden):
    """E[r_H | r_O] (genes, meaningful at the hidden ones) and log N(r_O; 0, L L^T + D) for one state."""
    solve, logdet = _woodbury(load, noise, hidden)
    u = solve(resid)  # Sigma_OO^-1 r_O
    loglik = -0.5 * (resid @ u + logdet + noise.logdet + (~hidden).sum() * np.log(2 * np.pi))
    return _from_visible(load, noise, hidden, u), loglik


def _from_visible(load, noise, hidden, u):
    """Sigma_HO u (genes, meaningful at the hidden ones) for u = Sigma_OO^-1 r_O: the conditional mean's
    correction, through the loadings and the DUO partner's noise."""
    load_o = np.where(hidden[:, None], 0.0, load)
    return load @ (load_o.T @ u) + noise.to_hidden * u[noise.safe]


# --- the downstream tasks' ceiling --------------------------------------------------------------------

def class_log_posteriors(truth, prior, values):
    """The Bayes classifier's log posteriors (up to a constant per profile) of each profile's cell line
    and treatment, from its whole profile under the generator: every (plate, state, treatment) is one
    Gaussian component, as in :func:`blind_oracle_predict`, but with every gene visible, so one
    Woodbury solve per (cell line, state) serves all profiles. Returns (profiles x cell lines,
    profiles x (compounds + 1)), the last column the vehicle. Exact up to the rounding and the cap."""
    n, g = values.shape
    noise = _DuoNoise(truth["noise_sd"], float(truth["duo_rho"]), np.zeros(g, dtype=bool))
    sig = truth["signature"]
    n_cells, n_compounds = truth["cell_offset"].shape[0], sig.shape[0]
    resp = DOSES_UM[None, :] / (DOSES_UM[None, :] + truth["ec50"][:, None])  # compounds x doses
    log_treat = np.log(1.0 / resp.size)
    tf = truth["time_factor"][prior["time_index"]]
    by_cell = np.full((n, n_cells), -np.inf)
    by_treatment = np.full((n, n_compounds + 1), -np.inf)
    for c in range(n_cells):
        plates = np.flatnonzero((prior["cell"] == c) & prior["present"])
        if not len(plates):
            continue
        ctrl = prior["control_share"][plates]
        for k, prob in enumerate(truth["state_prob"][c]):
            solve, logdet = _woodbury(truth["loadings"][c, k], noise, np.zeros(g, dtype=bool))
            base = (truth["mu"] + truth["cell_offset"][c] + truth["state_offset"][c, k]
                    + truth["plate_offset"][plates])  # plates x genes
            s_sig, s_x, s_base = solve(sig.T), solve(values.T).T, solve(base.T).T
            aa = ((values * s_x).sum(1)[:, None] - 2 * values @ s_base.T + (base * s_base).sum(1)[None, :])
            cross = (values @ s_sig)[:, None, :] - (base @ s_sig)[None, :, :]  # profiles x plates x compounds
            self_ = (sig * s_sig.T).sum(1)
            fr = tf[plates][:, None, None] * resp[None]  # plates x compounds x doses
            common = prior["log_share"][plates][None, :] + np.log(prob) - 0.5 * (aa + logdet)  # profiles x plates
            log_vehicle = common + np.log(np.maximum(ctrl, 1e-300))
            log_treated = ((common + np.log(np.maximum(1 - ctrl, 1e-300)) + log_treat)[:, :, None, None]
                           - 0.5 * (-2 * fr[None] * cross[..., None] + fr[None] ** 2 * self_[None, None, :, None]))
            treated = _logsumexp(_logsumexp(log_treated, 3), 1)  # profiles x compounds
            vehicle = _logsumexp(log_vehicle, 1)
            by_treatment[:, :-1] = np.logaddexp(by_treatment[:, :-1], treated)
            by_treatment[:, -1] = np.logaddexp(by_treatment[:, -1], vehicle)
            by_cell[:, c] = np.logaddexp(by_cell[:, c], np.logaddexp(vehicle, _logsumexp(treated, 1)))
    return by_cell, by_treatment


def _logsumexp(a, axis):
    top = a.max(axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return (np.log(np.exp(a - top).sum(axis=axis, keepdims=True)) + top).squeeze(axis)


# The sample fields whose classes the generator draws, and its names for them: (the log posteriors'
# part, the class names in that part's column order).
ORACLE_FIELDS = {
    "cell_id": lambda truth: (0, list(truth["cell_id"])),
    "pert_id": lambda truth: (1, list(truth["compound_id"]) + ["DMSO"]),
}


def task_oracle(truth, prior, values, field, classes):
    """The Bayes classifier's predicted class index (into ``classes``, the task's class names) for each
    profile of ``values`` (profiles x genes, the whole profile), restricted to the task's classes; None
    for a field the generator does not draw (``ORACLE_FIELDS``)."""
    if field not in ORACLE_FIELDS:
        return None
    part, names = ORACLE_FIELDS[field](truth)
    logpost = class_log_posteriors(truth, prior, values.astype(np.float64))[part]
    column = {name: k for k, name in enumerate(names)}
    cols = np.array([column.get(str(name), -1) for name in classes])
    scored = np.where(cols[None, :] >= 0, logpost[:, np.maximum(cols, 0)], -np.inf)
    return scored.argmax(1)
