from l1kformer.split import write_split
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    p = snakemake.params
    write_split(snakemake.input.samples, snakemake.output.split,
                {"train": p.train, "val": p.val, "test": p.test}, p.seed,
                group_by=p.group_by or None, log=log)
