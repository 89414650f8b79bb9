"""Every input format, detected from content; real L1000 files from ../shared (skipped if absent)."""

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import ingest_settings, shared_file
from l1kformer.errors import InputError
from l1kformer.gctx import write_gctx
from l1kformer.ingest import ingest
from l1kformer.readers import detect_format, open_matrix

GENES = ["7849", "780", "2978", "10", "5720"]
SAMPLES = ["p1:A01", "p1:A02", "p1:A03"]
VALUES = np.array([[5.5, 3.25, 15.0, 7.0, 2.5], [6.0, 4.0, 8.5, 9.0, 10.0], [3.0, 3.0, 3.0, 12.0, 11.5]],
                  dtype=np.float32)  # samples x genes


def write_all_formats(d):
    files = {}
    write_gctx(d / "m.gctx", VALUES, SAMPLES, GENES,
               sample_meta=pd.DataFrame({"cell_id": ["A375"] * 3, "pert_dose": [0.0, 1.0, 10.0]}))
    files["gctx"] = d / "m.gctx"
    files["gctx_as_txt"] = d / "m.txt"
    files["gctx_as_txt"].write_bytes(files["gctx"].read_bytes())
    body = "\n".join(f"{g}\tdesc {g}\t" + "\t".join(str(v) for v in VALUES[:, k]) for k, g in enumerate(GENES))
    (d / "m12.gct").write_text(f"#1.2\n5\t3\nName\tDescription\t" + "\t".join(SAMPLES) + f"\n{body}\n")
    files["gct12"] = d / "m12.gct"
    body = "\n".join(f"{g}\tSYM{k}\t" + "\t".join(str(v) for v in VALUES[:, k]) for k, g in enumerate(GENES))
    (d / "m13.gct").write_text("#1.3\n5\t3\t1\t1\nid\tsymbol\t" + "\t".join(SAMPLES)
                               + "\ncell_id\tna\tA375\tA375\tMCF7\n" + body + "\n")
    files["gct13"] = d / "m13.gct"
    frame = pd.DataFrame(VALUES, index=SAMPLES, columns=GENES)
    frame.to_csv(d / "sxg.csv")
    files["csv_samples_x_genes"] = d / "sxg.csv"
    frame.T.to_csv(d / "gxs.tsv", sep="\t")
    files["tsv_genes_x_samples"] = d / "gxs.tsv"
    frame.T.rename_axis("gene").reset_index().to_parquet(d / "gxs.parquet")
    files["parquet_genes_x_samples"] = d / "gxs.parquet"
    frame.to_parquet(d / "sxg.parquet")
    files["parquet_samples_x_genes"] = d / "sxg.parquet"
    anndata.AnnData(VALUES, obs=pd.DataFrame({"cell_id": ["A375"] * 3}, index=SAMPLES),
                    var=pd.DataFrame(index=GENES)).write_h5ad(d / "m.h5ad")
    files["h5ad"] = d / "m.h5ad"
    return files


def test_every_format_reads_the_same_matrix(tmp_path):
    files = write_all_formats(tmp_path)
    assert detect_format(files["gctx_as_txt"]) == "gctx"
    assert detect_format(files["gct12"]) == "gct"
    for name, path in files.items():
        m = open_matrix(path, "auto", lambda ids: set(ids) == set(GENES))
        assert list(m.sample_ids) == SAMPLES, name
        assert list(m.gene_ids) == GENES, name
        np.testing.assert_allclose(m.read_rows(0, 3), VALUES, err_msg=name)
        np.testing.assert_allclose(m.read_rows(1, 2), VALUES[1:2], err_msg=name)
        m.close()


def test_gct13_metadata(tmp_path):
    m = open_matrix(write_all_formats(tmp_path)["gct13"])
    assert list(m.sample_meta["cell_id"]) == ["A375", "A375", "MCF7"]
    assert list(m.gene_meta["symbol"]) == [f"SYM{k}" for k in range(5)]


def test_ambiguous_orientation_is_an_error(tmp_path):
    pd.DataFrame(np.ones((5, 5)), index=[f"s{k}" for k in range(5)], columns=GENES).to_csv(tmp_path / "sq.csv")
    with pytest.raises(InputError, match="cannot tell"):
        open_matrix(tmp_path / "sq.csv", "auto", lambda ids: len(ids) == 5)


def test_several_files_aligned_by_gene_id(tmp_path):
    files = write_all_formats(tmp_path)
    shuffled = pd.DataFrame(VALUES[:, ::-1], index=["q:1", "q:2", "q:3"], columns=GENES[::-1])
    shuffled.to_csv(tmp_path / "other.csv")
    out = tmp_path / "out"
    n = ingest([files["gctx"], tmp_path / "other.csv"], out / "x.h5", out / "s.parquet", out / "g.tsv",
               log=lambda m: None, **ingest_settings(n_genes=5))
    assert n == 6
    with h5py.File(out / "x.h5") as h5:
        np.testing.assert_allclose(h5["expression"][()], np.vstack([VALUES, VALUES]))
        assert [g.decode() for g in h5["gene_id"][()]] == GENES
    meta = pd.read_parquet(out / "s.parquet")
    assert list(meta["sample_id"]) == SAMPLES + ["q:1", "q:2", "q:3"]
    assert meta["source_file"].str.endswith("other.csv").sum() == 3


def test_filters_on_metadata(tmp_path):
    files = write_all_formats(tmp_path)
    out = tmp_path / "out"
    n = ingest([files["gctx"]], out / "x.h5", out / "s.parquet", out / "g.tsv", log=lambda m: None,
               **ingest_settings(n_genes=5, filters={"pert_dose": [1, 10]}))
    assert n == 2
    assert list(pd.read_parquet(out / "s.parquet")["pert_dose"]) == [1.0, 10.0]


# --- real LINCS files -------------------------------------------------------------------------------

REAL = ["LJP005_A375_24H_level3_n377x978.gct", "CPC006_A375_6H_level3_n371x978.gctx",
        "LJP005_A375_24H_level4_n377x978_gct_text_named.gctx"]


def test_real_files_ingest_to_the_same_gene_order(tmp_path):
    table = shared_file("landmark_genes_978.tsv")
    orders, values = [], {}
    for name in REAL:
        out = tmp_path / name
        ingest([shared_file(name)], out / "x.h5", out / "s.parquet", out / "g.tsv", log=lambda m: None,
               **ingest_settings(n_genes=978, gene_table=table))
        with h5py.File(out / "x.h5") as h5:
            orders.append(list(h5["gene_id"][()]))
            values[name] = h5["expression"][()]
    assert orders[0] == orders[1] == orders[2]
    assert len(orders[0]) == 978
    for name in REAL[:2]:  # the Level-3 files: log2 values within [2, 15] (15.0001 as stored)
        x = values[name]
        assert x.shape[1] == 978
        assert x.min() >= 2.0 and x.max() <= 15.0 + 1e-3, (name, x.min(), x.max())
    assert values[REAL[2]].min() < 0  # Level 4 z-scores: same plate, other level


def test_real_text_named_gctx_is_detected_as_gct():
    assert detect_format(shared_file(REAL[2])) == "gct"


def test_real_plates_pool_by_entrez_id(tmp_path):
    table = shared_file("landmark_genes_978.tsv")
    out = tmp_path / "out"
    n = ingest([shared_file(REAL[0]), shared_file(REAL[1])], out / "x.h5", out / "s.parquet",
               out / "g.tsv", log=lambda m: None, **ingest_settings(n_genes=978, gene_table=table))
    assert n == 748
    genes = pd.read_csv(out / "g.tsv", sep="\t", dtype=str)
    assert genes["gene_id"].iloc[0] == "780"  # the table's order (DDR1 first)
    # the same probe must carry the same values whichever file order the genes came in
    m = open_matrix(shared_file(REAL[1]))
    probe = m.gene_ids[0]
    entrez = table_entrez(table, probe)
    with h5py.File(out / "x.h5") as h5:
        col = list(genes["gene_id"]).index(entrez)
        np.testing.assert_allclose(h5["expression"][377:, col], m.read_rows(0, m.n_samples)[:, 0])


def table_entrez(table, probe):
    t = pd.read_csv(table, sep="\t", dtype=str)
    return t.loc[t["affx_probe_id"] == probe, "pr_gene_id"].iloc[0]


# --- files without sample metadata, and ids beyond ASCII -------------------------------------------

def _ingested(paths, out, **settings):
    n = ingest(paths, out / "x.h5", out / "s.parquet", out / "g.tsv", log=lambda m: None,
               **ingest_settings(n_genes=5, **settings))
    with h5py.File(out / "x.h5") as h5:
        values = h5["expression"][()]
        ids = [s.decode("utf-8") for s in h5["sample_id"][()]]
    return n, values, ids, pd.read_parquet(out / "s.parquet")


def test_files_without_sample_metadata_ingest(tmp_path):
    body = "\n".join(f"{g}\tdesc\t" + "\t".join(str(v) for v in VALUES[:, k]) for k, g in enumerate(GENES))
    (tmp_path / "v12.gct").write_text("#1.2\n5\t3\nName\tDescription\t" + "\t".join(SAMPLES) + f"\n{body}\n")
    (tmp_path / "v13.gct").write_text("#1.3\n5\t3\t1\t0\nid\tsymbol\t" + "\t".join(SAMPLES) + f"\n{body}\n")
    write_gctx(tmp_path / "ids.gctx", VALUES, SAMPLES, GENES)  # only /0/META/COL/id
    for name in ("v12.gct", "v13.gct", "ids.gctx"):
        n, values, ids, meta = _ingested([tmp_path / name], tmp_path / name.replace(".", "_"))
        assert n == 3 and ids == SAMPLES, name
        np.testing.assert_allclose(values, VALUES, err_msg=name)
        assert list(meta.columns) == ["sample_id", "source_file"], name


def test_utf8_and_latin1_sample_ids_ingest(tmp_path):
    utf8 = ["Zellkultur:Ä1", "細胞:2", "p1:A03"]
    write_gctx(tmp_path / "utf8.gctx", VALUES, utf8, GENES)
    write_gctx(tmp_path / "latin1.gctx", VALUES, ["a", "b", "c"], GENES)
    with h5py.File(tmp_path / "latin1.gctx", "r+") as f:  # an older CMap file: ids in Latin-1 bytes
        del f["0/META/COL/id"]
        f["0/META/COL/id"] = np.array(["Ménard:1".encode("latin-1"), b"x:2", "Øst:3".encode("latin-1")])
    n, values, ids, meta = _ingested([tmp_path / "utf8.gctx", tmp_path / "latin1.gctx"], tmp_path / "out")
    assert n == 6 and ids == utf8 + ["Ménard:1", "x:2", "Øst:3"]
    assert list(meta["sample_id"]) == ids
    np.testing.assert_allclose(values, np.vstack([VALUES, VALUES]))


def test_compressed_text_ingests(tmp_path):
    import bz2
    import gzip

    files = write_all_formats(tmp_path)
    (tmp_path / "m.gct.gz").write_bytes(gzip.compress(files["gct13"].read_bytes()))
    (tmp_path / "m.csv.bz2").write_bytes(bz2.compress(files["csv_samples_x_genes"].read_bytes()))
    for name in ("m.gct.gz", "m.csv.bz2"):
        n, values, ids, _ = _ingested([tmp_path / name], tmp_path / name.replace(".", "_"))
        assert n == 3 and ids == SAMPLES, name
        np.testing.assert_allclose(values, VALUES, err_msg=name)


def _dressed(text, style):
    """``text`` as Excel or a Windows tool saves it: with a UTF-8 byte-order mark, CRLF line ends, or both."""
    if style in ("crlf", "both"):
        text = text.replace("\n", "\r\n")
    return (b"\xef\xbb\xbf" if style in ("bom", "both") else b"") + text.encode()


@pytest.mark.parametrize("style", ["bom", "crlf", "both"])
def test_text_inputs_with_a_byte_order_mark_or_crlf_ingest_as_the_clean_file(tmp_path, style):
    """GCT, CSV and TSV matrices (gzip-compressed too), a gene table and a sample table, each saved with a
    BOM, with CRLF or with both: the same ingest as the clean files, and a key column that is not found
    is listed with repr(), so that an invisible character shows."""
    import gzip

    files = write_all_formats(tmp_path)
    gene_table = "probe\tpr_gene_id\n" + "".join(f"P{g}\t{g}\n" for g in GENES)
    sample_table = "inst_id\tpert_iname\n" + "".join(f"{s}\tdrug{k}\n" for k, s in enumerate(SAMPLES))
    (tmp_path / "genes.tsv").write_text(gene_table)
    (tmp_path / "samples.txt").write_text(sample_table)
    (tmp_path / f"genes_{style}.tsv").write_bytes(_dressed(gene_table, style))
    (tmp_path / f"samples_{style}.txt").write_bytes(_dressed(sample_table, style))
    settings = {"gene_table": tmp_path / "genes.tsv", "gene_match": ["pr_gene_id"], "sample_key": "inst_id"}
    for name in ("gct13", "csv_samples_x_genes", "tsv_genes_x_samples"):
        clean = _ingested([files[name]], tmp_path / f"{name}_clean", sample_table=str(tmp_path / "samples.txt"),
                          **settings)
        dressed = tmp_path / f"{name}_{style}{files[name].suffix}"
        dressed.write_bytes(_dressed(files[name].read_text(), style))
        zipped = tmp_path / f"{name}_{style}.gz"
        zipped.write_bytes(gzip.compress(dressed.read_bytes()))
        for path in (dressed, zipped):
            got = _ingested([path], tmp_path / f"{path.name}_out", sample_table=str(tmp_path / f"samples_{style}.txt"),
                            **{**settings, "gene_table": tmp_path / f"genes_{style}.tsv"})
            assert got[0] == clean[0] and got[2] == clean[2], path.name
            np.testing.assert_array_equal(got[1], clean[1], err_msg=path.name)
            assert list(got[3]["pert_iname"]) == list(clean[3]["pert_iname"]) == ["drug0", "drug1", "drug2"]
    (tmp_path / "bad_genes.tsv").write_bytes(_dressed(gene_table.replace("pr_gene_id", "pr_gene_id\u200b"), style))
    with pytest.raises(InputError, match=r"no key column 'pr_gene_id'; its columns: 'probe', 'pr_gene_id\\u200b'"):
        _ingested([files["gct13"]], tmp_path / "bad", **{**settings, "gene_table": tmp_path / "bad_genes.tsv"})


@pytest.mark.parametrize("name,content,problem", [
    ("data.rda", b"RDX2\nX\n\x00\x00\x00\x02", "is R data (.rda / .RData), which is not supported; supported: GCTX"),
    ("data.zip", b"PK\x03\x04\x14\x00\x00\x00", "is a ZIP archive (unpack it first)"),
    ("v14.gct", b"#1.4\n5\t3\n", "GCT version line '#1.4' is not #1.2 or #1.3"),
    ("blob.bin", b"\x00\x01\x02garbage", "is a binary file of no supported format"),
])
def test_unsupported_files_are_named(tmp_path, name, content, problem):
    import gzip

    for path, data in ((tmp_path / name, content), (tmp_path / f"{name}.gz", gzip.compress(content))):
        path.write_bytes(data)
        with pytest.raises(InputError) as exc:
            open_matrix(path)
        assert str(exc.value) == f"{path}: {problem}" or problem in str(exc.value), str(exc.value)


def test_a_directory_is_named_as_such(tmp_path):
    with pytest.raises(InputError, match="is a directory, not a matrix file"):
        open_matrix(tmp_path)


def test_gene_symbols_get_a_hint(tmp_path):
    symbols = ["DDR1", "PAX8", "GUCA1A", "UBE2L3", "CYP1A1"]
    (tmp_path / "genes.tsv").write_text("pr_gene_id\tpr_gene_symbol\taffx_probe_id\n" + "".join(
        f"{g}\t{s}\tp{k}\n" for k, (g, s) in enumerate(zip(GENES, symbols))))
    pd.DataFrame(VALUES, index=SAMPLES, columns=symbols).to_csv(tmp_path / "symbols.csv")
    with pytest.raises(InputError, match=r"look like gene symbols \(e.g. DDR1\): add pr_gene_symbol to data.gene_match"):
        _ingested([tmp_path / "symbols.csv"], tmp_path / "out", gene_table=str(tmp_path / "genes.tsv"),
                  orientation="samples_x_genes")


def test_a_compressed_binary_matrix_is_named(tmp_path):
    import gzip

    files = write_all_formats(tmp_path)
    (tmp_path / "m.gctx.gz").write_bytes(gzip.compress(files["gctx"].read_bytes()))
    with pytest.raises(InputError, match="is a gzip-compressed binary file: decompress it first"):
        open_matrix(tmp_path / "m.gctx.gz")


def test_a_landmark_matrix_under_the_demo_gene_count_says_what_to_set():
    from l1kformer.errors import InputError
    from l1kformer.genes import check_gene_ids

    with pytest.raises(InputError, match=r"has 978 genes, expected 128 \(data.n_genes\); L1000 landmark "
                                         r"matrices need data.n_genes: 978"):
        check_gene_ids("plate.gctx", [str(i) for i in range(978)], 128)
    with pytest.raises(InputError, match=r"has 12328 genes, expected 978 \(data.n_genes\); to keep the landmarks of "
                                         r"a release file, set data.gene_table and data.gene_filter"):
        check_gene_ids("level3.gctx", [str(i) for i in range(12328)], 978)
