"""The downstream figures, drawn with seaborn: accuracy per task, confusion matrices, fine-tuning curves
and the per-perturbation mAP of retrieval."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from l1kformer.figures import save  # noqa: E402


def accuracy(table, path):
    """Test accuracy of every model and baseline (and the Bayes ceiling on simulated data), one panel per task."""
    table = table.fillna({"variant": "", "readout": ""})
    data = table.assign(label=(table["name"] + " " + table["readout"] + " " + table["variant"]).str.split().str.join(" "))
    grid = sns.catplot(data=data, kind="bar", x="accuracy", y="label", hue="kind", col="task", sharey=False,
                       height=0.35 * data.groupby("task").size().max() + 1.5, aspect=1.3, dodge=False,
                       palette={"model": "#4c72b0", "baseline": "#bbbbbb", "oracle": "#55a868"})
    grid.set_titles("{col_name}")
    grid.set_axis_labels("test accuracy", "")
    for ax, (task, part) in zip(grid.axes.flat, data.groupby("task", sort=False)):
        top = part.loc[part["kind"] == "baseline", "accuracy"].max()
        ax.axvline(top, color="black", lw=0.8, ls="--")
    save(grid.figure, path)


def confusion(panels, classes, path):
    """Row-normalised test confusion matrices, one heatmap per model: ``panels`` [(title, true, predicted)]."""
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 1, 3.2 + 0.12 * len(classes)), squeeze=False)
    for ax, (title, true, pred) in zip(axes[0], panels):
        counts = pd.crosstab(pd.Categorical(true, range(len(classes))), pd.Categorical(pred, range(len(classes))),
                             dropna=False).to_numpy().astype(float)
        share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        sns.heatmap(share, ax=ax, vmin=0, vmax=1, cmap="viridis", square=True, cbar=ax is axes[0][-1],
                    xticklabels=classes if len(classes) <= 20 else False,
                    yticklabels=classes if len(classes) <= 20 else False)
        ax.set(title=title, xlabel="predicted", ylabel="true")
    if not panels:
        axes[0][0].text(0.5, 0.5, "no fine-tuned model", ha="center")
    save(fig, path)


def curves(history, path):
    """Val accuracy per epoch of every fine-tuning job (phase 1 then 2), one panel per task."""
    grid = sns.relplot(data=history, kind="line", x="step_epoch", y="val_accuracy", hue="run", style="phase",
                       col="task", markers=True, height=3.2, aspect=1.3, facet_kws={"sharey": False})
    grid.set_titles("{col_name}")
    grid.set_axis_labels("epoch (frozen head, then everything)", "val accuracy")
    save(grid.figure, path)


def retrieval_map(groups, summary, settings, path):
    """The mAP of each replicate group, per representation: box and points."""
    order = summary.sort_values("mAP", ascending=False)["representation"].tolist()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(order) + 1.5))
    sns.boxplot(data=groups, x="mean_average_precision", y="representation", order=order, ax=ax,
                color="#dddddd", fliersize=0)
    sns.stripplot(data=groups, x="mean_average_precision", y="representation", order=order, ax=ax,
                  hue="below_corrected_p", palette={True: "#c44e52", False: "#4c72b0"}, size=3, alpha=0.7)
    groups_of = list(dict.fromkeys([*settings["fields"], *([settings["within"]] if settings["within"] else [])]))
    ax.set(xlabel=f"mAP per group of {' x '.join(groups_of)} (centred: {settings['centre']})",
           ylabel="", xlim=(0, 1))
    ax.legend(title=f"corrected p < {settings['fdr']}", loc="lower right", fontsize=8)
    save(fig, path)
