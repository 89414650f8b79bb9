"""Tables and curves of a model study from a finished results/ folder (docs/model-study.md).

    python benchmarks/study_report.py [results] [--out docs]

Prints, per mode, one markdown row per run: trunk, parameters, epochs, training wall seconds (the
train job's benchmark file), the best val metric and its epoch (selection), and the test metrics
(read once, for the final table); then the baselines on the same test mask. Writes
``model-study-curves.png``: val metric against training seconds for every run, the best baseline and
the oracle as lines.
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

VAL = {"expression": ("val_mse", "mse", min), "rank": ("val_mean_rank_error", "c_mean_rank_error", min)}


def runs(results):
    rows = []
    for metrics_path in sorted((results / "runs").glob("*/metrics.json")):
        run = metrics_path.parent.name
        m = json.loads(metrics_path.read_text())
        history = pd.read_csv(metrics_path.parent / "history.tsv", sep="\t")
        bench = pd.read_csv(results / "benchmarks" / f"train_{run}.tsv", sep="\t")
        cfg = m["model_config"]
        val_col, _, _ = VAL[m["mode"]]
        best = history.loc[history[val_col].idxmin()]
        size = (f"d{cfg['d_model']} x {cfg['n_layers']}" if cfg["trunk"] == "transformer"
                else f"w{cfg['dense_width']} x {cfg['dense_depth']}")
        rows.append({"run": run, "mode": m["mode"], "trunk": cfg["trunk"], "size": size,
                     "encoder": cfg.get("value_encoder", ""), "epochs": len(history),
                     "train_s": float(bench["s"].iloc[0]), "best_epoch": int(best["epoch"]),
                     "best_val": float(best[val_col]), "history": history, **m["test"]})
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results", nargs="?", default="results")
    parser.add_argument("--out", default="docs")
    a = parser.parse_args()
    results = Path(a.results)
    table = runs(results)
    baselines = {}
    for name in ("expression", "oracle", "rank"):
        path = results / "baselines" / f"{name}.json"
        if path.exists():
            baselines[name] = json.loads(path.read_text())["baselines"]
    fig, axes = plt.subplots(2, 1, figsize=(12, 10))
    for ax, mode in zip(axes, ("expression", "rank")):
        val_col, test_col, _ = VAL[mode]
        rows = sorted((r for r in table if r["mode"] == mode), key=lambda r: r["best_val"])
        print(f"\n### {mode} mode (sorted by best val {val_col})\n")
        print(f"| run | trunk | size | encoder | epochs | train s | best epoch | best val | test {test_col} |")
        print("|---|---|---|---|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['run']} | {r['trunk']} | {r['size']} | {r['encoder'] if mode == 'expression' else ''} | "
                  f"{r['epochs']} | {r['train_s']:.0f} | {r['best_epoch']} | {r['best_val']:.4f} | {r[test_col]:.4f} |")
            h = r["history"]
            seconds = r["train_s"] * h["epoch"] / len(h)
            ax.plot(seconds, h[val_col], "-" if r["trunk"] == "transformer" else "--", label=r["run"])
        base = {**baselines.get(mode, {}), **(baselines.get("oracle", {}) if mode == "expression" else {})}
        print(f"\n| baseline (test) | {test_col} |\n|---|---:|")
        for name, m in sorted(base.items(), key=lambda kv: kv[1][test_col]):
            print(f"| {name} | {m[test_col]:.4f} |")
        for name, style in (("linear_shrunk", "k:"), ("oracle", "k-."), ("gaussian_positions", "k:")):
            if name in base:
                ax.axhline(base[name][test_col], color="k", ls=style[1:], lw=1, label=f"{name} ({test_col}, test)")
        ax.set(xscale="log", xlabel="training wall seconds (1 CPU thread)", ylabel=f"{val_col} (val mask)",
               title=f"{mode} mode: transformers (solid) and dense (dashed)"
               + ("; the dense model never scores visible genes" if mode == "rank" else ""))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    Path(a.out).mkdir(exist_ok=True)
    fig.savefig(Path(a.out) / "model-study-curves.png", dpi=110)


if __name__ == "__main__":
    main()
