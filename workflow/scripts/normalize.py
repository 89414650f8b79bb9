from l1kformer.normalize import normalize_file
from l1kformer.step import job_threads, step

with step(snakemake.log[0]) as log:
    normalize_file(snakemake.input.expression, snakemake.input.samples, snakemake.output.expression,
                   plate_field=snakemake.params.plate_field,
                   threads=job_threads(snakemake.threads), log=log)
