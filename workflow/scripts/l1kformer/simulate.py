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
The Bayes oracles that read these parameters back (``oracle.py``) live apart from the generator, so
that editing them reruns the oracle job, not the simulation and everything after it.
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
    n_replicates: int = 1


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
    """Sample metadata: plates of one cell line and time point, DMSO wells plus compound x dose. As CMap
    runs them, each plate map (which compound and dose in which well) is run on ``n_replicates``
    replicate plates (X1, X2, ...), so that every compound x dose x cell line has replicate wells on
    plates with their own plate effect; consecutive plates share a map (the last map may have fewer)."""
    rng = np.random.default_rng([cfg.seed, 1])
    wells = [f"{chr(ord('A') + k // 24)}{k % 24 + 1:02d}" if cfg.wells_per_plate <= 384 else f"W{k:05d}"
             for k in range(cfg.wells_per_plate)]
    n_maps = -(-cfg.n_plates // cfg.n_replicates)
    map_of, replicate = np.divmod(np.arange(cfg.n_plates), cfg.n_replicates)
    map_cell = np.arange(n_maps) % cfg.n_cell_lines
    map_time = rng.integers(0, len(TIMES_H), n_maps)
    plate_cell, plate_time = map_cell[map_of], map_time[map_of]
    plate = np.repeat(np.arange(cfg.n_plates), cfg.wells_per_plate)
    well = np.tile(np.arange(cfg.wells_per_plate), cfg.n_plates)
    compound = rng.integers(0, cfg.n_compounds, (n_maps, cfg.wells_per_plate))[map_of[plate], well]
    dose = rng.integers(0, len(DOSES_UM), (n_maps, cfg.wells_per_plate))[map_of[plate], well]
    control = well < min(CONTROLS_PER_PLATE, cfg.wells_per_plate // 4)
    compound[control] = -1
    cell_names = np.array([f"CELL{k + 1:02d}" for k in range(cfg.n_cell_lines)])
    plate_names = np.array([f"SIM{map_of[k] + 1:03d}_{cell_names[plate_cell[k]]}_{int(TIMES_H[plate_time[k]])}H"
                            f"_X{replicate[k] + 1}" for k in range(cfg.n_plates)])
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


def with_names(cfg, truth, meta):
    """The truth as the truth file holds it (and :func:`load_truth` reads it): the parameters, and the
    names of the genes, cell lines, compounds and plates they are indexed by, and the time points."""
    return {**truth, "gene_id": gene_table(cfg.n_genes)["id"].to_numpy().astype(str),
            "cell_id": np.array([f"CELL{k + 1:02d}" for k in range(cfg.n_cell_lines)]),
            "compound_id": np.array([f"BRD-S{k:06d}" for k in range(cfg.n_compounds)]),
            "plate_id": np.unique(meta["det_plate"]).astype(str), "time_h": TIMES_H, "time_factor": TIME_FACTOR}


def simulate(cfg, out_gctx, out_truth, log=print):
    truth = make_truth(cfg)
    meta, codes = make_layout(cfg)
    genes = gene_table(cfg.n_genes)
    with atomic_outputs(out_gctx, out_truth) as (tmp_gctx, tmp_truth):
        write_gctx(tmp_gctx, lambda a, b: simulate_block(truth, codes, a, b, cfg.seed),
                   meta["id"], genes["id"], sample_meta=meta, gene_meta=genes)
        with h5_create(tmp_truth) as h5:
            for name, value in with_names(cfg, truth, meta).items():
                h5_write(h5, name, value.astype(bytes) if value.dtype.kind == "U" else value)
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
