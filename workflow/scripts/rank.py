from l1kformer.rank import rank_file
from l1kformer.split import read_split
from l1kformer.step import job_threads, step

with step(snakemake.log[0]) as log:
    split = snakemake.input.get("split")
    rank_file(snakemake.input.expression, snakemake.output.ranks,
              normalization=snakemake.params.normalize,
              train_rows=read_split(split)["train"] if split else None,
              threads=job_threads(snakemake.threads), log=log)
