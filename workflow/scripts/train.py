import os

import h5py
import torch

from l1kformer.distributed import launch
from l1kformer.step import job_threads, step
from l1kformer.tasks import get_task
from l1kformer.train import run_training

with step(snakemake.log[0]) as log:
    data = snakemake.input.data
    with h5py.File(data, "r") as h5:
        settings = snakemake.params.settings
        n_genes = h5[get_task(settings["mode"]).dataset_for(settings["rank_values"])].shape[1]
    settings = {**snakemake.params.settings, "n_genes": n_genes}
    outdir = os.path.dirname(snakemake.output.model)
    job = dict(settings=settings, data_path=data, split_path=snakemake.input.split,
               mask_path=snakemake.input.mask, model_path=snakemake.output.model,
               history_path=snakemake.output.history, checkpoint_path=os.path.join(outdir, "checkpoint.pt"),
               sources=list(snakemake.input.package), name=snakemake.wildcards.run)
    if settings["gpus"] == 1:
        torch.set_num_threads(job_threads(snakemake.threads))
        run_training(log=log, **job)
    else:  # DistributedDataParallel: torchrun starts one process per GPU (gloo processes on a CPU)
        launch(job, settings["gpus"], job_threads(snakemake.threads), snakemake.log[0],
               os.path.join(outdir, "ddp_job.json"), log)
