"""Embeddings: per-profile (mean of the last layer over positions) and per-gene, and linear probes.

A linear probe (standardised features, multinomial logistic regression, stratified 5-fold CV) asks how
much of a metadata field (cell line, perturbation type, ...) the embeddings carry; the same probe on
the raw expression of the same profiles is its baseline.
"""

import numpy as np
import pandas as pd
import torch

from l1kformer.evaluate import dataset_of
from l1kformer.inference import autocast_for, to_inputs
from l1kformer.loader import RowBatches


@torch.no_grad()
def profile_embeddings(model, data_path, rows, batch_size=64, device="cpu"):
    """profiles x d_model, the unmasked profile through the model, mean of the last layer."""
    out = []
    autocast = autocast_for(device)
    for _, values in RowBatches(data_path, dataset_of(model), rows, batch_size).epoch(0, 0, shuffle=False):
        x = to_inputs(model, values, device)
        masked = torch.zeros(x.shape, dtype=torch.bool, device=device)
        with autocast():
            out.append(model.embeddings(x, masked).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.cfg.d_model), np.float32)


def gene_embeddings(model):
    """genes x d_model: the token embedding of each gene id (rank) or the gene-identity embedding."""
    table = model.token_emb.weight[: model.cfg.n_genes] if model.cfg.mode == "rank" else model.gene_emb.weight
    return table.detach().float().cpu().numpy()


def linear_probe(features, labels, folds=5, min_per_class=None, seed=0):
    """Cross-validated accuracy of a linear classifier, and the majority-class accuracy.

    Classes with fewer than ``folds`` members are dropped (stratified CV needs one per fold).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = pd.Series(labels).astype(str).to_numpy()
    counts = pd.Series(labels).value_counts()
    keep = np.isin(labels, counts[counts >= (min_per_class or folds)].index)
    x, y = features[keep], labels[keep]
    classes = np.unique(y)
    if len(classes) < 2:
        return {"accuracy": None, "majority": None, "n": int(keep.sum()), "classes": len(classes)}
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    acc = cross_val_score(probe, x, y, cv=cv)
    return {"accuracy": float(acc.mean()), "majority": float(counts[classes].max() / len(y)),
            "n": int(len(y)), "classes": int(len(classes))}
