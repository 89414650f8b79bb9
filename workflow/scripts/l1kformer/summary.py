"""summary: every run and every baseline side by side, one row each, and each run against the best
baseline on its task's headline metrics."""

import pandas as pd

from l1kformer.modes import MODES

BASE_COLUMNS = ["name", "kind", "mode", "beats_best_baseline", "best_baseline", "ratio_to_best_baseline"]


def summary_table(run_metrics, baselines, versus):
    """``run_metrics``: {run: metrics.json}; ``baselines``:
    {mode: {method: metrics}}; ``versus``: :func:`versus_baselines` of them."""
    rows = []
    for run, m in sorted(run_metrics.items()):
        row = {"name": run, "kind": "model", "mode": m["mode"], **m["test"]}
        metric = next(iter(MODES[m["mode"]].headline), None)
        if metric in versus[run]:  # plainly: does the run beat the best baseline on its headline metric?
            name, _, ratio = versus[run][metric]
            better = ratio < 1 if MODES[m["mode"]].headline[metric] == "min" else ratio > 1
            row.update(beats_best_baseline="yes" if better else "no", best_baseline=f"{name} ({metric})",
                       ratio_to_best_baseline=ratio)
        rows.append(row)
    for mode, methods in sorted(baselines.items()):
        for name, m in sorted(methods.items()):
            rows.append({"name": name, "kind": "baseline", "mode": mode, **m})
    table = pd.DataFrame(rows)
    known = BASE_COLUMNS + [c for _, mode in sorted(MODES.items()) for c in mode.summary_columns]
    extra = sorted(c for c in table.columns if c not in known and c != "by_position")
    return table[[c for c in known if c in table.columns] + extra]


def versus_baselines(run_metrics, baselines, bounds=()):
    """{run: {metric: (best baseline, its value, run / baseline)}} on each task's headline metrics;
    the methods named in ``bounds`` (the oracles) are not baselines and are left out."""
    out = {}
    for run, m in sorted(run_metrics.items()):
        real = {k: v for k, v in baselines.get(m["mode"], {}).items() if k not in bounds}
        out[run] = {}
        for metric, best in MODES[m["mode"]].headline.items():
            scored = {k: v[metric] for k, v in real.items() if v.get(metric) is not None}
            if scored:
                name = (min if best == "min" else max)(scored, key=scored.get)
                out[run][metric] = (name, scored[name], m["test"][metric] / max(scored[name], 1e-12))
    return out


def comparison_panels(modes):
    """(mode, headline metric, min or max) for the comparison figure, one per mode present."""
    return [(mode, *next(iter(MODES[mode].headline.items()))) for mode in sorted(modes) if mode in MODES]
