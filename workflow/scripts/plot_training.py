import pandas as pd

from l1kformer import plots
from l1kformer.fileio import read_json
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    mode = read_json(snakemake.input.metrics)["mode"]
    history = pd.read_csv(snakemake.input.history, sep="\t")
    plots.training_curves(history, mode, snakemake.output.curves, title=f"{snakemake.wildcards.run} ({mode} mode)")
