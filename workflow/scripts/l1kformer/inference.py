"""Running a model over stored profiles: inputs from loader values, and outputs on a static mask."""

import contextlib

import numpy as np
import torch


def to_inputs(model, values, device):
    """Loader values (profiles x genes) -> model input on ``device``: gene ids (rank mode, int64) or
    standardised values (expression mode). The input is also the target of masked positions."""
    if model.cfg.mode == "rank":
        return torch.from_numpy(values.astype(np.int64)).to(device, non_blocking=True)
    return model.standardize(torch.from_numpy(values).to(device, non_blocking=True).float())


def autocast_for(device):
    """bf16 autocast on CUDA, plain fp32 elsewhere."""
    if torch.device(device).type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


@torch.no_grad()
def masked_outputs(model, loader, mask_rows, mask_positions, device, autocast=None):
    """Yield (values, positions, outputs, targets) for each batch of a statically masked set.

    Profile ``mask_rows[i]`` has ``mask_positions[i]`` (sorted) masked and replaced by [MASK].
    ``outputs`` are the model's raw outputs at the masked positions in row-major order (logits,
    n_masked x n_genes, or standardised values, n_masked), ``targets`` the true tokens / values there.
    """
    model.eval()
    autocast = autocast or autocast_for(device)
    for rows, values in loader.epoch(0, 0, shuffle=False):
        x = to_inputs(model, values, device)
        pos = mask_positions[np.searchsorted(mask_rows, rows)].astype(np.int64)
        masked = torch.zeros(x.shape, dtype=torch.bool, device=device)
        masked.scatter_(1, torch.from_numpy(pos).to(device), True)
        inputs = x.masked_fill(masked, model.cfg.mask_id) if model.cfg.mode == "rank" else x
        with autocast():
            out, _ = model(inputs, masked)
        yield values, pos, out.float(), x[masked]
