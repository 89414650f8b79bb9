import os

import torch

from l1kformer.distributed import launch
from l1kformer.step import job_threads, step
from l1kformer.train import run_training

with step(snakemake.log[0]) as log:
    settings = snakemake.params.settings
    outdir = os.path.dirname(snakemake.output.model)
    job = dict(settings=settings, data_path=snakemake.input.data, split_path=snakemake.input.split,
               mask_path=snakemake.input.mask, model_path=snakemake.output.model,
               history_path=snakemake.output.history, checkpoint_path=os.path.join(outdir, "checkpoint.pt"),
               sources=list(snakemake.input.package), name=snakemake.wildcards.run)
    if settings["gpus"] == 1:
        torch.set_num_threads(job_threads(snakemake.threads))
        run_training(log=log, **job)
    else:  # DistributedDataParallel: torchrun starts one process per GPU (gloo processes on a CPU)
        launch(job, settings["gpus"], job_threads(snakemake.threads), snakemake.log[0],
               os.path.join(outdir, "ddp_job.json"), log)
