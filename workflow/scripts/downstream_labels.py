import pandas as pd

from l1kformer.downstream import task_labels, write_labels
from l1kformer.fileio import atomic_path
from l1kformer.split import read_split
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    settings = snakemake.params.settings
    frame, classes = task_labels(pd.read_parquet(snakemake.input.samples), read_split(snakemake.input.split),
                                 snakemake.wildcards.task, settings, snakemake.params.group_by)
    with atomic_path(snakemake.output.labels) as tmp:
        write_labels(frame, classes, settings["field"], tmp)
    counts = frame["set"].value_counts()
    log(f"{settings['field']}: {len(classes)} classes; " + ", ".join(f"{counts.get(s, 0)} {s}" for s in
                                                                      ("train", "val", "test")) + " profiles")
