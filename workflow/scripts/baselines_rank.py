from l1kformer.baselines import rank_baselines
from l1kformer.fileio import write_json
from l1kformer.mask import read_mask
from l1kformer.split import read_split
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    split = read_split(snakemake.input.split)
    rows, positions = read_mask(snakemake.input.mask)["test"]
    results = rank_baselines(snakemake.input.ranks, split["train"], rows, positions,
                             sigma=snakemake.params.smoothing_sigma, log=log)
    write_json(snakemake.output.metrics, {"baselines": results,
                                          "settings": {"smoothing_sigma": snakemake.params.smoothing_sigma}})
