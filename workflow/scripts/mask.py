import h5py

from l1kformer.mask import write_mask
from l1kformer.split import read_split
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    with h5py.File(snakemake.input.expression, "r") as h5:
        n_genes = h5["expression"].shape[1]
    s = snakemake.params.settings
    write_mask(read_split(snakemake.input.split), n_genes, snakemake.output.mask, s["ratio"], s["seed"], log=log)
