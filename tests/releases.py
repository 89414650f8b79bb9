"""Small copies of the published L1000 release layouts, made in the test.

Each has the release's file names and id formats, 12,328 gene rows (978 landmarks scattered among
11,350 inferred genes, Entrez ids as strings), cmapM's chunking (262 samples x 1,000 genes, float32,
no compression), ids only inside the GCTX, and the metadata in separate tab-separated tables with the
published columns, ``-666`` for a missing value, covering more profiles than the matrix holds (one
table serves a whole release):

- GEO GSE92742 Level 3 INF: ``*_inst_info.txt`` and ``*_gene_info.txt`` (``pr_is_lm``);
- LINCS 2020 ``level3_beta``: ``instinfo_beta.txt`` (with ``qc_pass``) and ``geneinfo_beta.txt``
  (``feature_space``);
- GEO GSE92742 Level 5 MODZ (z-scores, stored genes x samples): ``*_sig_info.txt``.
"""

import numpy as np
import pandas as pd

from l1kformer.gctx import write_gctx

N_ROWS, N_LANDMARKS = 12328, 978
CELLS = ["A375", "MCF7", "PC3"]
PERTS = [("DMSO", "ctl_vehicle"), ("UnTrt", "ctl_untrt"), ("BRD-K12345678", "trt_cp"), ("BRD-A00011122", "trt_cp"),
         ("BRD-K99887766", "trt_cp"), ("BRD-K55544433", "trt_cp")]
WELLS = [f"{r}{c:02d}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25)]


def genes(seed=0):
    """Entrez ids of the 12,328 rows in file order, and the landmark flag of each row (scattered)."""
    rng = np.random.default_rng(seed)
    ids = np.array([str(i) for i in rng.choice(np.arange(1, 120000), N_ROWS, replace=False)], dtype=object)
    landmark = np.zeros(N_ROWS, dtype=bool)
    landmark[rng.choice(N_ROWS, N_LANDMARKS, replace=False)] = True
    return ids, landmark


def plates(n_plates, wells, prefix, seed=0):
    """Profiles plate by plate, as the releases store them: (plate, well, cell, pert_id, pert_type)."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_plates):
        cell = CELLS[p % len(CELLS)]
        plate = f"{prefix}{p + 1:03d}_{cell}_24H_X1_B{20 + p}"
        for w in WELLS[:wells]:
            pert_id, pert_type = PERTS[rng.integers(len(PERTS))]
            rows.append((plate, w, cell, pert_id, pert_type))
    return pd.DataFrame(rows, columns=["plate", "well", "cell", "pert_id", "pert_type"])


def _values(n, rng, z=False):
    if z:
        return np.round(rng.normal(0, 2, (n, N_ROWS)), 4).astype(np.float32)
    return np.round(np.clip(rng.normal(8, 2, (n, N_ROWS)), 0, 15), 2).astype(np.float32)


def _dose(pert_type, k):
    return "-666" if pert_type != "trt_cp" else ["0.04", "0.37", "3.33", "10"][k % 4]


def _extra_rows(table, n=5):
    """Rows of other profiles of the release that the matrix does not hold."""
    extra = table.iloc[:n].copy()
    extra.iloc[:, 0] = [f"OTHER{k:03d}_HA1E_24H_X1_B9:A{k + 1:02d}" for k in range(n)]
    return pd.concat([extra, table], ignore_index=True)


def write_tsv(path, frame):
    frame.to_csv(path, sep="\t", index=False)


def level3(d, name, n_plates, wells, prefix, seed):
    """A Level 3 matrix of plates (sample ids ``plate:well``) as cmapM writes it: genes, plates, ids,
    values, path and a random generator for the tables."""
    ids, landmark = genes(seed)
    p = plates(n_plates, wells, prefix, seed)
    samples = (p.plate + ":" + p.well).to_numpy()
    rng = np.random.default_rng(seed + 1)
    x = _values(len(p), rng)
    gctx = d / name.format(n=len(p))
    write_gctx(gctx, x, samples, ids, chunk_rows=262, chunk_genes=1000)
    return ids, landmark, p, samples, x, gctx, rng


def geo_level3(d, n_plates=4, wells=75, seed=0):
    """GSE92742 Level 3 INF: matrix, inst_info and gene_info; returns (paths, values, gene ids, table)."""
    ids, landmark, p, inst, x, gctx, _ = level3(d, "GSE92742_Broad_LINCS_Level3_INF_mlr12k_n{n}x12328.gctx",
                                                 n_plates, wells, "CPC", seed)
    info = pd.DataFrame({
        "inst_id": inst, "rna_plate": p.plate, "rna_well": p.well, "pert_id": p.pert_id,
        "pert_iname": p.pert_id.str.lower(), "pert_type": p.pert_type,
        "pert_dose": [_dose(t, k) for k, t in enumerate(p.pert_type)],
        "pert_dose_unit": ["-666" if t != "trt_cp" else "um" for t in p.pert_type],
        "pert_time": 24, "pert_time_unit": "h", "cell_id": p.cell})
    inst_info = d / "GSE92742_Broad_LINCS_inst_info.txt"
    write_tsv(inst_info, _extra_rows(info))
    order = np.argsort(ids.astype(int))  # the gene table in its own order, not the file's
    gene_info = d / "GSE92742_Broad_LINCS_gene_info.txt"
    write_tsv(gene_info, pd.DataFrame({
        "pr_gene_id": ids[order], "pr_gene_symbol": [f"SYM{i}" for i in ids[order]],
        "pr_gene_title": "a gene", "pr_is_lm": landmark[order].astype(int),
        "pr_is_bing": (landmark[order] | (order % 2 == 0)).astype(int)}))
    return {"matrix": gctx, "sample_table": inst_info, "gene_table": gene_info}, x, ids, info


def lincs2020_level3(d, n_plates=3, wells=120, seed=1):
    """LINCS 2020 level3_beta: matrix, instinfo_beta (qc_pass) and geneinfo_beta (feature_space)."""
    ids, landmark, p, sample, x, gctx, rng = level3(d, "level3_beta_trt_cp_n{n}x12328.gctx", n_plates, wells,
                                                     "ABY", seed)
    info = pd.DataFrame({
        "sample_id": sample, "det_plate": p.plate, "det_well": p.well, "rna_plate": p.plate,
        "cell_iname": p.cell, "pert_id": p.pert_id, "pert_type": p.pert_type,
        "pert_dose": [_dose(t, k) for k, t in enumerate(p.pert_type)],
        "qc_pass": (rng.random(len(p)) > 0.2).astype(int)})
    instinfo = d / "instinfo_beta.txt"
    write_tsv(instinfo, _extra_rows(info))
    space = np.where(landmark, "landmark", np.where(rng.random(N_ROWS) < 0.7, "best inferred", "inferred"))
    geneinfo = d / "geneinfo_beta.txt"
    write_tsv(geneinfo, pd.DataFrame({
        "gene_id": ids, "gene_symbol": [f"SYM{i}" for i in ids], "ensembl_id": [f"ENSG{int(i):011d}" for i in ids],
        "gene_title": "a gene", "feature_space": space}))
    return {"matrix": gctx, "sample_table": instinfo, "gene_table": geneinfo}, x, ids, info


def geo_level5(d, n=300, seed=2):
    """GSE92742 Level 5 MODZ (z-scores, stored genes x samples): matrix, sig_info and gene_info."""
    ids, landmark = genes(seed)
    rng = np.random.default_rng(seed + 1)
    p = plates(max(1, n // 100), 100, "CPC", seed).iloc[:n]
    sig = (p.plate.str.rsplit("_", n=2).str[0] + ":" + p.pert_id + ":" + p.well).to_numpy()
    x = _values(len(p), rng, z=True)
    gctx = d / f"GSE92742_Broad_LINCS_Level5_COMPZ.MODZ_n{len(p)}x{N_ROWS}.gctx"
    write_gctx(gctx, x, sig, ids, chunk_rows=262, chunk_genes=1000, transposed=True)
    info = pd.DataFrame({
        "sig_id": sig, "pert_id": p.pert_id, "pert_iname": p.pert_id.str.lower(), "pert_type": p.pert_type,
        "cell_id": p.cell, "pert_idose": ["-666" if t != "trt_cp" else "10 uM" for t in p.pert_type],
        "pert_itime": "24 h", "distil_id": [f"{s}|{s}_2" for s in sig]})
    sig_info = d / "GSE92742_Broad_LINCS_sig_info.txt"
    write_tsv(sig_info, _extra_rows(info))
    gene_info = d / "GSE92742_Broad_LINCS_gene_info.txt"
    write_tsv(gene_info, pd.DataFrame({
        "pr_gene_id": ids, "pr_gene_symbol": [f"SYM{i}" for i in ids], "pr_gene_title": "a gene",
        "pr_is_lm": landmark.astype(int), "pr_is_bing": 1}))
    return {"matrix": gctx, "sample_table": sig_info, "gene_table": gene_info}, x, ids, info
