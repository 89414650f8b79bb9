"""The workflow end to end on a copy in a temporary folder: outputs, rerun scope, determinism, lint."""

import json

import h5py
import numpy as np
import pytest

from conftest import DOWNSTREAM, ROOT, run_jobs

pytestmark = pytest.mark.workflow

DATA = "results/data/"
ALL_RUNS = run_jobs("rank_small", "expr_small")
DOWNSTREAM_SUMMARY = {("downstream_summary", None), ("retrieval", None)}
SUMMARY = {("summary", None)} | DOWNSTREAM_SUMMARY
BASELINES = {("baselines_rank", None), ("baselines_expression", None), ("oracle", None)}
DOWNSTREAM_DATA = {("downstream_labels", None), ("downstream_baselines", None), ("downstream_oracle", None)}
FINETUNE = {("finetune", "rank_small"), ("finetune", "expr_small"), ("downstream_summary", None)}


def test_lint_is_clean(workflow):
    proc = workflow.run("--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def test_train_jobs_request_a_gpu_unless_they_run_on_a_machine_without_one(workflow):
    """``device: auto`` on a machine that shows no GPU runs on the CPU: its jobs hold no GPU slot, so
    they are not serialised by it; ``device: cuda`` always asks for one."""
    def train_jobs(**env):
        jobs = workflow.run("-n", "--forceall", env=env).stdout.split("\nrule ")
        found = [j for j in jobs if j.startswith("train:")]
        assert len(found) == 2
        return found

    for job in train_jobs(CUDA_VISIBLE_DEVICES=""):
        assert "gpu=0" in job, job
    workflow.set_config({"train": {"device": "cuda"}})
    for job in train_jobs(CUDA_VISIBLE_DEVICES=""):
        assert "gpu=1" in job, job


def test_default_config_from_nothing(tmp_path):
    from conftest import Workflow

    wf = Workflow(tmp_path / "wf")
    wf.write_config_text((ROOT / "config.yaml").read_text())  # the embedded default, unchanged
    wf.run("--until", "mask", "rank")  # the data steps; the full default run is timed in the README
    with h5py.File(wf.path / DATA / "mask.h5") as h5:
        for name in ("val", "test"):
            positions = h5[name]["positions"][()]
            assert positions.shape == (len(h5[name]["rows"]), 20)  # ceil(0.15 x 128 genes)
            assert len(positions) > 0
    with h5py.File(wf.path / DATA / "ranks.h5") as h5:
        ranks = h5["ranks"][:10]
    assert (np.sort(ranks, axis=1) == np.arange(128)).all()


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """The default workflow (at the tests' tiny size) run once; the tests below share it and leave it
    as they found it: up to date."""
    from conftest import Workflow

    wf = Workflow(tmp_path_factory.mktemp("ran") / "wf")
    wf.set_config(DOWNSTREAM)
    wf.run()
    assert wf.pending() == set()
    return wf


def test_outputs_and_report(ran):
    check_outputs_and_report(ran)


def reordered(cfg):
    return {k: (dict(reversed(list(v.items()))) if isinstance(v, dict) else v) for k, v in reversed(list(cfg.items()))}


def with_run(name, settings):
    return lambda wf: wf.config["runs"].update({name: settings}) or wf.set_config({})


# (a change of the config, what it makes pending, how to undo it)
CONFIG_CHANGES = {
    "mask ratio": (lambda wf: wf.set_config({"mask": {"ratio": 0.2}}),
                   {("mask", None)} | BASELINES | ALL_RUNS | SUMMARY,
                   lambda wf: wf.set_config({"mask": {"ratio": 0.15}})),
    "split seed": (lambda wf: wf.set_config({"split": {"seed": 7}}),
                   {("split", None), ("mask", None)} | BASELINES | ALL_RUNS | SUMMARY | DOWNSTREAM_DATA,
                   lambda wf: wf.set_config({"split": {"seed": 1}})),
    "one run's learning rate": (with_run("expr_small", {"mode": "expression", "lr": 0.005}),
                                run_jobs("expr_small") | SUMMARY, with_run("expr_small", {"mode": "expression"})),
    "a baseline setting": (lambda wf: wf.set_config({"evaluate": {"knn_k": 5}}),
                           {("baselines_expression", None), ("plot_expression", "expr_small"), ("summary", None)},
                           lambda wf: wf.set_config({"evaluate": {"knn_k": 10}})),
    # downstream settings rerun the downstream jobs and their summaries, never training (retrieval scores
    # every profile, rows: all, so not the fine-tuned models' features)
    "a fine-tuning setting": (lambda wf: wf.set_config({"downstream": {"finetune": {"lr_factor": 0.5}}}),
                              FINETUNE, lambda wf: wf.set_config({"downstream": {"finetune": {"lr_factor": 0.1}}})),
    # the first readout also reads the embeddings, which retrieval scores
    "a readout": (lambda wf: wf.set_config({"downstream": {"finetune": {"readout": "cls"}}}),
                  FINETUNE | {("embed", "rank_small"), ("embed", "expr_small"), ("retrieval", None)},
                  lambda wf: wf.set_config({"downstream": {"finetune": {"readout": "genes"}}})),
    "a downstream task": (lambda wf: wf.set_config({"downstream": {"tasks": {"cell_line": {"min_count": 2}}}}),
                          FINETUNE | DOWNSTREAM_DATA,
                          lambda wf: wf.config["downstream"]["tasks"]["cell_line"].pop("min_count") and
                          wf.set_config({})),
    "a downstream baseline setting": (
        lambda wf: wf.set_config({"downstream": {"baselines": {"depth": 1}}}),
        {("downstream_baselines", None), ("downstream_summary", None)},
        lambda wf: wf.set_config({"downstream": {"baselines": {"depth": 2}}})),
    "a retrieval setting": (lambda wf: wf.set_config({"downstream": {"retrieval": {"fdr": 0.1}}}),
                            {("retrieval", None)},
                            lambda wf: wf.set_config({"downstream": {"retrieval": {"fdr": 0.05}}})),
    "retrieval's centring": (lambda wf: wf.set_config({"downstream": {"retrieval": {"centre": "vehicle"}}}),
                             {("retrieval", None)},
                             lambda wf: wf.set_config({"downstream": {"retrieval": {"centre": "plate"}}})),
}


@pytest.mark.parametrize("change", sorted(CONFIG_CHANGES))
def test_a_config_change_reruns_what_it_affects(ran, change):
    do, expected, undo = CONFIG_CHANGES[change]
    do(ran)
    try:
        assert ran.pending_jobs() == expected
    finally:
        undo(ran)
    assert ran.pending() == set()


def test_reordering_config_keys_changes_nothing(ran):
    cfg = ran.config
    ran.config = {}
    ran.set_config(reordered(cfg))
    assert list(ran.config) != list(cfg)
    try:
        assert ran.pending() == set()
    finally:
        ran.config = {}
        ran.set_config(cfg)


# editing a package module reruns the jobs whose scripts import it, and what reads their outputs
MODULE_EDITS = {
    # the ranks: everything that reads them, the downstream rank baselines and retrieval included
    "rank.py": {("rank", None), ("baselines_rank", None), ("downstream_baselines", None)} | run_jobs("rank_small")
    | SUMMARY,
    "gene_order.py": {("rank", None), ("baselines_rank", None), ("downstream_baselines", None)}
    | run_jobs("rank_small") | SUMMARY,
    # the oracle's mathematics, not in the generator: the oracle jobs and what reads their files only
    "oracle.py": {("oracle", None), ("plot_expression", "expr_small"), ("summary", None), ("downstream_oracle", None),
                  ("downstream_summary", None)},
    # the model: training, embedding, evaluation, and the plots and summary after them (the downstream
    # baselines' MLP lives in model.py)
    "model.py": ALL_RUNS | SUMMARY | {("downstream_baselines", None)},
    # the training loss: every run and what follows it, not the downstream baselines (device.py, not
    # inference.py, gives them their device)
    "tasks.py": ALL_RUNS | SUMMARY,
    # a rank metric: the rank baselines and the evaluation (one script scores both modes), not training
    # and not the expression baselines (baselines_rank.py and baselines_expression.py over baselines.py)
    "metrics_rank.py": {("baselines_rank", None), ("evaluate", "rank_small"), ("evaluate", "expr_small"),
                        ("plot_rank", "rank_small"), ("plot_expression", "expr_small"), ("summary", None)},
    # the masked models' figures and the summary's comparison figure; the downstream figures save
    # through figures.py
    "plots.py": {("plot_rank", "rank_small"), ("plot_expression", "expr_small"), ("summary", None)},
    # the downstream baselines' module: their jobs and the downstream summary, nothing of the models
    "downstream_baselines.py": {("downstream_baselines", None), ("downstream_summary", None)},
}


@pytest.mark.parametrize("module", sorted(MODULE_EDITS))
def test_a_module_edit_reruns_its_consumers(ran, module):
    path = ran.path / "workflow/scripts/l1kformer" / module
    path.write_text(path.read_text() + "\n# an edit\n")
    try:
        assert ran.pending_jobs() == MODULE_EDITS[module]
    finally:
        ran.run("--touch")  # the next case starts from an up-to-date workflow whatever this one found
    assert ran.pending() == set()


def test_the_same_config_gives_byte_identical_split_and_mask(ran):
    before = {f: (ran.path / DATA / f).read_bytes() for f in ("split.h5", "mask.h5")}
    ran.run("--forcerun", "split", "--until", "mask")
    for f, content in before.items():
        assert (ran.path / DATA / f).read_bytes() == content, f
    ran.run("--touch")


def check_outputs_and_report(workflow):
    """Metrics, summary, plots and embeddings for both modes, and a report holding every plot."""
    import json

    import pandas as pd

    summary = pd.read_csv(workflow.path / "results/summary.tsv", sep="\t")
    assert set(summary["name"]) >= {"rank_small", "expr_small", "gene_mean", "linear_shrunk", "knn",
                                    "oracle", "position_frequency", "position_frequency_smoothed"}
    for run in ("rank_small", "expr_small"):
        metrics = json.loads((workflow.path / f"results/runs/{run}/metrics.json").read_text())
        assert metrics["test"] and "baselines" not in metrics  # the run's own results only
        for name in ("embeddings_train.parquet", "embeddings_val.parquet", "embeddings_test.parquet",
                     "gene_embeddings.parquet"):
            assert len(pd.read_parquet(workflow.path / f"results/runs/{run}/{name}")) > 0
    downstream = pd.read_csv(workflow.path / "results/downstream.tsv", sep="\t", keep_default_na=False)
    names = {"majority", "rank_logistic", "rank_mlp", "expression_logistic", "expression_mlp"}
    for task in ("cell_line", "perturbation"):
        rows = downstream[downstream["task"] == task]
        assert set(rows.loc[rows["kind"] == "baseline", "name"]) == names
        assert list(rows["kind"])[0] == "oracle" and rows["accuracy"].iloc[0] > 0  # the Bayes ceiling first
        models = rows[rows["kind"] == "model"]
        assert set(zip(models["name"], models["readout"], models["variant"])) == {
            (r, "genes", v) for r in ("rank_small", "expr_small") for v in ("finetuned", "embedding", "probe_layer0")}
        assert set(models["beats_best_baseline"]) <= {"yes", "no"} and models["share_of_oracle"].notna().all()
    retrieval = pd.read_csv(workflow.path / "results/downstream/retrieval.tsv", sep="\t")
    assert set(retrieval["representation"]) == {"expression", "rank_positions", "rank_small embedding",
                                                "expr_small embedding", "expression, rows shuffled (null)"}
    # (rows: all, so no fine-tuned features)
    assert retrieval["mAP"].between(0, 1).all()
    by = pd.read_csv(workflow.path / "results/downstream/retrieval_by.tsv", sep="\t")
    assert set(by["representation"]) == set(retrieval["representation"]) and by["pert_dose"].nunique() > 1
    plots = sorted((workflow.path / "results").rglob("*.png"))
    assert len(plots) == 2 * 5 + 1 + 4  # each run's, the comparison, and the downstream figures
    workflow.run("--report", "results/report.html")
    html = (workflow.path / "results/report.html").read_text()
    for png in plots:
        assert png.name in html, png


def test_baselines_run_once_per_mask_whatever_the_runs(workflow):
    workflow.config["runs"] = {f"{mode}_{k}": {"mode": mode, "d_model": 16 * (k + 1)}
                               for mode in ("rank", "expression") for k in range(3)}
    workflow.set_config({})
    counts = workflow.job_counts("--forceall")
    assert counts["train"] == 6 and counts["evaluate"] == 6
    assert counts["baselines_rank"] == 1 and counts["baselines_expression"] == 1


def test_normalised_ranking_uses_the_split(workflow):
    workflow.set_config({"rank": {"normalize": "median_center"}})
    workflow.run("--until", "rank", "mask")
    assert ("rank", None) not in workflow.pending_jobs()
    workflow.set_config({"split": {"seed": 7}})
    # training medians come from the split, so rank now depends on it
    assert {("split", None), ("mask", None), ("rank", None)} <= workflow.pending_jobs()


def test_group_split_through_the_workflow(workflow):
    import pandas as pd

    workflow.set_config({"split": {"group_by": "det_plate", "train": 0.5, "val": 0.25, "test": 0.25}})
    workflow.run(DATA + "split.h5")
    meta = pd.read_parquet(workflow.path / DATA / "samples.parquet")
    with h5py.File(workflow.path / DATA / "split.h5") as h5:
        plates = {s: set(meta["det_plate"].iloc[h5[s][()]]) for s in ("train", "val", "test")}
    assert plates["train"] and plates["val"] and plates["test"]
    assert not plates["train"] & plates["test"] and not plates["train"] & plates["val"]
    assert "groups" in (workflow.path / "results/logs/split.log").read_text()


def _train_processes(workdir):
    """PIDs of training scripts running in ``workdir`` (Snakemake runs them as python ...train.py)."""
    import os

    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if "train.py" in cmd and "snakemake" not in cmd.split()[0] and cwd == str(workdir):
            pids.append(int(pid))
    return pids


def test_sigkilled_training_job_resumes_from_its_checkpoint(workflow):
    import os
    import signal
    import subprocess
    import sys
    import time

    workflow.config["runs"] = {"rank_small": {"mode": "rank"}}
    # 978 genes: epochs long enough to be killed inside one
    workflow.set_config({"simulate": {"n_genes": 978}, "data": {"n_genes": 978},
                         "train": {"epochs": 2, "d_model": 32, "n_layers": 2, "batch_size": 16}})
    model = "results/runs/rank_small/model.pt"  # training only: the steps after it do not bear on resuming
    workflow.run("--until", "mask", "rank")
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", model], cwd=workflow.path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = workflow.path / "results/runs/rank_small/checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert ckpt.exists(), "no checkpoint written"  # epoch 1's, written atomically: epoch 2 has begun
    pids = _train_processes(workflow.path)
    assert pids, "training process not found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=120) != 0
    assert not (workflow.path / model).exists()
    assert ckpt.exists()
    workflow.run(model)
    log = (workflow.path / "results/logs/train_rank_small.log").read_text()
    assert "resuming from" in log and "after epoch 1" in log, log
    history = (workflow.path / "results/runs/rank_small/history.tsv").read_text().splitlines()
    assert len(history) == 1 + 2
    assert not ckpt.exists()  # removed once the model file is written


def real_example():
    """resources/examples/real_l1000.yaml with its paths pointed at ../shared/data/l1000/ (skips when absent)."""
    import yaml

    from conftest import SHARED_DATA, shared_file

    shared_file("landmark_genes_978.tsv")  # skips when the real files are absent
    example = yaml.safe_load((ROOT / "resources/examples/real_l1000.yaml").read_text())
    example["data"]["inputs"] = [str(SHARED_DATA / p.split("/")[-1]) for p in example["data"]["inputs"]]
    example["data"]["gene_table"] = str(SHARED_DATA / "landmark_genes_978.tsv")
    assert example["results_dir"] == "results/real_l1000"  # its own folder, apart from the default's
    return example


def assert_beats_the_trivial_baselines(summary):
    """Every model beats the trivial baseline of its mode on the test mask, by margins that a model which
    learned nothing (its rank head at the position prior, its expression head at the gene mean) cannot
    reach."""
    assert "oracle" not in summary.index  # real data: no generator, no oracle
    assert 0.4 < summary.loc["linear_shrunk", "mse"] < 0.7  # near the reference 0.538
    prior = summary.loc["position_frequency_smoothed"]
    for run in ("rank_small", "rank_dense"):
        assert summary.loc[run, "c_mean_rank_error"] < 0.93 * prior["c_mean_rank_error"], (run, summary.loc[run])
        assert summary.loc[run, "c_top1"] > 1.02 * prior["c_top1"], (run, summary.loc[run])
    for run in ("expr_small", "expr_dense"):
        assert summary.loc[run, "mse"] < 0.85 * summary.loc["gene_mean", "mse"], (run, summary.loc[run])
    models = summary[summary["kind"] == "model"]
    assert set(models["beats_best_baseline"]) <= {"yes", "no"}  # said plainly, for every run
    assert models.loc["expr_small", "best_baseline"] == "linear_shrunk (mse)"


@pytest.mark.slow
def test_real_plates_end_to_end_at_the_tests_model_size(workflow):
    """The real example's data, split, masks, runs and downstream on the two A375 plates, every rule of
    it exercised with the smallest models and epochs that run them (the tests' d_model 16, one layer,
    one epoch; the dense controls one epoch; one fine-tuning epoch, no from-scratch controls): what a
    real file does to each step, in a few minutes. Whether the models learn on these plates is the
    ``study`` test below (the example as shipped)."""
    import pandas as pd

    example = real_example()
    workflow.set_config(DOWNSTREAM)  # the default's tasks and retrieval, which the example's sections update
    workflow.set_config(example)
    workflow.set_config({"train": {"epochs": 1, "batch_size": 64, "warmup_steps": 2},
                         "runs": {run: {"epochs": 1} for run in example["runs"] if example["runs"][run]},
                         "downstream": {"finetune": {"epochs": 1, "head_epochs": 3, "from_scratch": False},
                                        "baselines": {"epochs": 3}}})
    workflow.run()
    out = workflow.path / example["results_dir"]
    summary = pd.read_csv(out / "summary.tsv", sep="\t").set_index("name")
    assert "oracle" not in summary.index  # real data: no generator, no oracle
    assert {"rank_small", "rank_dense", "expr_small", "expr_dense", "linear_shrunk", "gaussian_positions"} \
        <= set(summary.index)
    assert 0.4 < summary.loc["linear_shrunk", "mse"] < 0.7  # near the reference 0.538
    for run in ("expr_small", "expr_dense"):
        assert summary.loc[run, "mse"] < 1.5 * summary.loc["gene_mean", "mse"], run  # a number, in log2 units
    downstream = pd.read_csv(out / "downstream.tsv", sep="\t", keep_default_na=False)
    assert set(downstream["task"]) == {"perturbation"}  # cell_line: null drops the default's task
    assert "oracle" not in set(downstream["kind"])
    assert {("rank_small", "genes"), ("rank_dense", "mean"), ("expr_small", "genes"), ("expr_dense", "mean")} \
        <= set(zip(downstream["name"], downstream["readout"]))
    majority = downstream.loc[downstream["name"] == "majority", "accuracy"].item()
    assert downstream["accuracy"].max() > majority  # something learns the compounds
    retrieval = pd.read_csv(out / "downstream/retrieval.tsv", sep="\t")
    assert {"expression", "rank_positions", "rank_small embedding"} <= set(retrieval["representation"])
    assert retrieval["mAP"].between(0, 1).all() and (retrieval["n_profiles"] > 10).all()


@pytest.mark.study
def test_real_data_example_as_shipped_beats_the_trivial_baselines(tmp_path):
    """resources/examples/real_l1000.yaml as shipped, merged over config.yaml as snakemake merges it,
    nothing of the tests' sizes (about an hour on 2 cores; ``pytest -m study``, not in .ci/run): the
    acceptance of issue 23. Figures of the last run: docs/model-study.md, Appendix G."""
    import pandas as pd
    import yaml

    from conftest import Workflow

    example = real_example()
    wf = Workflow(tmp_path / "wf", tiny=False)
    (wf.path / "real.yaml").write_text(yaml.safe_dump(example))
    wf.run("--configfile", "real.yaml")
    assert_beats_the_trivial_baselines(
        pd.read_csv(wf.path / example["results_dir"] / "summary.tsv", sep="\t").set_index("name"))


def test_two_experiments_keep_their_own_results(workflow):
    """``results_dir``: a second config writes its own folder and leaves the first one's results, logs
    and timings as they were (and up to date)."""
    target = "baselines/expression.json"
    workflow.run(f"results/{target}")
    first = {p: p.stat().st_mtime_ns for p in (workflow.path / "results").rglob("*") if p.is_file()}
    assert workflow.path / "results" / "logs" / "baselines_expression.log" in first
    workflow.set_config({"results_dir": "experiments/seed7", "split": {"seed": 7}})
    workflow.run(f"experiments/seed7/{target}")
    second = json.loads((workflow.path / "experiments/seed7" / target).read_text())
    assert (workflow.path / "experiments/seed7/logs/baselines_expression.log").exists()
    assert (workflow.path / "experiments/seed7/benchmarks/baselines_expression.tsv").exists()
    assert {p: p.stat().st_mtime_ns for p in (workflow.path / "results").rglob("*") if p.is_file()} == first
    workflow.set_config({"results_dir": "results", "split": {"seed": 1}})
    assert "Nothing to be done" in workflow.run("-n", f"results/{target}").stdout  # still up to date
    assert json.loads((workflow.path / "results" / target).read_text()) != second  # another split, other numbers
