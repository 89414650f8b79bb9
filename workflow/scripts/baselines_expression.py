import torch

from l1kformer.baselines_expression import expression_baselines
from l1kformer.fileio import data_units, write_json
from l1kformer.mask import read_mask
from l1kformer.split import read_split
from l1kformer.step import job_threads, step

with step(snakemake.log[0]) as log:
    torch.set_num_threads(job_threads(snakemake.threads))  # blocks are scored on this many threads
    mask = read_mask(snakemake.input.mask)
    results, info = expression_baselines(snakemake.input.expression, read_split(snakemake.input.split), mask["val"],
                                         mask["test"], log=log, **snakemake.params.settings)
    units = data_units(snakemake.input.expression)
    log(f"errors are in {units} units")
    write_json(snakemake.output.metrics, {"baselines": results, "units": units, "settings": info})
