import pandas as pd

from l1kformer import plots
from l1kformer.fileio import read_baselines, read_json
from l1kformer.step import step
from l1kformer.modes import get_mode

with step(snakemake.log[0]) as log:
    metrics = read_json(snakemake.input.metrics)
    genes = pd.read_csv(snakemake.input.genes, sep="\t", dtype=str)
    ctx = {"run": snakemake.wildcards.run, "metrics": metrics, "n_genes": metrics["model_config"]["n_genes"],
           "history": pd.read_csv(snakemake.input.history, sep="\t"),
           "pred": pd.read_parquet(snakemake.input.predictions), "baselines": read_baselines(snakemake.input.baselines),
           "baseline_by_position": read_baselines(snakemake.input.baselines, "by_position"),
           "gene_names": (genes["pr_gene_symbol"] if "pr_gene_symbol" in genes else genes["gene_id"]).tolist()}
    for name, function in get_mode(metrics["mode"]).figures.items():
        getattr(plots, function)(ctx, snakemake.output[name])
        log(f"wrote {snakemake.output[name]}")
