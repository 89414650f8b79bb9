import torch

from l1kformer.evaluate import evaluate
from l1kformer.fileio import data_units, write_json
from l1kformer.device import pick_device
from l1kformer.inference import load_model
from l1kformer.mask import read_mask
from l1kformer.step import job_threads, step

with step(snakemake.log[0]) as log:
    torch.set_num_threads(job_threads(snakemake.threads))
    device = pick_device(snakemake.params.device, log)
    model, ckpt = load_model(snakemake.input.model, device)
    rows, positions = read_mask(snakemake.input.mask)["test"]
    metrics = evaluate(model, snakemake.input.data, rows, positions, snakemake.output.predictions, device=device)
    by_position = metrics.pop("by_position", None)
    result = {"run": snakemake.wildcards.run, "mode": model.cfg.mode, "test": metrics,
              "n_test_profiles": len(rows), "n_masked_per_profile": int(positions.shape[1]),
              "model_config": ckpt["model_config"], "best_epoch": ckpt["best_epoch"],
              "units": data_units(snakemake.input.data)}
    if by_position is not None:
        result["by_position"] = by_position
    write_json(snakemake.output.metrics, result)
    log("test: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
