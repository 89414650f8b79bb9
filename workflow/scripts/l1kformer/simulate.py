"""simulate: a synthetic L1000-like Level-3 data set whose generating parameters are known.

Model (log2 units), for profile i of cell line c, compound p at dose d and time t, on plate q:

    x_i = mu + cell[c] + resp_p(d) * time[t] * signature[p] + plate[q] + L_c f_i + e_i,
    f_i ~ N(0, I_r),  e_i ~ N(0, diag(noise_sd^2)),  resp_p(d) = d / (d + ec50[p]),

capped at 15 and rounded to 3 decimals as real Level 3 is. L_c (genes x r) gives each cell line its
own low-rank co-expression. Vehicle controls (DMSO) have no signature. Because the truth is saved,
:func:`oracle_predict` gives the Bayes-optimal (conditional Gaussian mean) prediction of masked values.
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
    seed: int


def make_truth(cfg):
    rng = np.random.default_rng([cfg.seed, 0])
    g, c, p, r = cfg.n_genes, cfg.n_cell_lines, cfg.n_compounds, cfg.n_factors
    shared = rng.normal(0, 0.35, (g, r))
    truth = {
        "mu": np.clip(rng.normal(8.5, 1.8, g), 5.0, 13.0),
        "noise_sd": rng.uniform(0.15, 0.5, g),
        "cell_offset": rng.normal(0, 0.5, (c, g)),
        "loadings": np.stack([0.7 * shared + 0.7 * rng.normal(0, 0.35, (g, r)) for _ in range(c)]),
        "signature": rng.normal(0, 1.2, (p, g)) * (rng.random((p, g)) < 0.15),
        "ec50": np.exp(rng.uniform(np.log(0.1), np.log(3.0), p)),
        "plate_offset": rng.normal(0, 0.15, (cfg.n_plates, g)),
    }
    return truth


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
    """Noise-free mean of profiles ``rows`` (before the cell-line factors and the noise)."""
    comp = codes["compound"][rows]
    treated = comp >= 0
    resp = np.zeros(len(rows))
    dose = codes["dose_um"][rows]
    resp[treated] = dose[treated] / (dose[treated] + truth["ec50"][comp[treated]])
    resp *= TIME_FACTOR[codes["time_index"][rows]]
    sig = np.where(treated[:, None], truth["signature"][np.maximum(comp, 0)], 0.0)
    return (truth["mu"] + truth["cell_offset"][codes["cell"][rows]] + resp[:, None] * sig
            + truth["plate_offset"][codes["plate"][rows]])


def simulate_block(truth, codes, start, stop, seed):
    """Profiles ``start:stop`` (samples x genes, float32); deterministic per block of BLOCK_ROWS."""
    out = []
    for b0 in range(start - start % BLOCK_ROWS, stop, BLOCK_ROWS):
        rows = np.arange(b0, min(b0 + BLOCK_ROWS, len(codes["plate"])))
        rng = np.random.default_rng([seed, 2, b0 // BLOCK_ROWS])
        load = truth["loadings"][codes["cell"][rows]]  # n x g x r
        f = rng.normal(size=(len(rows), load.shape[2]))
        x = expected_values(truth, codes, rows) + np.einsum("ngr,nr->ng", load, f)
        x += rng.normal(size=x.shape) * truth["noise_sd"]
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
    """Bayes-optimal prediction of the masked values: the conditional Gaussian mean.

    ``values``: profiles x genes (the masked entries are ignored); ``positions``: profiles x k gene
    indices. With Sigma = L L^T + D, Woodbury reduces Sigma_MO Sigma_OO^-1 r_O to
    L_M (I + L_O^T D_O^-1 L_O)^-1 L_O^T D_O^-1 r_O: one r x r solve per profile.
    """
    n, g = values.shape
    rows = np.arange(n)
    mean = expected_values(truth, codes, rows)
    resid = values - mean
    d_inv = 1.0 / truth["noise_sd"] ** 2
    out = np.empty(positions.shape, dtype=np.float64)
    observed = np.ones(g, dtype=bool)
    for i in range(n):
        load = truth["loadings"][codes["cell"][i]]
        observed[:] = True
        observed[positions[i]] = False
        lo = load[observed] * d_inv[observed, None]
        k = np.eye(load.shape[1]) + load[observed].T @ lo
        u = lo.T @ resid[i, observed]
        out[i] = mean[i, positions[i]] + load[positions[i]] @ np.linalg.solve(k, u)
    return out
