"""The published L1000 releases as users download them (12,328 rows, landmarks selected through the gene
table, metadata joined from the release's own tables), through the normal workflow."""

import h5py
import numpy as np
import pandas as pd
import pytest

import releases
from l1kformer.fileio import kept_blocks
from l1kformer.gctx import GctxMatrix, write_gctx

LAYOUTS = {
    "geo_level3_inf": (releases.geo_level3, {
        "gene_key": "pr_gene_id", "gene_match": ["pr_gene_id"], "gene_filter": {"pr_is_lm": [1]},
        "filters": {"pert_type": ["trt_cp", "ctl_vehicle"]}}, "rna_plate", "cell_id"),
    "lincs2020_level3_beta": (releases.lincs2020_level3, {
        "gene_key": "gene_id", "gene_match": ["gene_id"], "gene_filter": {"feature_space": ["landmark"]},
        "filters": {"qc_pass": [1], "pert_type": ["trt_cp", "ctl_vehicle", "ctl_untrt"]}}, "det_plate", "cell_iname"),
    "geo_level5_modz": (releases.geo_level5, {
        "gene_key": "pr_gene_id", "gene_match": ["pr_gene_id"], "gene_filter": {"pr_is_lm": [1]}, "level": 4,
        "filters": {"pert_type": ["trt_cp", "ctl_vehicle"]}}, "cell_id", "pert_iname"),
}


def _kept(info, filters):
    keep = np.ones(len(info), dtype=bool)
    for field, allowed in filters.items():
        keep &= info[field].astype(str).isin([str(a) for a in allowed]).to_numpy()
    return keep


@pytest.mark.workflow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_published_layouts_ingest_through_the_workflow(workflow, tmp_path, layout):
    make, data, group_by, field = LAYOUTS[layout]
    d = tmp_path / "release"
    d.mkdir()
    paths, x, ids, info = make(d)
    tables = str(paths["sample_table"])
    if layout == "geo_level3_inf":  # GSE92742 and GSE70138 together: two inst_info tables, as a list
        table = pd.read_csv(tables, sep="\t", dtype=str, keep_default_na=False)
        tables = [str(d / "part1_inst_info.txt"), str(d / "part2_inst_info.txt")]
        table.iloc[::2].to_csv(tables[0], sep="\t", index=False)
        table.iloc[1::2].to_csv(tables[1], sep="\t", index=False)
    workflow.set_config({"data": {"inputs": [str(paths["matrix"])], "n_genes": 978,
                                  "gene_table": str(paths["gene_table"]), "sample_table": tables,
                                  **data},
                         "split": {"group_by": group_by}})
    workflow.run("results/data/split.h5")
    out = workflow.path / "results" / "data"
    with h5py.File(out / "expression.h5") as h5:
        values, genes, samples = h5["expression"][()], h5["gene_id"].asstr()[()], h5["sample_id"].asstr()[()]
    table = pd.read_csv(paths["gene_table"], sep="\t", dtype=str)
    (flag, wanted), = data["gene_filter"].items()
    selected = table.loc[table[flag] == str(wanted[0]), data["gene_key"]].tolist()
    assert list(genes) == selected and len(genes) == 978  # the landmarks, in the gene table's order
    keep = _kept(info, data["filters"])
    assert 0 < keep.sum() < len(info) and list(samples) == list(info.iloc[:, 0][keep])
    row, col = {s: i for i, s in enumerate(info.iloc[:, 0])}, {g: j for j, g in enumerate(ids)}
    for j, gene in enumerate(genes):  # every value equals its source, gene by gene
        np.testing.assert_array_equal(values[:, j], x[[row[s] for s in samples], col[gene]], err_msg=gene)
    meta = pd.read_parquet(out / "samples.parquet")
    src = info[keep].reset_index(drop=True)
    assert list(meta["sample_id"]) == list(samples)
    assert meta[field].tolist() == src[field].tolist() and meta[group_by].tolist() == src[group_by].tolist()
    dose = "pert_idose" if layout == "geo_level5_modz" else "pert_dose"
    missing = (src[dose].astype(str) == "-666").to_numpy()
    assert missing.any() and meta[dose][missing].isna().all() and meta[dose][~missing].notna().all()  # -666
    with h5py.File(out / "split.h5") as h5:
        parts = {s: set(meta[group_by].iloc[h5[s][()]]) for s in ("train", "val", "test")}
    assert not (parts["train"] & parts["val"]) and not (parts["train"] & parts["test"])
    assert not (parts["val"] & parts["test"])
    log = (workflow.path / "results" / "logs" / "ingest.log").read_text()
    assert "kept 978 of its 12,328 gene rows" in log


def test_blocks_follow_the_chunks_and_skip_what_no_kept_sample_needs():
    keep = np.zeros(1000, dtype=bool)
    keep[[5, 300, 301, 999]] = True
    assert list(kept_blocks(keep, 262, 300)) == [(0, 262), (262, 524), (786, 1000)]
    assert list(kept_blocks(keep, 262, 10_000)) == [(0, 524), (786, 1000)]
    assert list(kept_blocks(np.ones(10, dtype=bool), 4, 8)) == [(0, 8), (8, 10)]
    assert list(kept_blocks(np.zeros(10, dtype=bool), 4, 8)) == []


@pytest.mark.parametrize("transposed", [False, True], ids=["samples_x_genes", "genes_x_samples"])
def test_gctx_reads_only_the_chunks_it_needs(tmp_path, transposed, monkeypatch):
    import os

    import l1kformer.gctx as gctx

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 2500)).astype(np.float32)
    write_gctx(tmp_path / "m.gctx", x, [f"s{i}" for i in range(600)], [str(g) for g in range(2500)],
               chunk_rows=262, chunk_genes=1000, transposed=transposed)
    m = GctxMatrix(tmp_path / "m.gctx")
    assert m.row_unit == 262 and m._raw
    columns = np.array([2400, 7, 999, 2001])  # in the last and first gene chunk only
    reads, spans, preadv = [], [], os.preadv
    monkeypatch.setattr(gctx.os, "preadv", lambda fd, bufs, at: reads.append(at) or preadv(fd, bufs, at))
    np.testing.assert_array_equal(m.read_rows(10, 300, columns), x[10:300][:, columns])
    assert len(reads) == 4  # 2 sample chunks x 2 gene chunks, straight from the file
    np.testing.assert_array_equal(m.read_rows(0, 600), x)
    m._raw = False  # through HDF5, as for compressed files: the runs of gene chunks that are needed
    read = m._read
    monkeypatch.setattr(m, "_read", lambda a, b, g0, g1: spans.append((g0, g1)) or read(a, b, g0, g1))
    np.testing.assert_array_equal(m.read_rows(10, 300, columns), x[10:300][:, columns])
    assert spans == [(0, 1000), (2000, 2500)]
    m.close()


def test_compressed_gctx_is_read_through_hdf5(tmp_path):
    import h5py

    x = np.random.default_rng(1).normal(size=(300, 40)).astype(np.float32)
    write_gctx(tmp_path / "m.gctx", x, [f"s{i}" for i in range(300)], [str(g) for g in range(40)], chunk_rows=64)
    with h5py.File(tmp_path / "m.gctx", "a") as f:
        del f["0/DATA/0/matrix"]
        f.create_dataset("0/DATA/0/matrix", data=x, chunks=(64, 16), compression="gzip")
    m = GctxMatrix(tmp_path / "m.gctx")
    assert not m._raw
    np.testing.assert_array_equal(m.read_rows(5, 290, [39, 0, 17]), x[5:290][:, [39, 0, 17]])
    m.close()


EXAMPLES = {"lincs2020": releases.lincs2020_level3, "gse92742": releases.geo_level3}


@pytest.mark.workflow
@pytest.mark.parametrize("example", EXAMPLES)
def test_release_examples_ingest_their_published_files(workflow, example):
    """The shipped examples, pointed at small copies of their releases under the published names."""
    import shutil

    import yaml

    from conftest import ROOT

    (workflow.path / "resources" / "examples").mkdir(parents=True)
    shutil.copy(ROOT / "resources" / "examples" / f"{example}.yaml", workflow.path / "resources" / "examples")
    config = yaml.safe_load((ROOT / "resources" / "examples" / f"{example}.yaml").read_text())
    d = workflow.path / "data" / example
    d.mkdir(parents=True)
    paths, x, ids, info = EXAMPLES[example](d)
    paths["matrix"].rename(workflow.path / config["data"]["inputs"][0])
    for key in ("gene_table", "sample_table"):
        assert (workflow.path / config["data"][key]).exists(), key
    workflow.run(f"{config['results_dir']}/data/split.h5", "--configfile", f"resources/examples/{example}.yaml")
    meta = pd.read_parquet(workflow.path / config["results_dir"] / "data" / "samples.parquet")
    keep = _kept(info, config["data"]["filters"])
    assert list(meta["sample_id"]) == list(info.iloc[:, 0][keep])
    assert config["split"]["group_by"] in meta.columns
    with h5py.File(workflow.path / config["results_dir"] / "data" / "expression.h5") as h5:
        assert h5["expression"].shape == (keep.sum(), 978)


def test_broad_missing_values_in_a_files_own_metadata_are_missing(tmp_path):
    from l1kformer.ingest import ingest

    meta = pd.DataFrame({"pert_dose": [-666.0, 10.0, 1.0], "pert_dose_unit": ["-666", "um", "um"]})
    write_gctx(tmp_path / "m.gctx", np.arange(15, dtype=np.float32).reshape(3, 5) / 3 + 4, ["a", "b", "c"],
               [f"g{k}" for k in range(5)], meta)
    ingest([tmp_path / "m.gctx"], tmp_path / "x.h5", tmp_path / "s.parquet", tmp_path / "g.tsv", gene_table=None,
           n_genes=5, gene_key="pr_gene_id", gene_match=["pr_gene_id"], orientation="auto", filters={}, level=3,
           log=lambda m: None)
    out = pd.read_parquet(tmp_path / "s.parquet")
    assert out["pert_dose"].isna().tolist() == [True, False, False]
    assert out["pert_dose_unit"].isna().tolist() == [True, False, False]


def test_a_release_file_ingests_with_the_978_row_landmark_table(tmp_path):
    """The landmark table alone (no gene_filter) selects the landmarks of a 12,328-row file: its other
    rows are not in the table and are dropped; the genes come out in the table's order."""
    from conftest import shared_file
    from l1kformer.ingest import ingest

    table = pd.read_csv(shared_file("landmark_genes_978.tsv"), sep="\t", dtype=str)
    rng = np.random.default_rng(3)
    others = [str(i) for i in rng.choice(np.arange(200000, 400000), releases.N_ROWS - 978, replace=False)]
    ids = np.array(list(table["pr_gene_id"]) + others, dtype=object)[rng.permutation(releases.N_ROWS)]
    x = np.round(rng.uniform(3, 15, (40, releases.N_ROWS)), 2).astype(np.float32)
    write_gctx(tmp_path / "level3.gctx", x, [f"P1:A{i:02d}" for i in range(40)], ids, chunk_rows=262,
               chunk_genes=1000)
    said = []
    ingest([tmp_path / "level3.gctx"], tmp_path / "x.h5", tmp_path / "s.parquet", tmp_path / "g.tsv",
           gene_table=shared_file("landmark_genes_978.tsv"), n_genes=978, gene_key="pr_gene_id",
           gene_match=["pr_gene_id", "affx_probe_id"], orientation="auto", filters={}, level=3, log=said.append)
    with h5py.File(tmp_path / "x.h5") as h5:
        genes, values = h5["gene_id"].asstr()[()], h5["expression"][()]
    assert list(genes) == list(table["pr_gene_id"])
    col = {g: j for j, g in enumerate(ids)}
    np.testing.assert_array_equal(values, x[:, [col[g] for g in genes]])
    assert any("kept 978 of its 12,328 gene rows" in line for line in said)
