import pandas as pd

from l1kformer import plots
from l1kformer.fileio import read_json
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    run = snakemake.wildcards.run
    metrics = read_json(snakemake.input.metrics)
    pred = pd.read_parquet(snakemake.input.predictions)
    n_genes = metrics["model_config"]["n_genes"]
    plots.hexbin(pred["true_gene"], pred["pred_gene"], snakemake.output.genes, "true gene index",
                 "predicted gene index (argmax over all genes)", f"{run}: masked genes, test set")
    plots.rank_error_by_position(metrics["by_position"], None, snakemake.output.by_position,
                                 f"{run}: mean rank error by rank position, test set")
    plots.position_heatmap(pred["position"], pred["assigned_position"], n_genes, snakemake.output.heatmap,
                           f"{run}: true vs assigned rank position")
    base = metrics["baselines"]
    names = [run] + list(base)
    values = [metrics["test"]["c_top1"]] + [base[b]["c_top1"] for b in base]
    plots.model_vs_baselines(names, values, snakemake.output.baselines,
                             "test top-1 among the missing genes", f"{run} vs baselines (same mask)", {run})
