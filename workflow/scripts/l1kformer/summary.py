"""summary: every run and every baseline side by side, one row each."""

import pandas as pd

COLUMNS = ["name", "kind", "mode", "mse", "mae", "pearson", "profile_pearson", "profile_spearman",
           "gene_pearson", "gene_spearman", "ce", "top1", "top5", "mean_rank_error", "c_ce", "c_top1",
           "c_top5", "c_mean_rank_error", "assign_top1"]


def summary_table(run_metrics, baselines):
    """``run_metrics``: {run: metrics.json}; ``baselines``: {mode: {method: metrics}}."""
    rows = []
    for run, m in sorted(run_metrics.items()):
        row = {"name": run, "kind": "model", "mode": m["mode"], **m["test"]}
        for field, probe in sorted(m.get("probe", {}).items()):
            row[f"probe_{field}_embedding"] = probe["embedding"]["accuracy"]
            row[f"probe_{field}_expression"] = probe["expression"]["accuracy"]
        rows.append(row)
    for mode, methods in sorted(baselines.items()):
        for name, m in methods.items():
            rows.append({"name": name, "kind": "baseline", "mode": mode, **m})
    table = pd.DataFrame(rows)
    extra = sorted(c for c in table.columns if c not in COLUMNS)
    cols = [c for c in COLUMNS if c in table.columns] + [c for c in extra if c != "by_position"]
    return table[cols]
