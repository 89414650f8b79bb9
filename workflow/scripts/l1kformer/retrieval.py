"""Profile retrieval, scored with copairs (mean average precision, Kalinin et al. 2025).

For each test profile of a perturbation (``downstream.retrieval.field``, within one cell line:
``within``), are the other profiles of the same perturbation and cell line ranked above the profiles
of other perturbations in that cell line, by cosine similarity? copairs gives each profile's average
precision; the mean over a perturbation's profiles is its mAP, and a permutation null (``null_size``)
gives its p-value, corrected by Benjamini-Hochberg; a perturbation is retrieved when the corrected
p-value is below ``fdr``. The same profiles are scored in every representation: raw expression,
rank-position vectors, each run's embedding and each fine-tuned model's penultimate layer.
"""

import logging

import numpy as np
import pandas as pd


def profiles(meta, test_rows, settings):
    """The test rows retrieval scores (sorted): those the ``filter`` keeps, in groups of at least two
    profiles, at most ``max_profiles`` of them (a seeded pick of whole groups)."""
    field, within = settings["field"], settings["within"]
    rows = np.sort(np.asarray(test_rows))
    sub = meta.iloc[rows]
    keep = np.ones(len(rows), bool)
    for column, allowed in sorted((settings.get("filter") or {}).items()):
        keep &= sub[column].astype(str).isin([str(a) for a in allowed]).to_numpy()
    keys = sub[field].astype(str) + "\t" + (sub[within].astype(str) if within else "")
    sizes = keys[keep].value_counts()
    keep &= keys.map(sizes).fillna(0).to_numpy() >= 2
    rows = rows[keep]
    if len(rows) > settings["max_profiles"]:
        groups = keys[keep].unique()
        order = np.random.default_rng(settings["seed"]).permutation(len(groups))
        sizes = keys[keep].value_counts()[groups[order]].to_numpy()
        chosen = set(groups[order][: max(1, int(np.searchsorted(np.cumsum(sizes), settings["max_profiles"],
                                                                  side="right")))])
        rows = rows[keys[keep].isin(chosen).to_numpy()]
    return rows


def retrieval(meta, features, settings):
    """(per-group frame, summary frame) over ``features`` ({representation: profiles x width}, the
    rows of ``meta``, a frame of the profiles' sample fields)."""
    from copairs.map import average_precision, mean_average_precision

    logging.getLogger("copairs").setLevel(logging.WARNING)
    field, within = settings["field"], settings["within"]
    groups = [field] + ([within] if within else [])
    meta = meta[groups].astype(str).reset_index(drop=True)
    per_group, summary = [], []
    for name, feats in features.items():
        ap = average_precision(meta, np.asarray(feats, np.float64), pos_sameby=groups, pos_diffby=[],
                               neg_sameby=[within] if within else [], neg_diffby=[field], progress_bar=False)
        scored = mean_average_precision(ap, groups, null_size=settings["null_size"], threshold=settings["fdr"],
                                        seed=settings["seed"], progress_bar=False, max_workers=1)
        scored.insert(0, "representation", name)
        per_group.append(scored.drop(columns=[c for c in ("indices",) if c in scored.columns]))
        summary.append({"representation": name, "mAP": float(scored["mean_average_precision"].mean()),
                        "fraction_retrieved": float(scored["below_corrected_p"].mean()),
                        "n_groups": int(len(scored)), "n_profiles": int(len(meta))})
    return pd.concat(per_group, ignore_index=True), pd.DataFrame(summary)
