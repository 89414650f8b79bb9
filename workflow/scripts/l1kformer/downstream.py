"""Downstream tasks: what a classification task is (labels on the pipeline's own split) and how it is scored.

A task (``downstream.tasks.{name}`` in config.yaml) classifies a sample field (``cell_id``,
``pert_id``, any joined field) of the profiles a ``filter`` keeps, on the pipeline's train / val / test
split. Classes are counted on train: those with fewer than ``min_count`` or more than ``max_count``
train profiles are dropped from every set (the research's perturbation task keeps 1,000 < n < 20,000
at 1.4 M profiles), and so are val and test profiles of classes train does not have. The labels file
holds, per kept profile, its row, its set and its class index; the classes are named in its metadata.
Torch-free: the models that use the labels are classify.py's.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from l1kformer.errors import InputError
from l1kformer.split import SETS


def task_labels(meta, split, name, settings, group_by=None):
    """DataFrame (row, set, label) of the task's profiles and its class names (sorted).

    ``meta``: the sample table (one row per profile, in row order); ``split``: {set: rows};
    ``settings``: the task's (field, filter, min_count, max_count). Bad settings raise InputError
    naming ``downstream.tasks.{name}``.
    """
    key = f"downstream.tasks.{name}"
    field = settings["field"]
    if group_by and field == group_by:
        raise InputError(f"{key}.field", f"{field} is the split's group_by: no {field} can be in both train "
                         f"and test, so the task cannot be learned; use another field or split.group_by")
    for column in [field, *sorted(settings.get("filter") or {})]:
        if column not in meta.columns:
            raise InputError(f"{key}", f"no sample field {column!r}; the samples have "
                             f"{', '.join(map(str, meta.columns))}")
    keep = np.ones(len(meta), bool)
    for column, allowed in sorted((settings.get("filter") or {}).items()):
        keep &= meta[column].astype(str).isin([str(a) for a in allowed]).to_numpy()
    labels = meta[field].astype("string")
    keep &= labels.notna().to_numpy() & ~labels.isin(["-666", ""]).to_numpy()  # L1000's missing value
    set_of = np.full(len(meta), "", dtype=object)
    for s in SETS:
        set_of[split[s]] = s
    keep &= set_of != ""
    frame = pd.DataFrame({"row": np.flatnonzero(keep), "set": set_of[keep], "label": labels[keep].to_numpy()})
    counts = frame.loc[frame["set"] == "train", "label"].value_counts()
    lo, hi = settings.get("min_count") or 0, settings.get("max_count")
    kept = counts[(counts >= lo) & ((counts <= hi) if hi is not None else True)]
    frame = frame[frame["label"].isin(kept.index)]
    classes = sorted(kept.index)
    if len(classes) < 2:
        raise InputError(key, f"{len(classes)} class(es) of {field} left after the filter and the class counts "
                         f"({len(counts)} in train, {len(kept)} with {lo} <= count"
                         f"{f' <= {hi}' if hi is not None else ''}): a classification needs at least 2")
    for s in ("val", "test"):
        if not (frame["set"] == s).any():
            raise InputError(key, f"no {s} profile of the kept classes of {field}: the task cannot be scored")
    frame = frame.assign(label=pd.Categorical(frame["label"], categories=classes).codes.astype(np.int64))
    return frame.reset_index(drop=True), classes


def write_labels(frame, classes, field, path):
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {b"classes": json.dumps(classes).encode(), b"field": field.encode()}
    pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **meta}), path)


def read_labels(path):
    """(frame, classes) of a labels file: frame (row, set, label), rows sorted within each set."""
    table = pq.read_table(path)
    classes = json.loads(table.schema.metadata[b"classes"])
    return table.to_pandas(), classes


def labels_field(path):
    """The sample field a labels file classifies."""
    return pq.read_schema(path).metadata[b"field"].decode()


def set_labels(frame, name):
    """(rows, labels) of one set, rows sorted."""
    part = frame[frame["set"] == name].sort_values("row")
    return part["row"].to_numpy(np.int64), part["label"].to_numpy(np.int64)


def rank_positions(ranks):
    """profiles x genes: each gene's position in the profile's ranking (``ranks``: gene ids in rank
    order), centred and scaled to unit variance (as the rank models' genes view sees it)."""
    n = ranks.shape[1]
    pos = np.empty(ranks.shape, np.float32)
    np.put_along_axis(pos, ranks.astype(np.int64), np.arange(n, dtype=np.float32)[None, :], axis=1)
    return (pos / max(1, n - 1) - 0.5) * 3.46


def scores(y_true, y_pred, n_classes):
    """Accuracy, macro-F1 and balanced accuracy (over the classes present in ``y_true``)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    labels = np.arange(n_classes)
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "n_classes": int(len(labels)), "n_test": int(len(y_true))}


def majority(frame, n_classes):
    """The majority class of train, scored on val and test."""
    top = int(np.bincount(set_labels(frame, "train")[1], minlength=n_classes).argmax())
    out = {}
    for s in ("val", "test"):
        _, y = set_labels(frame, s)
        out[s] = scores(y, np.full(len(y), top), n_classes)
    return out


METRICS = ("accuracy", "macro_f1", "balanced_accuracy", "n_classes", "n_test")


def finetune_job(path):
    """(run, start, readout, task) of a fine-tuning job's file: runs/{run}/downstream/{start}/{readout}/{task}/{file}."""
    parts = Path(path).parts
    return parts[-6], parts[-4], parts[-3], parts[-2]


def _variants(start, metrics):
    """(variant name, its metrics) of one fine-tuning job: from a pretrained trunk the fine-tuned model,
    the frozen last layer (embedding) and the probes of the layers below; from scratch one."""
    if start == "scratch":
        return [("from_scratch", metrics["finetuned"])]
    probes = metrics.get("probes", {})
    below = sorted((int(k) for k in probes), key=int)[:-1]
    return ([("finetuned", metrics["finetuned"]), ("embedding", metrics["embedding"])]
            + [(f"probe_layer{k}", probes[str(k)]) for k in below])


def summary_rows(task, field, baselines, finetuned, oracle=None):
    """The rows of downstream.tsv for one task: the Bayes ceiling where there is one (``oracle``: its
    metrics, simulated data), every baseline, then every run's variants per readout (``finetuned``:
    {(run, start, readout): metrics.json}), each with its test scores and val accuracy, and for the
    models whether they beat the best baseline (by test accuracy, majority included) and their share of
    the ceiling."""
    rows = []
    if oracle and "test" in oracle:
        rows.append({"task": task, "field": field, "name": "oracle", "variant": "", "readout": "", "kind": "oracle",
                     **{k: oracle["test"][k] for k in METRICS}, "val_accuracy": oracle["val"]["accuracy"]})
    base = [{"task": task, "field": field, "name": name, "variant": "", "readout": "", "kind": "baseline",
             **{k: m["test"][k] for k in METRICS}, "val_accuracy": m["val"]["accuracy"]}
            for name, m in sorted(baselines.items())]
    rows += base
    best = max(base, key=lambda r: r["accuracy"])
    ceiling = rows[0]["accuracy"] if rows[0]["kind"] == "oracle" else None
    for (run, start, readout), m in sorted(finetuned.items()):
        for variant, v in _variants(start, m):
            r = {"task": task, "field": field, "name": run, "variant": variant, "readout": readout, "kind": "model",
                 **{k: v["test"][k] for k in METRICS}, "val_accuracy": v["val"]["accuracy"]}
            r.update(beats_best_baseline="yes" if r["accuracy"] > best["accuracy"] else "no",
                     best_baseline=best["name"], ratio_to_best_baseline=r["accuracy"] / max(best["accuracy"], 1e-12))
            if ceiling is not None:
                r["share_of_oracle"] = r["accuracy"] / max(ceiling, 1e-12)
            rows.append(r)
    return rows
