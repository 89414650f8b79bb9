"""Embeddings: per-profile (a readout of the last layer: model.py's ``READOUTS``, started from the train
profiles' token states as fine-tuning's phase 1 starts it; the dense model's last hidden layer) and
per-gene. What they are good for is measured downstream (finetune.py, retrieval.py)."""

import copy

import numpy as np
import pandas as pd
import torch

from l1kformer.device import autocast_for
from l1kformer.inference import dataset_of
from l1kformer.loader import RowBatches
from l1kformer.model import FineTuned, Readout
from l1kformer.tasks import get_task


@torch.no_grad()
def layer_readouts(net, train_values, to_inputs, autocast):
    """One copy of ``net``'s readout (a :class:`~l1kformer.model.FineTuned`'s) per layer of its trunk,
    each started from that layer's train token states (one pass over ``train_values``, batches of
    profiles as the loader reads them; the trunk in eval mode)."""
    net.eval()
    stats = None
    data_driven = type(net.readout).start_from is not Readout.start_from  # else one batch counts the layers
    for values in train_values:
        with autocast():
            layers = net.states(to_inputs(values), all_layers=True)
        if stats is None:
            stats = [[0.0, 0.0, 0] for _ in layers]
        for st, h in zip(stats, layers):
            h = h[:, : h.shape[1] - net.readout.extra_tokens].double()
            st[0] = st[0] + torch.einsum("btd,bte->de", h, h)
            st[1] = st[1] + h.sum(0)
            st[2] += h.shape[0]
        if not data_driven:
            break
    readouts = []
    for gram, total, count in stats:
        readout = copy.deepcopy(net.readout)
        readout.start_from(gram, total / count, count)
        readouts.append(readout)
    return readouts


def embedder(model, data_path, train_rows, readout="mean", readout_width=4, batch_size=64, device="cpu"):
    """A :class:`~l1kformer.model.FineTuned` whose readout of the last layer is started from the
    ``train_rows`` profiles' token states (no labels; its head unused): ``net.pooled`` embeds."""
    net = FineTuned(model, 1, 0.0, readout if model.cfg.trunk == "transformer" else "mean", readout_width).to(device)
    to_inputs = lambda values: get_task(model.cfg.mode).to_inputs(model, values, device)  # noqa: E731
    batches = (v for _, v in RowBatches(data_path, dataset_of(model), train_rows, batch_size).epoch(0, 0, shuffle=False))
    net.readout.load_state_dict(layer_readouts(net, batches, to_inputs, autocast_for(device))[-1].state_dict())
    return net.eval()


@torch.no_grad()
def profile_embeddings(net, data_path, rows, batch_size=64, device="cpu"):
    """profiles x width: the unmasked profile through ``net`` (an :func:`embedder`), read out."""
    out = []
    autocast = autocast_for(device)
    model = net.trunk
    for _, values in RowBatches(data_path, dataset_of(model), rows, batch_size).epoch(0, 0, shuffle=False):
        with autocast():
            out.append(net.pooled(get_task(model.cfg.mode).to_inputs(model, values, device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.out.in_features), np.float32)


def embedding_frame(embeddings, ids, id_column):
    """One row per profile or gene: the id, then the embedding as columns e0, e1, ..."""
    frame = pd.DataFrame(embeddings, columns=[f"e{k}" for k in range(embeddings.shape[1])])
    frame.insert(0, id_column, np.asarray(ids))
    return frame


def gene_embeddings(model):
    """genes x width: the model's per-gene embedding table (gene token, gene identity, or the dense
    model's first-layer weights of each gene's value)."""
    return model.gene_table().detach().float().cpu().numpy()
