from l1kformer.ingest import ingest
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    ingest(list(snakemake.input.matrices), snakemake.output.expression, snakemake.output.samples,
           snakemake.output.genes, gene_table=snakemake.input.get("gene_table"),
           sample_table=list(snakemake.input.get("sample_tables", [])) or None, log=log, **snakemake.params.settings)
