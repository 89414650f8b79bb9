"""Profile retrieval, scored with copairs (mean average precision, Kalinin et al. 2025), as the field
scores replicate retrieval.

A group is the profiles sharing every field of ``fields`` (by default compound, dose, time and cell
line: replicate wells, on replicate plates). For each profile of a group, are the other profiles of its
group ranked above the negatives in the same ``within`` (cell line), by cosine similarity? The
negatives (``negatives``) are the vehicle-control wells (``controls``: copairs' phenotypic activity,
does a compound's replicates stand out from DMSO), or the profiles of *other compounds*
(``compounds``: does a compound's signature tell it from the others). Profiles of the same compound at
another dose are neither. copairs gives each
profile's average precision; the mean over a group's profiles is its mAP, and a permutation null
(``null_size``) gives its p-value, corrected by Benjamini-Hochberg; a group is retrieved when the
corrected p-value is below ``fdr``. Before scoring, every representation is centred (``centre``):
``plate`` subtracts each plate's mean profile (over all its profiles in that representation),
``vehicle`` the mean of the plate's vehicle-control wells (``pert_type`` ``ctl_vehicle``, as Level 4
is taken against DMSO), ``none`` nothing. Then, with ``whiten``, each representation is spherized as
profiling pipelines do (pycytominer's ZCA): multiplied by the inverse square root of its covariance over
the candidate profiles (no labels used), shrunk towards the identity by a hundredth of the mean
variance, so that cosine similarity is not dominated by the few directions in which profiles vary most
(here the cell states and co-expression factors, which carry no compound). The same profiles are
scored in every representation, and a shuffled copy of the raw profile (rows permuted, seeded) is
scored as the null that every mAP reads against.
"""

import logging

import numpy as np
import pandas as pd

VEHICLE = "ctl_vehicle"


def group_keys(meta, settings):
    """Each profile's group key (its values of ``fields`` and ``within``, joined)."""
    columns = list(dict.fromkeys([*settings["fields"], *([settings["within"]] if settings["within"] else [])]))
    return meta[columns].astype(str).agg("\t".join, axis=1)


def is_control(meta):
    return (meta["pert_type"].astype(str) == VEHICLE).to_numpy() if "pert_type" in meta else np.zeros(len(meta), bool)


def profiles(meta, rows, settings):
    """The rows retrieval scores (sorted): those of ``rows`` the ``filter`` keeps, in groups of at least
    two profiles, at most ``max_profiles`` of them (a seeded pick of whole groups), and with
    ``negatives: controls`` every vehicle-control profile of ``rows``."""
    rows = np.sort(np.asarray(rows))
    controls = rows[is_control(meta.iloc[rows])] if settings["negatives"] == "controls" else rows[:0]
    sub = meta.iloc[rows]
    keep = np.ones(len(rows), bool)
    for column, allowed in sorted((settings.get("filter") or {}).items()):
        keep &= sub[column].astype(str).isin([str(a) for a in allowed]).to_numpy()
    keys = group_keys(sub, settings)
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
    return np.union1d(rows, controls)


def centred(features, meta, settings):
    """``features`` (profiles x width, the rows of ``meta``) less each plate's reference: its mean
    profile (``centre: plate``) or its vehicle wells' mean (``vehicle``); unchanged for ``none``."""
    how = settings["centre"]
    if how == "none":
        return np.asarray(features, np.float64)
    features = np.asarray(features, np.float64)
    plate = meta[settings["plate_field"]].astype(str).to_numpy()
    reference = np.ones(len(meta), bool) if how == "plate" else (meta["pert_type"].astype(str) == VEHICLE).to_numpy()
    out = np.empty_like(features)
    for p in np.unique(plate):
        on = plate == p
        if not (on & reference).any():
            raise ValueError(f"plate {p!r} has no {VEHICLE} well to centre on (downstream.retrieval.centre: vehicle)")
        out[on] = features[on] - features[on & reference].mean(0)
    return out


def whitened(features, settings):
    """``features`` (profiles x width) ZCA-whitened by their own covariance shrunk towards the identity
    by ``0.01 x`` the mean variance, or unchanged without ``whiten``."""
    if not settings["whiten"]:
        return features
    cov = np.cov(features, rowvar=False)
    cov = np.atleast_2d(cov) + 0.01 * max(float(np.trace(np.atleast_2d(cov))) / len(np.atleast_2d(cov)), 1e-12) \
        * np.eye(features.shape[1])
    values, vectors = np.linalg.eigh(cov)
    return features @ (vectors * values ** -0.5) @ vectors.T


def retrieval(meta, features, settings):
    """(per-group frame, summary frame, per-``by`` frame) over ``features`` ({representation: profiles x
    width}, the rows of ``meta``, a frame of the profiles' sample fields), all centred already."""
    from copairs.map import average_precision, mean_average_precision

    logging.getLogger("copairs").setLevel(logging.WARNING)
    fields, within, by = list(settings["fields"]), settings["within"], settings.get("by")
    groups = list(dict.fromkeys([*fields, *([within] if within else [])]))
    columns = list(dict.fromkeys(groups + ([by] if by else [])))
    control = is_control(meta) if settings["negatives"] == "controls" else np.zeros(len(meta), bool)
    meta = meta[columns].astype(str).reset_index(drop=True)
    # a control is its own group (no positives) and the only negative of a treated profile
    meta["reference"] = np.where(control, np.arange(len(meta)), -1)
    diff = [fields[0], "reference"] if control.any() else [fields[0]]
    per_group, summary, per_by = [], [], []
    for name, feats in features.items():
        ap = average_precision(meta, np.asarray(feats, np.float64), pos_sameby=[*groups, "reference"], pos_diffby=[],
                               neg_sameby=[within] if within else [], neg_diffby=diff, progress_bar=False)
        ap = ap[ap["reference"] == -1]
        scored = mean_average_precision(ap, groups, null_size=settings["null_size"], threshold=settings["fdr"],
                                        seed=settings["seed"], progress_bar=False, max_workers=1)
        scored.insert(0, "representation", name)
        scored = scored.drop(columns=[c for c in ("indices",) if c in scored.columns])
        per_group.append(scored)
        summary.append({"representation": name, "mAP": float(scored["mean_average_precision"].mean()),
                        "fraction_retrieved": float(scored["below_corrected_p"].mean()),
                        "n_groups": int(len(scored)), "n_profiles": int((~control).sum()),
                        "n_controls": int(control.sum())})
        if by:
            for value, part in scored.groupby(by):
                per_by.append({"representation": name, by: value,
                               "mAP": float(part["mean_average_precision"].mean()),
                               "fraction_retrieved": float(part["below_corrected_p"].mean()),
                               "n_groups": int(len(part))})
    by_frame = pd.DataFrame(per_by, columns=["representation", *([by] if by else []), "mAP", "fraction_retrieved",
                                             "n_groups"])
    if by and len(by_frame):
        key = pd.to_numeric(by_frame[by], errors="coerce")
        by_frame = by_frame.assign(_k=key if key.notna().all() else by_frame[by]).sort_values(
            ["representation", "_k"]).drop(columns="_k")
    return pd.concat(per_group, ignore_index=True), pd.DataFrame(summary), by_frame
