import numpy as np
import pandas as pd
import torch

from l1kformer.embed import gene_embeddings, linear_probe, profile_embeddings
from l1kformer.evaluate import load_model
from l1kformer.fileio import atomic_path, write_json
from l1kformer.loader import read_rows
from l1kformer.mask import read_mask
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    torch.set_num_threads(snakemake.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, _ = load_model(snakemake.input.model, device)
    meta = pd.read_parquet(snakemake.input.samples)
    mask = read_mask(snakemake.input.mask)
    pooled, pooled_rows = [], []
    for name, out in (("val", snakemake.output.val), ("test", snakemake.output.test)):
        rows = mask[name][0]
        emb = profile_embeddings(model, snakemake.input.data, rows, device=device)
        frame = pd.DataFrame(emb, columns=[f"e{k}" for k in range(emb.shape[1])])
        frame.insert(0, "sample_id", meta["sample_id"].iloc[rows].to_numpy())
        with atomic_path(out) as tmp:
            frame.to_parquet(tmp, index=False)
        pooled.append(emb)
        pooled_rows.append(rows)
        log(f"{name}: {len(rows)} profile embeddings of width {emb.shape[1]}")
    genes = pd.read_csv(snakemake.input.genes, sep="\t", dtype=str)
    table = pd.DataFrame(gene_embeddings(model), columns=[f"e{k}" for k in range(model.cfg.d_model)])
    table.insert(0, "gene_id", genes["gene_id"].to_numpy())
    with atomic_path(snakemake.output.genes) as tmp:
        table.to_parquet(tmp, index=False)

    # linear probes on val + test profiles, embeddings against raw expression of the same profiles
    rows = np.concatenate(pooled_rows)
    order = np.argsort(rows)
    rows, emb = rows[order], np.concatenate(pooled)[order]
    cap = snakemake.params.max_profiles
    if len(rows) > cap:
        pick = np.sort(np.random.default_rng(0).permutation(len(rows))[:cap])
        rows, emb = rows[pick], emb[pick]
    expr = read_rows(snakemake.input.expression, "expression", rows)
    probes = {}
    for field in snakemake.params.fields:
        if field not in meta.columns:
            log(f"probe: no sample field {field!r}, skipped")
            continue
        labels = meta[field].iloc[rows].to_numpy()
        probes[field] = {"embedding": linear_probe(emb, labels), "expression": linear_probe(expr, labels)}
        log(f"probe {field}: embedding {probes[field]['embedding']['accuracy']}, "
            f"raw expression {probes[field]['expression']['accuracy']}")
    write_json(snakemake.output.probe, probes)
