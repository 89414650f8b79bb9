"""Embeddings: per-profile (mean of the last layer over positions) and per-gene, and linear probes.

A linear probe (standardised features, multinomial logistic regression, stratified 5-fold CV) asks how
much of a metadata field (cell line, perturbation type, ...) the embeddings carry; the same probe on
the raw expression of the same profiles is its baseline.
"""

import numpy as np
import pandas as pd
import torch

from l1kformer.inference import autocast_for, dataset_of
from l1kformer.loader import RowBatches, read_rows
from l1kformer.tasks import get_task


@torch.no_grad()
def profile_embeddings(model, data_path, rows, batch_size=64, device="cpu"):
    """profiles x d_model, the unmasked profile through the model, mean of the last layer."""
    out = []
    autocast = autocast_for(device)
    for _, values in RowBatches(data_path, dataset_of(model), rows, batch_size).epoch(0, 0, shuffle=False):
        x = get_task(model.cfg.mode).to_inputs(model, values, device)
        masked = torch.zeros(x.shape[:2], dtype=torch.bool, device=device)
        with autocast():
            out.append(model.embeddings(x, masked).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.cfg.d_model), np.float32)


def embedding_frame(embeddings, ids, id_column):
    """One row per profile or gene: the id, then the embedding as columns e0, e1, ..."""
    frame = pd.DataFrame(embeddings, columns=[f"e{k}" for k in range(embeddings.shape[1])])
    frame.insert(0, id_column, np.asarray(ids))
    return frame


def gene_embeddings(model):
    """genes x width: the model's per-gene embedding table (gene token, gene identity, or the dense
    model's first-layer weights of each gene's value)."""
    return model.gene_table().detach().float().cpu().numpy()


def linear_probe(features, labels, folds=5, seed=0):
    """Cross-validated accuracy of a linear classifier, and the majority-class accuracy.

    Classes with fewer than ``folds`` members are dropped (stratified CV needs one per fold).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = pd.Series(labels).astype(str).to_numpy()
    counts = pd.Series(labels).value_counts()
    keep = np.isin(labels, counts[counts >= folds].index)
    x, y = features[keep], labels[keep]
    classes = np.unique(y)
    if len(classes) < 2:
        return {"accuracy": None, "majority": None, "n": int(keep.sum()), "classes": len(classes)}
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    acc = cross_val_score(probe, x, y, cv=cv)
    return {"accuracy": float(acc.mean()), "majority": float(counts[classes].max() / len(y)),
            "n": int(len(y)), "classes": int(len(classes))}


def probes(embedded, expression_path, meta, fields, max_profiles, log=print):
    """Linear probes of ``fields`` on the pooled embedded sets, against raw expression of the same
    profiles. ``embedded``: [(rows, embeddings)]; at most ``max_profiles`` profiles (seeded pick)."""
    rows = np.concatenate([r for r, _ in embedded])
    order = np.argsort(rows)
    rows, emb = rows[order], np.concatenate([e for _, e in embedded])[order]
    if len(rows) > max_profiles:
        pick = np.sort(np.random.default_rng(0).permutation(len(rows))[:max_profiles])
        rows, emb = rows[pick], emb[pick]
    expr = read_rows(expression_path, "expression", rows)
    out = {}
    for field in fields:
        if field not in meta.columns:
            log(f"probe: no sample field {field!r}, skipped")
            continue
        labels = meta[field].iloc[rows].to_numpy()
        out[field] = {"embedding": linear_probe(emb, labels), "expression": linear_probe(expr, labels)}
        log(f"probe {field}: accuracy {_fmt(out[field]['embedding']['accuracy'])} from the embedding, "
            f"{_fmt(out[field]['expression']['accuracy'])} from raw expression")
    return out


def _fmt(accuracy):
    return "n/a" if accuracy is None else f"{accuracy:.3f}"
