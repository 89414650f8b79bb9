"""simulate: a synthetic L1000-like Level-3 data set whose generating parameters are known.

Model (log2 units), for profile i of cell line c in latent state k, compound p at dose d and time t,
on plate q:

    x_i = mu + cell[c] + state[c, k] + resp_p(d) * time[t] * signature[p] + plate[q] + L[c, k] f_i + e_i,
    k ~ Categorical(state_prob[c]),  f_i ~ N(0, I_r),  resp_p(d) = d / (d + ec50[p]),
    e_i ~ N(0, D): per-gene noise sd, and genes 2j and 2j+1 (one bead analyte, the DUO design) with
    noise correlation -duo_rho,

capped at 15 and rounded to 3 decimals as real Level 3 is. Each cell line has ``n_states`` latent
states with their own mean shift and co-expression (loadings L[c, k]): the profile distribution is a
mixture, so the best single linear predictor is clearly worse than the Bayes predictor.
The scales are calibrated against the real A375 Level-3 plates of ``../shared/data/l1000``
(tests/test_simulate.py prints the table): gene means 8.46 +- 1.98 (real 8.37 +- 2.08); gene-mean
MSE 0.95 (real 0.95); MSE ratios to the gene mean of the shrunk linear predictor 0.52 and of kNN 0.67
(real 0.55 and 0.67), the same shrinkage a = 0.7; DUO residual correlation -0.23 in vehicle wells
(real -0.22). Not matched: the within-plate sd is 0.94 (real 0.75: the real plates carry larger
shifts between plates), and real Level 3 has about 160 tied values per profile (quantile
normalisation), the generator about 60 (rounding only).
:func:`oracle_predict` is the exact Bayes prediction of masked values given the visible ones *and
the metadata* (cell line, compound, dose, time, plate): a mixture over the latent states of
conditional Gaussian means, DUO covariance included. It ignores only the rounding to 3 decimals and
the cap at 15 (about 0.16% of the entries sit at the cap, real Level 3 0.19%), so it is a bound up to
that. :func:`blind_oracle_predict` is the same without the metadata: it sums over every plate,
treatment and state under the generator's prior (:func:`plate_prior`), seeing what a model sees.
"""

from dataclasses import dataclass

import h5py
import numpy as np
import pandas as pd

from l1kformer.fileio import atomic_outputs, h5_create, h5_write
from l1kformer.gctx import write_gctx

DOSES_UM = np.array([0.04, 0.12, 0.37, 1.11, 3.33, 10.0])
TIMES_H = np.array([6.0, 24.0])
TIME_FACTOR = np.array([0.6, 1.0])
CONTROLS_PER_PLATE = 16
CAP = 15.0
BLOCK_ROWS = 16384


@dataclass
class SimulationConfig:
    """Size of the simulated data set; the defaults live in config.yaml (``simulate:``)."""
    n_genes: int
    n_cell_lines: int
    n_compounds: int
    n_plates: int
    wells_per_plate: int
    n_factors: int
    n_states: int
    seed: int


DUO_RHO = 0.45  # noise correlation of the two genes read on one bead analyte is -DUO_RHO


def make_truth(cfg):
    rng = np.random.default_rng([cfg.seed, 0])
    g, c, p, r, k = cfg.n_genes, cfg.n_cell_lines, cfg.n_compounds, cfg.n_factors, cfg.n_states
    shared = rng.normal(0, 0.13, (g, r))
    cell = rng.normal(0, 0.13, (c, 1, g, r))
    truth = {
        "mu": np.clip(rng.normal(8.4, 2.0, g), 3.6, 14.6),
        "noise_sd": rng.uniform(0.45, 0.85, g),
        "cell_offset": rng.normal(0, 0.5, (c, g)),
        "state_offset": rng.normal(0, 0.45, (c, k, g)) * (rng.random((c, k, g)) < 0.4),
        "state_prob": rng.dirichlet(np.full(k, 4.0), c),
        "loadings": shared + cell + rng.normal(0, 0.13, (c, k, g, r)),
        "signature": rng.normal(0, 0.8, (p, g)) * (rng.random((p, g)) < 0.1),
        "ec50": np.exp(rng.uniform(np.log(0.1), np.log(3.0), p)),
        "plate_offset": rng.normal(0, 0.3, (cfg.n_plates, g)),
        "duo_rho": np.float64(DUO_RHO),
    }
    return truth


def duo_partner(n_genes):
    """Each gene's DUO partner (2j <-> 2j+1), -1 for a last unpaired gene."""
    partner = np.arange(n_genes) ^ 1
    partner[partner >= n_genes] = -1
    return partner


def make_layout(cfg):
    """Sample metadata: plates of one cell line and time point, DMSO wells plus compound x dose."""
    rng = np.random.default_rng([cfg.seed, 1])
    wells = [f"{chr(ord('A') + k // 24)}{k % 24 + 1:02d}" if cfg.wells_per_plate <= 384 else f"W{k:05d}"
             for k in range(cfg.wells_per_plate)]
    plate_cell = np.arange(cfg.n_plates) % cfg.n_cell_lines
    plate_time = rng.integers(0, len(TIMES_H), cfg.n_plates)
    n = cfg.n_plates * cfg.wells_per_plate
    plate = np.repeat(np.arange(cfg.n_plates), cfg.wells_per_plate)
    well = np.tile(np.arange(cfg.wells_per_plate), cfg.n_plates)
    compound = rng.integers(0, cfg.n_compounds, n)
    dose = rng.integers(0, len(DOSES_UM), n)
    control = well < min(CONTROLS_PER_PLATE, cfg.wells_per_plate // 4)
    compound[control] = -1
    cell_names = np.array([f"CELL{k + 1:02d}" for k in range(cfg.n_cell_lines)])
    plate_names = np.array([f"SIM{k + 1:03d}_{cell_names[plate_cell[k]]}_{int(TIMES_H[plate_time[k]])}H_X1"
                            for k in range(cfg.n_plates)])
    pert_id = np.where(control, "DMSO", np.char.add("BRD-S", np.char.zfill(compound.astype(str), 6)))
    meta = pd.DataFrame({
        "id": np.char.add(np.char.add(plate_names[plate], ":"), np.array(wells)[well]),
        "cell_id": cell_names[plate_cell[plate]],
        "pert_id": pert_id,
        "pert_iname": np.where(control, "DMSO", np.char.add("simcompound-", compound.astype(str))),
        "pert_type": np.where(control, "ctl_vehicle", "trt_cp"),
        "pert_dose": np.where(control, 0.0, DOSES_UM[dose]),
        "pert_dose_unit": "um",
        "pert_time": TIMES_H[plate_time[plate]],
        "pert_time_unit": "h",
        "det_plate": plate_names[plate],
        "det_well": np.array(wells)[well],
    })
    codes = {"cell": plate_cell[plate], "compound": compound, "dose_um": meta["pert_dose"].to_numpy(),
             "time_index": plate_time[plate], "plate": plate}
    return meta, codes


def expected_values(truth, codes, rows):
    """Mean of profiles ``rows`` before the latent state, the factors and the noise."""
    comp = codes["compound"][rows]
    treated = comp >= 0
    resp = np.zeros(len(rows))
    dose = codes["dose_um"][rows]
    resp[treated] = dose[treated] / (dose[treated] + truth["ec50"][comp[treated]])
    resp *= TIME_FACTOR[codes["time_index"][rows]]
    sig = np.where(treated[:, None], truth["signature"][np.maximum(comp, 0)], 0.0)
    return (truth["mu"] + truth["cell_offset"][codes["cell"][rows]] + resp[:, None] * sig
            + truth["plate_offset"][codes["plate"][rows]])


def draw_states(truth, codes, rows, rng):
    """Latent state of each profile, drawn from its cell line's state probabilities."""
    cum = np.cumsum(truth["state_prob"][codes["cell"][rows]], axis=1)
    return (rng.random((len(rows), 1)) > cum[:, :-1]).sum(axis=1)


def duo_noise(noise_sd, rho, n, rng):
    """n x genes of noise with per-gene sd and correlation -rho inside each DUO pair."""
    g = len(noise_sd)
    partner = duo_partner(g)
    shared = rng.normal(size=(n, (g + 1) // 2))[:, np.arange(g) // 2]
    sign = np.where(np.arange(g) % 2 == 0, 1.0, -1.0)
    paired = partner >= 0
    e = rng.normal(size=(n, g)) * np.where(paired, np.sqrt(1 - rho), 1.0)
    e += np.where(paired, np.sqrt(rho) * sign, 0.0) * shared
    return e * noise_sd


def simulate_block(truth, codes, start, stop, seed):
    """Profiles ``start:stop`` (samples x genes, float32); deterministic per block of BLOCK_ROWS."""
    out = []
    for b0 in range(start - start % BLOCK_ROWS, stop, BLOCK_ROWS):
        rows = np.arange(b0, min(b0 + BLOCK_ROWS, len(codes["plate"])))
        rng = np.random.default_rng([seed, 2, b0 // BLOCK_ROWS])
        cell, state = codes["cell"][rows], draw_states(truth, codes, rows, rng)
        f = rng.normal(size=(len(rows), truth["loadings"].shape[3]))
        x = expected_values(truth, codes, rows) + truth["state_offset"][cell, state]
        for c, k in sorted(set(zip(cell.tolist(), state.tolist()))):
            sel = (cell == c) & (state == k)
            x[sel] += f[sel] @ truth["loadings"][c, k].T
        x += duo_noise(truth["noise_sd"], float(truth["duo_rho"]), len(rows), rng)
        x = np.round(np.minimum(x, CAP), 3).astype(np.float32)
        lo, hi = max(start, b0) - b0, min(stop, b0 + len(rows)) - b0
        out.append(x[lo:hi])
    return np.concatenate(out) if out else np.empty((0, len(truth["mu"])), np.float32)


def gene_table(n_genes):
    return pd.DataFrame({"id": [str(100000 + k) for k in range(n_genes)],
                         "pr_gene_symbol": [f"SIMG{k:04d}" for k in range(n_genes)]})


def simulate(cfg, out_gctx, out_truth, log=print):
    truth = make_truth(cfg)
    meta, codes = make_layout(cfg)
    genes = gene_table(cfg.n_genes)
    with atomic_outputs(out_gctx, out_truth) as (tmp_gctx, tmp_truth):
        write_gctx(tmp_gctx, lambda a, b: simulate_block(truth, codes, a, b, cfg.seed),
                   meta["id"], genes["id"], sample_meta=meta, gene_meta=genes)
        with h5_create(tmp_truth) as h5:
            for name, value in truth.items():
                h5_write(h5, name, value)
            h5_write(h5, "gene_id", genes["id"].to_numpy().astype(bytes))
            h5_write(h5, "cell_id", np.array([f"CELL{k + 1:02d}" for k in range(cfg.n_cell_lines)],
                                             dtype=bytes))
            h5_write(h5, "compound_id", np.array([f"BRD-S{k:06d}" for k in range(cfg.n_compounds)],
                                                 dtype=bytes))
            h5_write(h5, "plate_id", np.unique(meta["det_plate"]).astype(bytes))
            h5_write(h5, "time_h", TIMES_H)
            h5_write(h5, "time_factor", TIME_FACTOR)
    log(f"simulated {len(meta)} profiles x {cfg.n_genes} genes, {cfg.n_cell_lines} cell lines, "
        f"{cfg.n_compounds} compounds, {cfg.n_plates} plates")


def load_truth(path):
    with h5py.File(path, "r") as h5:
        return {k: (h5[k][()].astype(str) if h5[k].dtype.kind == "S" else h5[k][()]) for k in h5}


def codes_from_meta(truth, meta):
    """Map sample metadata (cell_id, pert_id, pert_dose, pert_time, det_plate) onto truth indices."""
    def index_of(names, values):
        lookup = {n: k for k, n in enumerate(names)}
        return np.array([lookup.get(v, -1) for v in values])
    time_index = index_of([str(float(t)) for t in truth["time_h"]], [str(float(t)) for t in meta["pert_time"]])
    return {"cell": index_of(truth["cell_id"], meta["cell_id"].astype(str)),
            "compound": index_of(truth["compound_id"], meta["pert_id"].astype(str)),
            "dose_um": meta["pert_dose"].to_numpy(dtype=float),
            "time_index": time_index,
            "plate": index_of(truth["plate_id"], meta["det_plate"].astype(str))}


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
