"""The embedded default as shipped learns: run ``snakemake --cores 2`` on a copy of the workflow with
config.yaml unchanged and check, on its test mask, that each default model beats the baseline it must
beat by a clear margin: the expression transformer the gene mean (MSE at most 0.85x), the rank
transformer the smoothed position prior (mean rank error among the missing genes at most 0.93x, top-1
at least 1.05x); and downstream (docs/downstream.md), that the Bayes ceiling, every model variant and
the four baselines are in ``results/downstream.tsv``, that on the perturbation every model variant
scores above twice the majority class and the best fine-tuned model at least 0.9x the best baseline,
that the expression model classifies the cell lines at 0.95 or better, and that replicate retrieval
scores raw expression above its shuffled null, with a larger share retrieved at the top dose than
at the lowest. Prints the numbers the README quotes; exit status 1 if a margin is missed.

    .venv/bin/python benchmarks/default_demo.py [--keep DIR]

About 15 minutes on 2 cores (most of it the two training jobs), which is why it is not in the test suite.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("Snakefile", "config.yaml", "rules", "workflow", "envs", "profiles", "resources")


def margins(summary):
    """(what, value, limit, met) for each margin the default must show."""
    expr, gene_mean = summary.loc["expr_small"], summary.loc["gene_mean"]
    rank, prior = summary.loc["rank_small"], summary.loc["position_frequency_smoothed"]
    return [("expression MSE / gene mean", expr["mse"] / gene_mean["mse"], "<= 0.85",
             expr["mse"] <= 0.85 * gene_mean["mse"]),
            ("rank mean rank error / smoothed prior", rank["c_mean_rank_error"] / prior["c_mean_rank_error"],
             "<= 0.93", rank["c_mean_rank_error"] <= 0.93 * prior["c_mean_rank_error"]),
            ("rank top-1 / smoothed prior", rank["c_top1"] / prior["c_top1"], ">= 1.05",
             rank["c_top1"] >= 1.05 * prior["c_top1"])]


def downstream_margins(table, retrieval, by_dose, runs):
    """(what, value, limit, met) of the downstream outputs (issue 33's acceptance)."""
    baselines = {"majority", "rank_logistic", "rank_mlp", "expression_logistic", "expression_mlp"}
    out = []
    for task, rows in table.groupby("task"):
        names = set(rows.loc[rows["kind"] == "baseline", "name"])
        models = set(zip(rows.loc[rows["kind"] == "model", "name"], rows.loc[rows["kind"] == "model", "variant"]))
        want = {(r, v) for r in runs for v in ("finetuned", "embedding")}
        out.append((f"{task}: oracle, baselines and model variants present", len(names) + len(models), "all",
                    names == baselines and want <= models and (rows["kind"] == "oracle").sum() == 1))
    pert = table[table["task"] == "perturbation"]
    base = pert[pert["kind"] == "baseline"].set_index("name")["accuracy"]
    best, majority = base.drop("majority").max(), base["majority"]
    out.append(("perturbation: best baseline / majority", best / majority, ">= 2", best >= 2 * majority))
    models = pert[pert["kind"] == "model"]
    worst = models["accuracy"].min()
    out.append(("perturbation: worst model variant / majority", worst / majority, "> 2", worst > 2 * majority))
    tuned = models.loc[models["variant"] == "finetuned", "accuracy"].max()
    out.append(("perturbation: best fine-tuned model / best baseline", tuned / best, ">= 0.9", tuned >= 0.9 * best))
    cell = table[(table["task"] == "cell_line") & (table["kind"] == "model") & (table["variant"] == "finetuned")]
    expr = cell.loc[cell["name"].str.startswith("expr"), "accuracy"].min()
    out.append(("cell line: expression model, fine-tuned", expr, ">= 0.95", expr >= 0.95))
    reps = set(retrieval["representation"])
    want = {"expression", "rank_positions"} | {f"{r} embedding" for r in runs}
    out.append(("retrieval: raw and every embedding scored", len(reps), f">= {len(want)}", want <= reps))
    m = retrieval.set_index("representation")["mAP"]
    null = m[[r for r in m.index if "(null)" in r]].item()
    out.append(("retrieval: raw expression's mAP / the shuffled null's", m["expression"] / null, ">= 1.2",
                m["expression"] >= 1.2 * null))
    raw = by_dose[by_dose["representation"] == "expression"].sort_values("pert_dose")
    top, bottom = raw["fraction_retrieved"].iloc[-1], raw["fraction_retrieved"].iloc[0]
    out.append(("retrieval: raw expression, share retrieved at the top dose minus the lowest", top - bottom, "> 0",
                top > bottom))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", help="run in this folder and keep it (default: a temporary one)")
    a = ap.parse_args()
    work = Path(a.keep or tempfile.mkdtemp(prefix="l1kformer-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    for part in PARTS:
        src, dst = ROOT / part, work / part
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "simulated"))
        else:
            shutil.copy2(src, dst)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "-q"], cwd=work, check=True)
    print(f"default run: {time.perf_counter() - t:.0f} s on 2 cores")
    summary = pd.read_csv(work / "results/summary.tsv", sep="\t", index_col="name")
    cols = ["mse", "c_mean_rank_error", "c_top1", "assign_top1"]
    print(summary[[c for c in cols if c in summary]].to_string(float_format=lambda v: f"{v:.4g}"))
    table = pd.read_csv(work / "results/downstream.tsv", sep="\t", keep_default_na=False)
    print(table[["task", "name", "readout", "variant", "accuracy", "macro_f1", "val_accuracy"]].to_string(
        index=False, float_format=lambda v: f"{v:.4f}"))
    retrieval = pd.read_csv(work / "results/downstream/retrieval.tsv", sep="\t")
    print(retrieval.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    by_dose = pd.read_csv(work / "results/downstream/retrieval_by.tsv", sep="\t")
    print(by_dose.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    runs = sorted(summary.index[summary["kind"] == "model"])
    ok = True
    for what, value, limit, met in margins(summary) + downstream_margins(table, retrieval, by_dose, runs):
        print(f"{what}: {value:.3f} (must be {limit}): {'met' if met else 'MISSED'}")
        ok &= bool(met)
    if not a.keep:
        shutil.rmtree(work)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
