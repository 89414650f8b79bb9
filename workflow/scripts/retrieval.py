import numpy as np
import pandas as pd

from l1kformer.downstream import finetune_job, rank_positions
from l1kformer.downstream_plots import retrieval_map
from l1kformer.fileio import atomic_path
from l1kformer.loader import read_rows
from l1kformer.retrieval import centred, profiles, retrieval, whitened
from l1kformer.split import read_split
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    settings = snakemake.params.settings
    meta = pd.read_parquet(snakemake.input.samples)
    split = read_split(snakemake.input.split)
    # pretraining sees no labels, so every profile can be scored; fine-tuned models saw the train labels
    candidates = np.sort(np.concatenate([split[s] for s in ("train", "val", "test")]) if settings["rows"] == "all"
                         else split["test"])
    finetuned = {path: pd.read_parquet(path).set_index("row") for path in snakemake.input.finetuned}
    for feats in finetuned.values():  # fine-tuned models embed their task's test profiles only
        candidates = np.intersect1d(candidates, feats.index.to_numpy())
    rows = profiles(meta, candidates, settings)  # the same profiles in every representation
    log(f"{len(rows)} of {len(candidates)} {settings['rows']} profiles in groups of "
        f"{', '.join(settings['fields'])}" + (f" within {settings['within']}" if settings["within"] else "")
        + f" with at least two profiles; centred: {settings['centre']}, whitened: {settings['whiten']}")
    raw = {"expression": read_rows(snakemake.input.expression, "expression", candidates),
           "rank_positions": rank_positions(read_rows(snakemake.input.ranks, "ranks", candidates))}
    row_of = pd.Series(np.arange(len(meta)), index=meta["sample_id"])
    for run, paths in snakemake.params.embeddings.items():
        emb = pd.concat([pd.read_parquet(p) for p in paths])
        emb.index = row_of[emb.pop("sample_id")].to_numpy()
        raw[f"{run} embedding"] = emb.loc[candidates].to_numpy()
    for path, feats in finetuned.items():
        run, _, readout, task = finetune_job(path)
        raw[f"{run} {readout} {task} finetuned"] = feats.loc[candidates].to_numpy()
    shuffled = np.random.default_rng(settings["seed"]).permutation(len(candidates))
    raw["expression, rows shuffled (null)"] = raw["expression"][shuffled]
    cand_meta = meta.iloc[candidates].reset_index(drop=True)
    keep = np.searchsorted(candidates, rows)
    features = {name: whitened(centred(f, cand_meta, settings), settings)[keep] for name, f in raw.items()}
    groups, summary, by = retrieval(meta.iloc[rows], features, settings)
    with atomic_path(snakemake.output.table) as tmp:
        summary.to_csv(tmp, sep="\t", index=False, float_format="%.5g")
    with atomic_path(snakemake.output.groups) as tmp:
        groups.to_csv(tmp, sep="\t", index=False, float_format="%.5g")
    with atomic_path(snakemake.output.by) as tmp:
        by.to_csv(tmp, sep="\t", index=False, float_format="%.5g")
    retrieval_map(groups, summary, settings, snakemake.output.figure)
    for _, r in summary.iterrows():
        log(f"{r['representation']}: mAP {r['mAP']:.4f}, {r['fraction_retrieved']:.3f} of {r['n_groups']} "
            f"groups retrieved (corrected p < {settings['fdr']})")
    for _, r in by.iterrows():
        log(f"  {r['representation']}, {settings['by']} {r[settings['by']]}: mAP {r['mAP']:.4f}, "
            f"{r['fraction_retrieved']:.3f} of {r['n_groups']} retrieved")
