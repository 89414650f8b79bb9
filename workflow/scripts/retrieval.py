from pathlib import Path

import numpy as np
import pandas as pd

from l1kformer.downstream import rank_positions
from l1kformer.downstream_plots import retrieval_map
from l1kformer.fileio import atomic_path
from l1kformer.loader import read_rows
from l1kformer.retrieval import profiles, retrieval
from l1kformer.split import read_split
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    settings = snakemake.params.settings
    meta = pd.read_parquet(snakemake.input.samples)
    finetuned = {path: pd.read_parquet(path).set_index("row") for path in snakemake.input.finetuned}
    test = np.asarray(read_split(snakemake.input.split)["test"])
    for feats in finetuned.values():  # fine-tuned models embed their task's test profiles only
        test = np.intersect1d(test, feats.index.to_numpy())
    rows = profiles(meta, test, settings)  # the same profiles in every representation
    log(f"{len(rows)} test profiles of {settings['field']} groups with at least two profiles"
        + (" (among the profiles of every fine-tuning task)" if finetuned else ""))
    features = {"expression": read_rows(snakemake.input.expression, "expression", rows),
                "rank_positions": rank_positions(read_rows(snakemake.input.ranks, "ranks", rows))}
    row_of = pd.Series(np.arange(len(meta)), index=meta["sample_id"])
    for path in snakemake.input.embeddings:
        emb = pd.read_parquet(path)
        emb.index = row_of[emb.pop("sample_id")].to_numpy()
        features[f"{Path(path).parent.name} embedding"] = emb.loc[rows].to_numpy()
    for path, feats in finetuned.items():
        parts = Path(path).parts
        features[f"{parts[-5]} {parts[-2]} finetuned"] = feats.loc[rows].to_numpy()
    groups, summary = retrieval(meta.iloc[rows], features, settings)
    with atomic_path(snakemake.output.table) as tmp:
        summary.to_csv(tmp, sep="\t", index=False, float_format="%.5g")
    with atomic_path(snakemake.output.groups) as tmp:
        groups.to_csv(tmp, sep="\t", index=False, float_format="%.5g")
    retrieval_map(groups, summary, settings, snakemake.output.figure)
    for _, r in summary.iterrows():
        log(f"{r['representation']}: mAP {r['mAP']:.4f}, {r['fraction_retrieved']:.3f} of {r['n_groups']} "
            f"groups retrieved (corrected p < {settings['fdr']})")
