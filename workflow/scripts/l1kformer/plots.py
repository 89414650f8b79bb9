"""Figures for the report (PNG). Each function takes tables and writes one file."""

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def training_curves(history, mode, path, title=""):
    fig, ax = plt.subplots(2, 2, figsize=(10, 7))
    ep = history["epoch"]
    ax[0, 0].plot(ep, history["train_loss"], "o-", label="train (dynamic masks)")
    ax[0, 0].plot(ep, history["val_loss"], "s-", label="val (static mask)")
    ax[0, 0].set(xlabel="epoch", ylabel="cross-entropy" if mode == "rank" else "MSE (standardised)",
                 title="loss on masked positions")
    ax[0, 0].legend()
    if mode == "rank":
        ax[0, 1].plot(ep, history["val_top1"], "o-", color="C2")
        ax[0, 1].set(ylabel="val top-1 accuracy", title="val top-1 (all genes)")
    else:
        ax[0, 1].plot(ep, history["val_pearson"], "o-", color="C2")
        ax[0, 1].set(ylabel="val Pearson r (original units)", title="val Pearson r")
    ax[0, 1].set_xlabel("epoch")
    ax[1, 0].plot(ep, history["lr"], "o-", color="C3")
    ax[1, 0].set(xlabel="epoch", ylabel="learning rate (end of epoch)", title="learning rate")
    ax[1, 1].plot(ep, history["mask_ratio"], "o-", color="C4")
    ax[1, 1].set(xlabel="epoch", ylabel="mask ratio (end of epoch)", title="training mask ratio")
    for a in ax.ravel():
        a.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.suptitle(title)
    _save(fig, path)


def hexbin(x, y, path, xlabel, ylabel, title, diagonal=True):
    fig, ax = plt.subplots(figsize=(6, 5.5))
    hb = ax.hexbin(x, y, gridsize=60, bins="log", mincnt=1, cmap="viridis")
    fig.colorbar(hb, ax=ax, label="count (log)")
    if diagonal:
        lo, hi = min(np.min(x), np.min(y)), max(np.max(x), np.max(y))
        ax.plot([lo, hi], [lo, hi], "r--", lw=1, label="y = x")
        ax.legend(loc="upper left")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    _save(fig, path)


def rank_error_by_position(by_position, baseline_by_position, path, title):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(by_position["bin_start"], by_position["mean_rank_error"], "o-", label="model, all genes")
    ax.plot(by_position["bin_start"], by_position["c_mean_rank_error"], "s-", label="model, missing genes only")
    if baseline_by_position is not None:
        ax.plot(baseline_by_position["bin_start"], baseline_by_position["c_mean_rank_error"], "^--",
                label="baseline (smoothed position frequency), missing genes")
    ax.set(xlabel="rank position (0 = highest expression; bins of ~49)", ylabel="mean rank error",
           title=title)
    ax.legend()
    _save(fig, path)


def position_heatmap(true_pos, assigned_pos, n_genes, path, title):
    fig, ax = plt.subplots(figsize=(6, 5.5))
    bins = np.linspace(0, n_genes, 50)
    h, _, _ = np.histogram2d(true_pos, assigned_pos, bins=[bins, bins])
    im = ax.imshow(np.log1p(h.T), origin="lower", extent=[0, n_genes, 0, n_genes], cmap="magma", aspect="auto")
    fig.colorbar(im, ax=ax, label="log(1 + count)")
    ax.set(xlabel="true rank position of the masked gene", ylabel="position assigned (Hungarian decoding)",
           title=title)
    _save(fig, path)


def worst_genes(pred, gene_names, path, title, n=30):
    err = pred.assign(sq=(pred["pred"] - pred["true"]) ** 2).groupby("gene")["sq"].mean()
    worst = err.sort_values(ascending=False).head(n)
    fig, ax = plt.subplots(figsize=(7, 0.22 * n + 1.5))
    ax.barh([gene_names[g] for g in worst.index[::-1]], worst.values[::-1], color="C1")
    ax.set(xlabel="MSE on masked entries (log2 units squared)", ylabel="gene", title=title)
    ax.axvline(err.mean(), color="k", ls="--", lw=1, label=f"mean over genes {err.mean():.3f}")
    ax.legend()
    _save(fig, path)


def error_vs_level(pred, path, title):
    bins = np.quantile(pred["true"], np.linspace(0, 1, 21))
    which = np.clip(np.digitize(pred["true"], bins[1:-1]), 0, 19)
    centres = pred.groupby(which)["true"].mean()
    mae = (pred["pred"] - pred["true"]).abs().groupby(which).mean()
    bias = (pred["pred"] - pred["true"]).groupby(which).mean()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(centres, mae, "o-", label="mean absolute error")
    ax.plot(centres, bias, "s--", label="mean error (pred - true)")
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xlabel="true expression (log2; 20 quantile bins)", ylabel="error (log2 units)", title=title)
    ax.legend()
    _save(fig, path)


def model_vs_baselines(names, values, path, ylabel, title, highlight):
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names) + 2), 4.5))
    colors = ["C3" if n in highlight else "C0" for n in names]
    bars = ax.bar(range(len(names)), values, color=colors)
    ax.bar_label(bars, fmt="%.3g", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set(ylabel=ylabel, title=title)
    _save(fig, path)


def comparison(summary, path):
    """Every run and baseline side by side: MSE (expression) and constrained top-1 (rank)."""
    panels = [("expression", "mse", "test MSE, masked values (lower is better)"),
              ("rank", "c_top1", "test top-1 among missing genes (higher is better)")]
    panels = [p for p in panels if (summary["mode"] == p[0]).any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False)
    for ax, (mode, col, label) in zip(axes[0], panels):
        rows = summary[(summary["mode"] == mode) & summary[col].notna()]
        colors = ["C3" if k == "model" else "C0" for k in rows["kind"]]
        bars = ax.bar(range(len(rows)), rows[col], color=colors)
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set_xticks(range(len(rows)), rows["name"], rotation=35, ha="right")
        ax.set(ylabel=label, title=f"{mode} mode: models (red) and baselines (blue)")
    _save(fig, path)
