from l1kformer.downstream_oracle import downstream_oracle
from l1kformer.fileio import write_json
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    write_json(snakemake.output.metrics, downstream_oracle(snakemake.input.expression, snakemake.input.samples,
                                                           snakemake.input.truth, snakemake.input.labels, log))
