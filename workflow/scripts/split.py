from l1kformer.split import write_split
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    s = snakemake.params.settings
    write_split(snakemake.input.samples, snakemake.output.split,
                {"train": s["train"], "val": s["val"], "test": s["test"]}, s["seed"], group_by=s["group_by"], log=log)
