import os

import torch

from l1kformer.finetune import run_finetune
from l1kformer.device import pick_device
from l1kformer.step import job_threads, step

with step(snakemake.log[0]) as log:
    torch.set_num_threads(job_threads(snakemake.threads))
    out = snakemake.output
    run_finetune(snakemake.input.model, snakemake.input.data, snakemake.input.labels, snakemake.params.settings,
                 snakemake.wildcards.start, snakemake.wildcards.readout, (out.metrics, out.history, out.predictions, out.features),
                 os.path.join(os.path.dirname(out.metrics), "checkpoint.pt"),
                 pick_device(snakemake.params.device, log), sources=list(snakemake.input.package), log=log)
