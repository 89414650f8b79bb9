"""Figures for the report (PNG). Each function takes tables and writes one file."""

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from l1kformer.figures import save  # noqa: E402


def training_curves(history, path, title, metric, metric_label, loss_label, references=None):
    """Loss, the task's val metric (with ``references``: {label: level} lines, e.g. baselines), learning
    rate and mask ratio by epoch."""
    fig, ax = plt.subplots(2, 2, figsize=(10, 7))
    ep = history["epoch"]
    ax[0, 0].plot(ep, history["train_loss"], "o-", label="train (dynamic masks)")
    ax[0, 0].plot(ep, history["val_loss"], "s-", label="val (static mask)")
    ax[0, 0].set(xlabel="epoch", ylabel=loss_label, title="loss on masked positions")
    ax[0, 0].legend()
    ax[0, 1].plot(ep, history[metric], "o-", color="C2", label="model (val mask)")
    for k, (label, level) in enumerate((references or {}).items()):
        ax[0, 1].axhline(level, color=f"C{5 + k}", ls="--", lw=1, label=label)
    if references:
        ax[0, 1].legend(fontsize=8)
    ax[0, 1].set(xlabel="epoch", ylabel=metric_label, title=metric_label)
    for a in ax.ravel():  # plain numbers: no offset notation colliding with the titles
        a.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax[1, 0].plot(ep, history["lr"], "o-", color="C3")
    ax[1, 0].set(xlabel="epoch", ylabel="learning rate (end of epoch)", title="learning rate")
    ax[1, 1].plot(ep, history["mask_ratio"], "o-", color="C4")
    ax[1, 1].set(xlabel="epoch", ylabel="mask ratio (end of epoch)", title="training mask ratio")
    for a in ax.ravel():
        a.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.suptitle(title)
    save(fig, path)


def hexbin(x, y, path, xlabel, ylabel, title):
    fig, ax = plt.subplots(figsize=(6, 5.5))
    hb = ax.hexbin(x, y, gridsize=60, bins="log", mincnt=1, cmap="viridis")
    fig.colorbar(hb, ax=ax, label="count (log)")
    lo, hi = min(np.min(x), np.min(y)), max(np.max(x), np.max(y))
    ax.plot([lo, hi], [lo, hi], "r--", lw=1, label="y = x")
    ax.legend(loc="upper left")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    save(fig, path)


def lines(path, x, series, xlabel, ylabel, title, zero_line=False):
    """One line per (values, style, label) against ``x``."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for values, style, label in series:
        ax.plot(x, values, style, label=label)
    if zero_line:
        ax.axhline(0, color="k", lw=0.8)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend()
    save(fig, path)


def model_vs_baselines(names, values, path, ylabel, title, highlight):
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names) + 2), 4.5))
    colors = ["C3" if n in highlight else "C0" for n in names]
    bars = ax.bar(range(len(names)), values, color=colors)
    ax.bar_label(bars, fmt="%.4g", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set(ylabel=ylabel, title=title)
    save(fig, path)


# --- the figures of one run, named by the tasks (tasks.py: ``figures``) -------------------------------
# Each takes the run's context (run, history, metrics, pred, baselines, gene_names, n_genes) and a path.

def _references(baselines, metric, names):
    return {f"{n} (test mask)": baselines[n][metric] for n in names if n in baselines and
            baselines[n].get(metric) is not None}


def rank_training_curves(ctx, path):
    # both trunks score only the missing genes, so their val top-1 is the baselines' constrained top-1
    training_curves(ctx["history"], path, f"{ctx['run']} (rank mode)", "val_top1",
                    "val top-1 among the missing genes", "cross-entropy",
                    _references(ctx["baselines"], "c_top1", ["position_frequency_smoothed", "gaussian_positions"]))


def expression_training_curves(ctx, path):
    training_curves(ctx["history"], path, f"{ctx['run']} (expression mode)", "val_pearson",
                    "val Pearson r (original units)", "MSE (standardised)",
                    _references(ctx["baselines"], "pearson", ["gene_mean", "linear_shrunk"]))


def gene_errors(ctx, path):
    """Per gene: the model's mean rank error among the missing genes against the gene's typical rank
    position when masked (genes that sit at the top or bottom of the ranking are the easy ones)."""
    pred = ctx["pred"]
    per_gene = pred.groupby("true_gene").agg(position=("position", "mean"), error=("c_rank_error", "mean"),
                                             n=("position", "size"))
    fig, ax = plt.subplots(figsize=(7, 5))
    sc = ax.scatter(per_gene["position"], per_gene["error"], c=np.log10(per_gene["n"]), s=10, cmap="viridis")
    fig.colorbar(sc, ax=ax, label="log10 masked occurrences")
    k = ctx["metrics"]["n_masked_per_profile"]
    ax.axhline((k - 1) / 2, color="k", ls="--", lw=1, label=f"chance among the {k} missing genes")
    ax.set(xlabel="mean true rank position of the gene when masked (0 = highest)",
           ylabel="mean rank error among the missing genes",
           title=f"{ctx['run']}: per-gene error, test set ({len(per_gene)} genes)")
    ax.legend(loc="lower center")
    save(fig, path)


def rank_error_by_position(ctx, path):
    by_position = ctx["metrics"]["by_position"]
    # the models score only the missing genes, so their all-genes curve is this one
    series = [(by_position["c_mean_rank_error"], "o-", "model, missing genes only")]
    for k, name in enumerate(("position_frequency_smoothed", "gaussian_positions")):
        if name in ctx.get("baseline_by_position", {}):
            series.append((ctx["baseline_by_position"][name]["c_mean_rank_error"], f"C{3 + k}--",
                           f"{name}, missing genes only"))
    lines(path, by_position["bin_start"], series, xlabel="rank position (0 = highest expression; 20 bins)",
          ylabel="mean rank error", title=f"{ctx['run']}: mean rank error by rank position, test set (same mask)")


def position_heatmap(ctx, path):
    pred, n_genes = ctx["pred"], ctx["n_genes"]
    fig, ax = plt.subplots(figsize=(6, 5.5))
    bins = np.linspace(0, n_genes, 50)
    h, _, _ = np.histogram2d(pred["position"], pred["assigned_position"], bins=[bins, bins])
    im = ax.imshow(np.log1p(h.T), origin="lower", extent=[0, n_genes, 0, n_genes], cmap="magma", aspect="auto")
    fig.colorbar(im, ax=ax, label="log(1 + count)")
    ax.set(xlabel="true rank position of the masked gene", ylabel="position assigned (Hungarian decoding)",
           title=f"{ctx['run']}: true vs assigned rank position")
    save(fig, path)


def rank_vs_baselines(ctx, path):
    run, base = ctx["run"], ctx["baselines"]
    model_vs_baselines([run] + list(base), [ctx["metrics"]["test"]["c_top1"]] + [base[b]["c_top1"] for b in base],
                       path, "test top-1 among the missing genes", f"{run} vs baselines (same mask)", {run})


UNITS = {"log2": "log2", "z": "z-score", "raw": "raw units, not log2"}


def _units(ctx):
    """How the run's values are measured (ingest's ``units``: log2 Level 3, z-scores, raw)."""
    return UNITS.get(ctx["metrics"].get("units") or "log2", ctx["metrics"].get("units"))


def expression_scatter(ctx, path):
    pred, units = ctx["pred"], _units(ctx)
    hexbin(pred["true"], pred["pred"], path, f"true expression ({units})", f"predicted expression ({units})",
           f"{ctx['run']}: masked values, test set (Pearson r {ctx['metrics']['test']['pearson']:.3f})")


def worst_genes(ctx, path, n=30):
    pred, gene_names = ctx["pred"], ctx["gene_names"]
    err = pred.assign(sq=(pred["pred"] - pred["true"]) ** 2).groupby("gene")["sq"].mean()
    worst = err.sort_values(ascending=False).head(n)
    fig, ax = plt.subplots(figsize=(7, 0.22 * n + 1.5))
    ax.barh([gene_names[g] for g in worst.index[::-1]], worst.values[::-1], color="C1")
    ax.set(xlabel=f"MSE on masked entries ({_units(ctx)}, squared)", ylabel="gene",
           title=f"{ctx['run']}: the {n} genes with the largest error")
    ax.axvline(err.mean(), color="k", ls="--", lw=1, label=f"mean over genes {err.mean():.3f}")
    ax.legend()
    save(fig, path)


def error_vs_level(ctx, path):
    pred = ctx["pred"]
    bins = np.quantile(pred["true"], np.linspace(0, 1, 21))
    which = np.clip(np.digitize(pred["true"], bins[1:-1]), 0, 19)
    centres = pred.groupby(which)["true"].mean()
    mae = (pred["pred"] - pred["true"]).abs().groupby(which).mean()
    bias = (pred["pred"] - pred["true"]).groupby(which).mean()
    lines(path, centres, [(mae, "o-", "mean absolute error"), (bias, "s--", "mean error (pred - true)")],
          xlabel=f"true expression ({_units(ctx)}; 20 quantile bins)", ylabel=f"error ({_units(ctx)})",
          title=f"{ctx['run']}: error against expression level", zero_line=True)


def expression_vs_baselines(ctx, path):
    run, base = ctx["run"], ctx["baselines"]
    model_vs_baselines([run] + list(base), [ctx["metrics"]["test"]["mse"]] + [base[b]["mse"] for b in base],
                       path, f"test MSE on masked values ({_units(ctx)}, squared)",
                       f"{run} vs baselines (same mask; lower is better)",
                       {run})


def comparison(summary, panels, path):
    """Every run and baseline side by side, one panel per mode: ``panels`` [(mode, metric, "min"|"max")]."""
    panels = [p for p in panels if (summary["mode"] == p[0]).any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False)
    for ax, (mode, col, best) in zip(axes[0], panels):
        rows = summary[(summary["mode"] == mode) & summary[col].notna()]
        colors = ["C3" if k == "model" else "C0" for k in rows["kind"]]
        bars = ax.bar(range(len(rows)), rows[col], color=colors)
        ax.bar_label(bars, fmt="%.4g", fontsize=8)
        ax.set_xticks(range(len(rows)), rows["name"], rotation=35, ha="right")
        ax.set(ylabel=f"test {col} ({'lower' if best == 'min' else 'higher'} is better)",
               title=f"{mode} mode: models (red) and baselines (blue)")
    save(fig, path)
