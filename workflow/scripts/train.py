import os

import numpy as np
import torch

from l1kformer.fileio import atomic_path
from l1kformer.mask import read_mask
from l1kformer.split import read_split
from l1kformer.step import step
from l1kformer.train import final_model, fingerprint, train, write_history

with step(snakemake.log[0]) as log:
    torch.set_num_threads(snakemake.threads)
    import h5py

    data = snakemake.input.data
    with h5py.File(data, "r") as h5:
        n_genes = h5["ranks" if "ranks" in h5 else "expression"].shape[1]
    settings = {**snakemake.params.settings, "n_genes": n_genes}
    job_id = fingerprint(settings, [data, snakemake.input.split, snakemake.input.mask],
                         snakemake.input.package)
    checkpoint = os.path.join(os.path.dirname(snakemake.output.model), "checkpoint.pt")
    model, state = train(settings, data, read_split(snakemake.input.split),
                         read_mask(snakemake.input.mask)["val"], checkpoint, job_id, log=log)
    with atomic_path(snakemake.output.model) as tmp:
        torch.save(final_model(model, state, settings), tmp)
    with atomic_path(snakemake.output.history) as tmp:
        write_history(state["history"], tmp)
    os.remove(checkpoint)
    log(f"best epoch {state['best_epoch']} (val loss {state['best_val']:.4g}); wrote {snakemake.output.model}")
