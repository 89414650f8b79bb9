"""The README's first command is enough: a fresh virtual environment with ``pip install .`` alone (no
test extra, so nothing the tests bring in) runs every rule of the workflow, at the tests' tiny size, and
builds the report with every figure. That the default as shipped learns (its two transformers clearly
beat the baselines a model has to beat) is ``benchmarks/default_demo.py``: it takes 12 minutes on 2
cores, more than the whole suite may."""

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
    wf = Workflow(tmp_path / "wf")  # the shipped config at the tests' tiny size
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    for args in (["--cores", "2"], ["--report", "results/report.html"]):
        proc = subprocess.run([str(venv / "bin" / "snakemake"), *args], cwd=wf.path, capture_output=True,
                              text=True, env=env, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(wf.path / "results" / "summary.tsv", sep="\t", index_col="name")
    assert {"rank_small", "expr_small", "gene_mean", "gaussian_positions", "oracle"} <= set(summary.index)
    html = (wf.path / "results" / "report.html").read_text(errors="replace")
    plots = sorted(p.name for p in (wf.path / "results").rglob("*.png"))
    assert len(plots) >= 11  # five per run and the comparison
    for name in plots:
        assert name in html, name
