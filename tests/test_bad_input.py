"""Bad input: one-line error naming the file (or key) and the problem, non-zero exit, no output."""

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from l1kformer.gctx import write_gctx

GENES = [f"g{k}" for k in range(5)]


def csv_text(rows, genes=GENES):
    lines = ["sample," + ",".join(genes)]
    lines += [f"s{i}," + ",".join(str(v) for v in row) for i, row in enumerate(rows)]
    return "\n".join(lines) + "\n"


def good_rows(n=4):
    return [[round(5 + 0.1 * i + j, 2) for j in range(len(GENES))] for i in range(n)]


def small_gctx(path, n=6, sample_ids=None):
    meta = pd.DataFrame({"pert_type": ["trt_cp"] * n, "cell_id": ["A375"] * n})
    ids = sample_ids or [f"s{i}" for i in range(n)]
    write_gctx(path, np.arange(n * 5, dtype=np.float32).reshape(n, 5) / 7 + 3, ids, GENES, meta)


def case_nan(d):
    rows = good_rows(); rows[2][3] = "NaN"
    (d / "nan.csv").write_text(csv_text(rows)); return ["nan.csv"], {}, ("nan.csv", "NaN")


def case_inf(d):
    rows = good_rows(); rows[1][0] = "inf"
    (d / "inf.csv").write_text(csv_text(rows)); return ["inf.csv"], {}, ("inf.csv", "infinite")


def case_gene_count(d):
    (d / "four.csv").write_text(csv_text([r[:4] for r in good_rows()], GENES[:4]))
    return ["four.csv"], {"orientation": "samples_x_genes"}, ("four.csv", "has 4 genes, expected 5")


def case_duplicate_genes(d):
    (d / "dupgene.csv").write_text(csv_text(good_rows(), GENES[:4] + ["g0"]))
    return ["dupgene.csv"], {"orientation": "samples_x_genes"}, ("dupgene.csv", "duplicate gene ids: g0")


def case_duplicate_samples(d):
    small_gctx(d / "plate1.gctx"); small_gctx(d / "plate2.gctx", sample_ids=[f"s{i + 5}" for i in range(6)])
    return ["plate1.gctx", "plate2.gctx"], {}, ("plate2.gctx", "sample ids already in an earlier file")


def case_non_numeric(d):
    rows = good_rows(); rows[0][1] = "abc"
    (d / "text.csv").write_text(csv_text(rows)); return ["text.csv"], {}, ("text.csv", "non-numeric cell 'abc'")


def case_empty(d):
    (d / "empty.gct").write_text(""); return ["empty.gct"], {}, ("empty.gct", "file is empty")


def case_truncated_hdf5(d):
    small_gctx(d / "full.gctx", n=400)
    data = (d / "full.gctx").read_bytes()
    (d / "cut.gctx").write_bytes(data[: len(data) // 2])
    return ["cut.gctx"], {}, ("cut.gctx", "truncated or corrupt")


def gct_text(version="#1.2", declared_genes=len(GENES)):
    """A GCT of the 5 genes x 3 samples, with the version line and gene count given."""
    body = "\n".join(f"{g}\tdesc\t" + "\t".join(str(5.0 + k) for k in range(3)) for g in GENES)
    return f"{version}\n{declared_genes}\t3\nName\tDescription\ta\tb\tc\n{body}\n"


def case_gct_dims(d):
    (d / "dims.gct").write_text(gct_text(declared_genes=6))
    return ["dims.gct"], {}, ("dims.gct", "declares 6 genes")


def case_unknown_gene(d):
    (d / "genes.tsv").write_text("pr_gene_id\taffx_probe_id\n" + "".join(f"{k}\tp{k}\n" for k in range(5)))
    (d / "probes.csv").write_text(csv_text(good_rows(), ["p0", "p1", "p2", "p3", "p99"]))
    return ["probes.csv"], {"gene_table": str(d / "genes.tsv"), "orientation": "samples_x_genes"}, \
        ("probes.csv", "lacks 1 of the 5 genes selected from the gene table")


def landmark_table(d):
    """A gene table of 8 genes of which the 5 of the matrices are the landmarks (pr_is_lm 1)."""
    (d / "gene_info.txt").write_text("pr_gene_id\tpr_is_lm\n" + "".join(
        f"g{k}\t{int(k < 5)}\n" for k in range(8)))
    return {"gene_table": str(d / "gene_info.txt"), "gene_match": ["pr_gene_id"]}


def case_gene_filter_field(d):
    small_gctx(d / "plate.gctx")
    return ["plate.gctx"], {**landmark_table(d), "gene_filter": {"is_landmark": [1]}}, \
        ("gene_info.txt", "gene table has no field 'is_landmark' (data.gene_filter)")


def case_gene_filter_nothing(d):
    small_gctx(d / "plate.gctx")
    return ["plate.gctx"], {**landmark_table(d), "gene_filter": {"pr_is_lm": [2]}}, \
        ("gene_info.txt", "selects no gene")


def sample_table(d, rows, columns=("inst_id", "cell_id")):
    (d / "inst_info.txt").write_text("\t".join(columns) + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    return {"sample_table": str(d / "inst_info.txt")}


def case_sample_table_misses_ids(d):
    small_gctx(d / "plate.gctx")
    table = sample_table(d, [(f"s{i}", "A375") for i in range(5)])
    return ["plate.gctx"], {**table, "sample_key": "inst_id"}, \
        ("plate.gctx", "1 of its 6 sample ids are not in the sample table")


def case_sample_table_duplicate_keys(d):
    small_gctx(d / "plate.gctx")
    table = sample_table(d, [(f"s{i}", "A375") for i in [0, 1, 2, 2, 3, 4, 5]])
    return ["plate.gctx"], table, ("inst_info.txt", "duplicate keys: 'inst_id' repeats for 1 of the matrices' sample ids (e.g. 's2')")


def case_sample_table_no_key(d):
    small_gctx(d / "plate.gctx")
    table = sample_table(d, [(f"s{i}", "A375") for i in range(5)])
    return ["plate.gctx"], table, ("inst_info.txt", "no column of the sample table holds every matrix sample id")


def case_sample_table_two_keys(d):
    small_gctx(d / "plate.gctx")
    table = sample_table(d, [(f"s{i}", f"s{i}") for i in range(6)], columns=("inst_id", "distil_id"))
    return ["plate.gctx"], table, ("inst_info.txt", "columns 'distil_id' and 'inst_id' of the sample table both")


def case_sample_table_conflict(d):
    small_gctx(d / "plate.gctx")
    table = sample_table(d, [(f"s{i}", "MCF7" if i == 3 else "A375") for i in range(6)])
    return ["plate.gctx"], table, ("plate.gctx", "sample field 'cell_id' differs from the sample table")


def case_filter_nothing(d):
    small_gctx(d / "plate.gctx")
    return ["plate.gctx"], {"filters": {"pert_type": ["ctl_vehicle"]}}, ("data.filters", "selects no sample")


def case_extreme_value(d):
    rows = good_rows(40); rows[7][2] = 1e30
    (d / "extreme.csv").write_text(csv_text(rows))
    return ["extreme.csv"], {}, ("extreme.csv", "values far outside the data's own range")


def case_unsupported_format(d):
    (d / "plates.rda").write_bytes(b"RDX3\nX\n\x00\x00\x00\x02\x00\x04\x03")
    return ["plates.rda"], {}, ("plates.rda", "R data (.rda / .RData), which is not supported; supported: GCTX")


def case_gct_version(d):
    (d / "v19.gct").write_text(gct_text(version="#1.9"))
    return ["v19.gct"], {}, ("v19.gct", "GCT version line '#1.9' is not #1.2 or #1.3")


def case_directory(d):
    (d / "plates").mkdir()
    return ["plates"], {}, ("plates", "is a directory, not a matrix file")


CASES = [case_nan, case_inf, case_gene_count, case_duplicate_genes, case_duplicate_samples,
         case_non_numeric, case_empty, case_truncated_hdf5, case_gct_dims, case_unknown_gene,
         case_filter_nothing, case_extreme_value, case_unsupported_format, case_gct_version, case_directory,
         case_gene_filter_field, case_gene_filter_nothing, case_sample_table_misses_ids,
         case_sample_table_duplicate_keys, case_sample_table_no_key, case_sample_table_two_keys,
         case_sample_table_conflict]


def error_lines(proc):
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("l1kformer error:")]


@pytest.mark.workflow
@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_bad_input_fails_cleanly(workflow, tmp_path, case):
    d = tmp_path / "inputs"
    d.mkdir()
    files, data_cfg, (where, problem) = case(d)
    workflow.set_config({"data": {"inputs": [str(d / f) for f in files], "n_genes": 5, **data_cfg}})
    proc = workflow.run("results/data/expression.h5", check=False)
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert lines, proc.stdout + proc.stderr
    assert where in lines[0] and problem in lines[0], lines[0]
    data_dir = workflow.path / "results" / "data"
    assert not data_dir.exists() or not any(data_dir.iterdir()), list(data_dir.iterdir())


CONFIG_CASES = [
    ("ratio: 0.15", "ration: 0.15", "config key mask", "'ration' was unexpected"),
    ("ratio: 0.15", "ratio: 1e-3", "config key mask.ratio", "'1e-3' is not of type 'number'"),
    ("  n_heads: 4", "  n_heads: 3", "config key runs.expr_small", "d_model 64 is not divisible by n_heads 3"),
    ("mask_random: 0.1", "mask_random: 0.3", "config key runs.expr_small", "mask_replace + mask_random = 1.1"),
    ("  train: 0.8", "  train: 0.7", "config key split", "train + val + test must be 1, got 0.9"),
    ("  train: 0.8\n  val: 0.1", "  train: 0.9\n  val: 0.0", "config key split.val", "must be positive"),
    ("  group_by: null", "  group_by: cell_id", "config key downstream.tasks.cell_line.field",
     "cell_id is the split's group_by"),
    ("    max_profiles: 10000   # a seeded pick of whole groups above this\n", "",
     "config key downstream.retrieval", "'max_profiles' is a required property"),
    ("    by: pert_dose", "    by: det_plate", "config key downstream.retrieval.by",
     "'det_plate' must be one of fields or within"),
]


@pytest.mark.workflow
@pytest.mark.parametrize("old,new,where,problem", CONFIG_CASES,
                         ids=["misspelled_key", "string_number", "heads", "bert_split", "fractions", "no_val",
                              "task_on_group_by", "partial_retrieval", "retrieval_by"])
def test_bad_config_fails_before_any_job(workflow, old, new, where, problem):
    text = (ROOT / "config.yaml").read_text()
    assert old in text
    workflow.write_config_text(text.replace(old, new))
    proc = workflow.run(check=False)
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert len(lines) == 1 and where in lines[0] and problem in lines[0], proc.stderr
    assert not (workflow.path / "results").exists()
    assert not (workflow.path / "resources" / "simulated").exists()


SPLIT_CASES = [
    (1, {}, "the train set would get 1 of 1 profiles"),
    (4, {}, "the val set would get 0 of 4 profiles"),
    (40, {"group_by": "plate_name"}, "'plate_name' is not a sample field"),
]


@pytest.mark.workflow
@pytest.mark.parametrize("n,split,problem", SPLIT_CASES, ids=["one_profile", "four_profiles", "group_field"])
def test_unusable_split_fails_at_the_split(workflow, tmp_path, n, split, problem):
    (tmp_path / "small.csv").write_text(csv_text(good_rows(n)))
    workflow.set_config({"data": {"inputs": [str(tmp_path / "small.csv")], "n_genes": 5}, "split": split})
    proc = workflow.run(check=False)
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert lines and problem in lines[0], proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (workflow.path / "results/data/split.h5").exists()


@pytest.mark.workflow
def test_diverging_training_fails_at_the_train_step_with_one_line(workflow):
    """A run whose loss overflows (here an absurd learning rate) stops with one line naming the run, and
    leaves no model file for embed and evaluate to trip over."""
    workflow.set_config({"runs": {"expr_bad": {"mode": "expression", "lr": 1.0e+30, "epochs": 2}}})
    proc = workflow.run("results/runs/expr_bad/model.pt", check=False)
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert lines and "runs.expr_bad: epoch 1:" in lines[0] and "not finite" in lines[0], proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    run_dir = workflow.path / "results" / "runs" / "expr_bad"
    assert not run_dir.exists() or not any(run_dir.iterdir()), list(run_dir.iterdir())


@pytest.mark.workflow
def test_constant_data_fails_at_the_baselines_with_one_line(workflow, tmp_path):
    (tmp_path / "flat.csv").write_text(csv_text([[7.0] * len(GENES) for _ in range(40)]))
    workflow.set_config({"data": {"inputs": [str(tmp_path / "flat.csv")], "n_genes": 5}})
    proc = workflow.run("results/baselines/expression.json", check=False)
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert lines and "expression.h5" in lines[0] and "no variance on any gene" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (workflow.path / "results" / "baselines" / "expression.json").exists()


def test_non_finite_loss_stops_training_with_one_line(tmp_path):
    """One extreme validation value (as ingest would refuse) makes the val loss overflow: training
    stops naming the run and the epoch, and leaves no checkpoint."""
    import h5py
    import torch

    from l1kformer.errors import InputError
    from l1kformer.train import train
    from test_train import make_tiny_data, settings

    d, split, mask = make_tiny_data(tmp_path)
    with h5py.File(d / "expression.h5", "r+") as h5:
        x = h5["expression"][()]
        x[mask["val"][0][0], mask["val"][1][0][0]] = 3e38
        h5["expression"][...] = x
    torch.set_num_threads(1)
    with pytest.raises(InputError, match=r"runs.expr_bad: epoch 1: val_loss not finite"):
        train(settings("expression", epochs=2), d / "expression.h5", split, mask["val"], tmp_path / "ckpt.pt",
              log=lambda m: None, progress=False, name="expr_bad")
    assert not (tmp_path / "ckpt.pt").exists()


def test_value_scale_warnings():
    from l1kformer.ingest import check_level

    said = []
    check_level("auto", (28.0, 900.0, 12090.0), "raw.gctx", said.append)
    check_level("auto", (-61.0, 0.02, 27.0), "z.gct", said.append)
    check_level(3, (3.2, 8.4, 15.0), "l3.gct", said.append)
    assert len(said) == 2 and "not log2" in said[0] and "z-scores" in said[1]


def test_constant_profiles_are_refused_by_the_baselines(tmp_path):
    import h5py

    from l1kformer.baselines_expression import expression_baselines
    from l1kformer.errors import InputError
    from l1kformer.mask import make_mask
    from l1kformer.split import split_rows

    with h5py.File(tmp_path / "x.h5", "w") as h5:
        h5["expression"] = np.full((40, 5), 7.0, dtype=np.float32)
    split = split_rows(40, {"train": 0.5, "val": 0.25, "test": 0.25}, 0)
    mask = make_mask(split, 5, 0.4, 0)
    with pytest.raises(InputError, match="no variance on any gene"):
        expression_baselines(tmp_path / "x.h5", split, mask["val"], mask["test"], knn_k=3, knn_reference=10,
                             tune_profiles=10, log=lambda m: None)


def test_messages_name_what_is_meant():
    from l1kformer.errors import InputError
    from l1kformer.genes import column_order

    with pytest.raises(InputError) as exc:
        column_order("b.csv", np.array(["1", "2", "3"]), np.array(["1", "2", "3", "4"]), "the gene table g.tsv")
    assert str(exc.value) == "b.csv: genes differ from the gene table g.tsv: 1 missing (e.g. 4), 0 not in it"


def test_warnings_reach_the_terminal_and_the_log(tmp_path, capsys):
    from l1kformer.step import step

    with step(tmp_path / "x.log") as log:
        log("WARNING: values look like z-scores")
    assert f"l1kformer warning: values look like z-scores ({tmp_path / 'x.log'})" in capsys.readouterr().err
    assert "WARNING: values look like z-scores" in (tmp_path / "x.log").read_text()


def test_units_are_recorded_for_the_reports(tmp_path):
    """Ingest stores what the values are (log2 Level 3, z-scores, raw), so errors are labelled in those
    units by the evaluate step, the expression baselines and the plots."""
    from l1kformer.fileio import data_units
    from l1kformer.ingest import ingest, units_of

    assert units_of("auto", 3.2, 8.4, 15.0) == "log2" and units_of("auto", 28.0, 900.0, 12090.0) == "raw"
    assert units_of("auto", -61.0, 0.02, 27.0) == "z" and units_of(4, 0.1, 3.0, 9.0) == "z"
    rows = [[round(v, 3) for v in np.random.default_rng(i).normal(0, 1, len(GENES))] for i in range(40)]
    (tmp_path / "z.csv").write_text(csv_text(rows))
    said = []
    ingest([tmp_path / "z.csv"], tmp_path / "x.h5", tmp_path / "s.parquet", tmp_path / "g.tsv", gene_table=None,
           n_genes=5, gene_key="pr_gene_id", gene_match=["pr_gene_id"], orientation="samples_x_genes", filters={},
           level="auto", log=said.append)
    assert data_units(tmp_path / "x.h5") == "z" and any("z-scores" in line for line in said)


@pytest.mark.parametrize("exc", [
    PermissionError(13, "Permission denied", "results/data/split.h5"),
    OSError("Unable to synchronously create file (unable to open file: name = 'results/data/split.h5', "
            "errno = 28, error message = 'No space left on device', flags = 13, o_flags = 242)"),
], ids=["permission", "h5py_disk_full"])
def test_an_unwritable_results_folder_is_one_line(tmp_path, capsys, exc):
    """(Permissions cannot be tested by writing: the tests may run as root.)"""
    from l1kformer.step import step

    with pytest.raises(SystemExit) as stop:
        with step(tmp_path / "x.log"):
            raise exc
    assert stop.value.code == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("l1kformer error: results/data/split.h5: cannot write it (") and "\n" not in line


def test_other_os_errors_keep_their_traceback(tmp_path):
    from l1kformer.step import step

    with pytest.raises(FileNotFoundError):
        with step(tmp_path / "x.log"):
            raise FileNotFoundError(2, "No such file or directory", "a bug, not bad input")
    assert "Traceback" in (tmp_path / "x.log").read_text()
