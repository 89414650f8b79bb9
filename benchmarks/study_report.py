"""Tables and curves of a model study from a finished results/ folder (docs/model-study.md).

    python benchmarks/study_report.py [results] [--out docs] [--figure model-study-curves.png] [--runs A B ...]

Prints, per mode, one markdown row per run: trunk, parameters, epochs, training wall seconds (the
train job's benchmark file), the best val metric and its epoch (selection), and the test metrics
(read once, for the final table; runs trained but not evaluated show none); then the baselines on
the same test mask. Writes
the curves (``--figure``): val metric against training seconds for every run, the best baseline and
the oracle as lines. ``--runs``: only these runs, in the tables and the curves.
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

VAL = {"expression": ("val_mse", "mse", min), "rank": ("val_mean_rank_error", "c_mean_rank_error", min)}


def variant(cfg):
    """The transformer options beyond size and value encoder that a run sets (model.py)."""
    if cfg["trunk"] != "transformer":
        return ""
    parts = []
    if cfg.get("attn_bias", "none") == "genes":
        parts.append("pair bias")
    if cfg.get("n_registers", 0):  # removed after commit f0f6d25; older study runs have them
        parts.append(f"{cfg['n_registers']} registers" + (" (profile token)" if cfg.get("profile_token") else ""))
    if cfg["mode"] == "rank":
        parts.append(f"{cfg.get('rank_view', 'sequence')} view" + (" + values" if cfg.get("rank_values") else ""))
    return ", ".join(parts)


def run_record(run_dir):
    """The run's metrics.json, or for a run trained but not evaluated (selection needs only val) its
    model config from model.pt and no test metrics."""
    metrics = run_dir / "metrics.json"
    if metrics.exists():
        return json.loads(metrics.read_text())
    import torch

    cfg = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=False)["model_config"]
    return {"mode": cfg["mode"], "model_config": cfg, "test": {}}


def runs(results, only=None):
    rows = []
    for history_path in sorted((results / "runs").glob("*/history.tsv")):
        run = history_path.parent.name
        if not (history_path.parent / "model.pt").exists() or (only and run not in only):
            continue
        m = run_record(history_path.parent)
        history = pd.read_csv(history_path, sep="\t")
        bench = pd.read_csv(results / "benchmarks" / f"train_{run}.tsv", sep="\t")
        cfg = m["model_config"]
        val_col, _, _ = VAL[m["mode"]]
        best = history.loc[history[val_col].idxmin()]
        size = (f"d{cfg['d_model']} x {cfg['n_layers']}" if cfg["trunk"] == "transformer"
                else f"w{cfg['dense_width']} x {cfg['dense_depth']}")
        rows.append({"run": run, "mode": m["mode"], "trunk": cfg["trunk"], "size": size,
                     "encoder": cfg.get("value_encoder", ""), "variant": variant(cfg), "epochs": len(history),
                     "train_s": float(bench["s"].iloc[0]), "best_epoch": int(best["epoch"]),
                     "best_val": float(best[val_col]), "history": history, **m["test"]})
    return rows


def _test(row, column):
    return f"{row[column]:.4f}" if column in row else "(not evaluated)"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results", nargs="?", default="results")
    parser.add_argument("--out", default="docs")
    parser.add_argument("--figure", default="model-study-curves.png", help="file name of the curves in --out")
    parser.add_argument("--runs", nargs="*", help="only these runs")
    a = parser.parse_args()
    results = Path(a.results)
    table = runs(results, a.runs)
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
        print("| run | trunk | size | encoder | variant | epochs | train s | best epoch | best val | "
              f"test {test_col} |")
        print("|---|---|---|---|---|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['run']} | {r['trunk']} | {r['size']} | {r['encoder'] if mode == 'expression' else ''} | "
                  f"{r['variant']} | {r['epochs']} | {r['train_s']:.0f} | {r['best_epoch']} | {r['best_val']:.4f} | "
                  f"{_test(r, test_col)} |")
            h = r["history"]
            seconds = r["train_s"] * h["epoch"] / len(h)
            ax.plot(seconds, h[val_col], "-" if r["trunk"] == "transformer" else "--", label=r["run"])
        base = {**baselines.get(mode, {}), **(baselines.get("oracle", {}) if mode == "expression" else {})}
        print(f"\n| baseline (test) | {test_col} |\n|---|---:|")
        for name, m in sorted(base.items(), key=lambda kv: kv[1][test_col]):
            print(f"| {name} | {m[test_col]:.4f} |")
        for name, style in (("linear_shrunk", "k:"), ("oracle", "k-."), ("oracle_no_metadata", "k--"),
                            ("gaussian_positions", "k:")):
            if name in base:
                ax.axhline(base[name][test_col], color="k", ls=style[1:], lw=1, label=f"{name} ({test_col}, test)")
        ax.set(xscale="log", xlabel="training wall seconds (1 CPU thread)", ylabel=f"{val_col} (val mask)",
               title=f"{mode} mode: transformers (solid) and dense (dashed)"
               + ("; the dense model never scores visible genes" if mode == "rank" else ""))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    Path(a.out).mkdir(exist_ok=True)
    fig.savefig(Path(a.out) / a.figure, dpi=110)


if __name__ == "__main__":
    main()
