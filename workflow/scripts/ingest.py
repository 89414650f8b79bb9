from l1kformer.ingest import ingest
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    p = snakemake.params
    ingest(list(snakemake.input.matrices), snakemake.output.expression, snakemake.output.samples,
           snakemake.output.genes, n_genes=p.n_genes, gene_table=snakemake.input.get("gene_table"),
           gene_key=p.gene_key, gene_match=p.gene_match, orientation=p.orientation,
           filters=p.filters, log=log)
