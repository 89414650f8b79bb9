"""The README's first command is enough: a fresh virtual environment with ``pip install .`` alone (no
test extra, so nothing the tests bring in) plans the whole default as shipped (a dry run), and runs a
tiny config through training, evaluation, the summary and the report. Every rule is run by the
workflow tests, in the test environment; that the default as shipped learns is
``benchmarks/default_demo.py`` (minutes, more than the suite may spend on it twice)."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from conftest import ROOT, Workflow


@pytest.mark.workflow
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("L1KFORMER_SKIP_INSTALL_TEST") == "1",
                    reason="L1KFORMER_SKIP_INSTALL_TEST=1 (a fresh venv install takes minutes)")
def test_pip_install_alone_runs_the_workflow_and_builds_the_report(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", str(ROOT)], capture_output=True,
                             text=True, timeout=1800)
    assert install.returncode == 0, install.stderr[-3000:]
    assert subprocess.run([python, "-c", "import pytest"], capture_output=True).returncode != 0  # no extra
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    snakemake = str(venv / "bin" / "snakemake")
    shipped = Workflow(tmp_path / "shipped", tiny=False)
    plan = subprocess.run([snakemake, "-n", "--cores", "2"], cwd=shipped.path, capture_output=True, text=True,
                          env=env, timeout=600)
    assert plan.returncode == 0 and "finetune" in plan.stdout and "retrieval" in plan.stdout, plan.stderr[-3000:]
    wf = Workflow(tmp_path / "wf")  # the tests' tiny size, one run, no downstream
    wf.config["runs"] = {"expr_small": {"mode": "expression"}}
    wf.set_config({"train": {"epochs": 1}})
    for args in (["--cores", "2"], ["--report", "results/report.html"]):
        proc = subprocess.run([snakemake, *args], cwd=wf.path, capture_output=True, text=True, env=env,
                              timeout=1800)
        assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(wf.path / "results" / "summary.tsv", sep="\t", index_col="name")
    assert {"expr_small", "gene_mean", "linear_shrunk", "oracle"} <= set(summary.index)
    html = (wf.path / "results" / "report.html").read_text(errors="replace")
    plots = sorted(p.name for p in (wf.path / "results").rglob("*.png"))
    assert len(plots) >= 6  # five of the run and the comparison
    for name in plots:
        assert name in html, name
