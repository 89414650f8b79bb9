"""The README's first command is enough: a fresh virtual environment with ``pip install .`` alone runs
the default pipeline as shipped (config.yaml, ``snakemake --cores 2``), whose two transformers must
clearly beat the baselines a model has to beat, and builds the report with every figure (no test extra,
so nothing the tests bring in). The default takes minutes on 2 cores: this is the slowest test."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from conftest import ROOT, Workflow


@pytest.mark.workflow
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
    wf = Workflow(tmp_path / "wf")
    wf.write_config_text((ROOT / "config.yaml").read_text())  # the default as shipped, not the tiny one
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    for args in (["--cores", "2"], ["--report", "results/report.html"]):
        proc = subprocess.run([str(venv / "bin" / "snakemake"), *args], cwd=wf.path, capture_output=True,
                              text=True, env=env, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-3000:]
    check_the_demo_learns(pd.read_csv(wf.path / "results" / "summary.tsv", sep="\t", index_col="name"))
    html = (wf.path / "results" / "report.html").read_text(errors="replace")
    plots = sorted(p.name for p in (wf.path / "results").rglob("*.png"))
    assert len(plots) >= 11  # five per run and the comparison
    for name in plots:
        assert name in html, name


def check_the_demo_learns(summary):
    """Each default model beats the baseline it must beat, on the test mask, by a clear margin: the
    expression transformer the gene mean (MSE at most 0.85x), the rank transformer the smoothed
    position prior (mean rank error among the missing genes at most 0.93x, top-1 at least 1.05x)."""
    expr, gene_mean = summary.loc["expr_small"], summary.loc["gene_mean"]
    assert expr["mse"] <= 0.85 * gene_mean["mse"], (expr["mse"], gene_mean["mse"])
    rank, prior = summary.loc["rank_small"], summary.loc["position_frequency_smoothed"]
    assert rank["c_mean_rank_error"] <= 0.93 * prior["c_mean_rank_error"], (rank, prior)
    assert rank["c_top1"] >= 1.05 * prior["c_top1"], (rank["c_top1"], prior["c_top1"])
