"""Embeddings: per-profile (mean of the last layer over positions; the dense model's last hidden
layer) and per-gene. What they are good for is measured downstream (finetune.py, retrieval.py)."""

import numpy as np
import pandas as pd
import torch

from l1kformer.inference import autocast_for, dataset_of
from l1kformer.loader import RowBatches
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
