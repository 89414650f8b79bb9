import pandas as pd

from l1kformer import plots
from l1kformer.fileio import read_json
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    run = snakemake.wildcards.run
    metrics = read_json(snakemake.input.metrics)
    pred = pd.read_parquet(snakemake.input.predictions)
    genes = pd.read_csv(snakemake.input.genes, sep="\t", dtype=str)
    names = (genes["pr_gene_symbol"] if "pr_gene_symbol" in genes else genes["gene_id"]).tolist()
    plots.hexbin(pred["true"], pred["pred"], snakemake.output.scatter, "true expression (log2)",
                 "predicted expression (log2)", f"{run}: masked values, test set "
                 f"(Pearson r {metrics['test']['pearson']:.3f})")
    plots.worst_genes(pred, names, snakemake.output.worst_genes, f"{run}: the 30 genes with the largest error")
    plots.error_vs_level(pred, snakemake.output.error_vs_level, f"{run}: error against expression level")
    base = metrics["baselines"]
    labels = [run] + list(base)
    values = [metrics["test"]["mse"]] + [base[b]["mse"] for b in base]
    plots.model_vs_baselines(labels, values, snakemake.output.baselines, "test MSE on masked values (log2^2)",
                             f"{run} vs baselines (same mask; lower is better)", {run})
