import torch

from l1kformer.fileio import write_json
from l1kformer.mask import read_mask
from l1kformer.oracle import oracle_baseline
from l1kformer.step import job_threads, step

with step(snakemake.log[0]) as log:
    torch.set_num_threads(job_threads(snakemake.threads))  # blocks of profiles on this many threads
    results = oracle_baseline(snakemake.input.expression, snakemake.input.samples, snakemake.input.truth,
                              read_mask(snakemake.input.mask)["test"], log=log)
    # "bounds": these methods are shown beside the baselines but no model is measured against them
    write_json(snakemake.output.metrics, {"baselines": results, "bounds": sorted(results)})
