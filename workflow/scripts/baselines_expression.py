import pandas as pd

from l1kformer.baselines import expression_baselines
from l1kformer.fileio import write_json
from l1kformer.mask import read_mask
from l1kformer.split import read_split
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    p = snakemake.params
    split = read_split(snakemake.input.split)
    mask = read_mask(snakemake.input.mask)
    oracle = None
    if snakemake.input.get("truth"):  # simulated data: the generator's parameters give the Bayes oracle
        from l1kformer.simulate import codes_from_meta, load_truth, oracle_predict

        truth = load_truth(snakemake.input.truth)
        meta = pd.read_parquet(snakemake.input.samples)

        def oracle(rows, values, positions):
            codes = codes_from_meta(truth, meta.iloc[rows].reset_index(drop=True))
            return oracle_predict(truth, codes, values, positions)

    results, info = expression_baselines(snakemake.input.expression, split, mask["val"], mask["test"],
                                         k_neighbours=p.knn_k, knn_reference=p.knn_reference,
                                         tune_profiles=p.tune_profiles, oracle=oracle, log=log)
    write_json(snakemake.output.metrics, {"baselines": results, "settings": info})
