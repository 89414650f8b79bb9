"""Running a model: a model rebuilt from its file, and its outputs on a static mask."""

import torch

from l1kformer.device import autocast_for

from l1kformer.loader import RowBatches, masked_batches
from l1kformer.model import build_model, positions_mask
from l1kformer.modes import get_mode
from l1kformer.tasks import get_task


def load_model(path, device="cpu"):
    """Rebuild a model from its self-describing file (no config needed): (model, file contents)."""
    ckpt = torch.load(path, map_location=device, weights_only=False)
    model = build_model(ckpt["model_config"], path)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


def dataset_of(model):
    """The HDF5 data set the model reads (``ranks`` or ``expression``)."""
    return get_mode(model.cfg.mode).dataset


@torch.no_grad()
def masked_outputs(model, loader, mask_rows, mask_positions, device, autocast=None):
    """Yield (values, positions, outputs, targets) for each batch of a statically masked set.

    Profile ``mask_rows[i]`` has ``mask_positions[i]`` (sorted) masked. ``outputs`` are the model's
    raw outputs at the masked positions in row-major order (rank: logits, n_masked x n_genes;
    expression: standardised values, n_masked), ``targets`` the true inputs there.
    """
    model.eval()
    autocast = autocast or autocast_for(device)
    task = get_task(model.cfg.mode)
    for values, pos in masked_batches(loader, mask_rows, mask_positions):
        x = task.to_inputs(model, values, device)
        index = torch.from_numpy(pos).to(device)
        with autocast():
            out = model(task.mask_inputs(x, positions_mask(x, index), model.cfg.n_genes), index)
        yield values, pos, out.float(), task.targets(x, index)


def predict_masked(model, data_path, rows, positions, batch_size=64, device="cpu"):
    """Yield (values, positions, raw outputs) per batch of the masked set, in row order."""
    loader = RowBatches(data_path, dataset_of(model), rows, batch_size)
    for values, pos, out, _ in masked_outputs(model, loader, rows, positions, device):
        yield values, pos, out
