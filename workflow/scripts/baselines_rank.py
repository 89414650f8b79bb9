import torch

from l1kformer.baselines_rank import rank_baselines
from l1kformer.fileio import write_json
from l1kformer.mask import read_mask
from l1kformer.split import read_split
from l1kformer.step import job_threads, step

with step(snakemake.log[0]) as log:
    torch.set_num_threads(job_threads(snakemake.threads))  # blocks are scored on this many threads
    mask = read_mask(snakemake.input.mask)
    results, info = rank_baselines(snakemake.input.ranks, read_split(snakemake.input.split), mask["val"], mask["test"],
                                   log=log, **snakemake.params.settings)
    by_position = info.pop("by_position")
    write_json(snakemake.output.metrics, {"baselines": results, "by_position": by_position,
                                          "settings": {**snakemake.params.settings, **info}})
