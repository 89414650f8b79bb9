import pandas as pd
import torch

from l1kformer.embed import embedder, embedding_frame, gene_embeddings, profile_embeddings
from l1kformer.fileio import atomic_path
from l1kformer.device import pick_device
from l1kformer.inference import load_model
from l1kformer.split import read_split
from l1kformer.step import job_threads, step

with step(snakemake.log[0]) as log:
    torch.set_num_threads(job_threads(snakemake.threads))
    device = pick_device(snakemake.params.device, log)
    model, _ = load_model(snakemake.input.model, device)
    meta = pd.read_parquet(snakemake.input.samples)
    split = read_split(snakemake.input.split)
    net = embedder(model, snakemake.input.data, split["train"], snakemake.params.readout,
                   snakemake.params.readout_width, device=device)
    log(f"profile embeddings: readout {snakemake.params.readout} of the last layer (the dense trunk: its hidden layer)")
    for name in ("train", "val", "test"):
        rows = split[name]
        emb = profile_embeddings(net, snakemake.input.data, rows, device=device)
        with atomic_path(snakemake.output[name]) as tmp:
            embedding_frame(emb, meta["sample_id"].iloc[rows], "sample_id").to_parquet(tmp, index=False)
        log(f"{name}: {len(rows)} profile embeddings of width {emb.shape[1]}")
    genes = pd.read_csv(snakemake.input.genes, sep="\t", dtype=str)
    with atomic_path(snakemake.output.genes) as tmp:
        embedding_frame(gene_embeddings(model), genes["gene_id"], "gene_id").to_parquet(tmp, index=False)
