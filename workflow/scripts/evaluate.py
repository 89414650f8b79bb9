import torch

from l1kformer.evaluate import compare_to_baselines, evaluate_expression, evaluate_rank, load_model
from l1kformer.fileio import atomic_path, read_json, write_json
from l1kformer.mask import read_mask
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    torch.set_num_threads(snakemake.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, ckpt = load_model(snakemake.input.model, device)
    rows, positions = read_mask(snakemake.input.mask)["test"]
    evaluate_mode = evaluate_rank if model.cfg.mode == "rank" else evaluate_expression
    metrics, pred = evaluate_mode(model, snakemake.input.data, rows, positions, device=device)
    by_position = metrics.pop("by_position", None)
    baselines = read_json(snakemake.input.baselines)["baselines"]
    result = {"run": snakemake.wildcards.run, "mode": model.cfg.mode, "test": metrics,
              "n_test_profiles": len(rows), "n_masked_per_profile": int(positions.shape[1]),
              "baselines": baselines, "versus_baselines": compare_to_baselines(metrics, baselines, model.cfg.mode),
              "probe": read_json(snakemake.input.probe), "model_config": ckpt["model_config"],
              "best_epoch": ckpt["best_epoch"]}
    if by_position is not None:
        result["by_position"] = by_position
    write_json(snakemake.output.metrics, result)
    with atomic_path(snakemake.output.predictions) as tmp:
        pred.to_parquet(tmp, index=False)
    log("test: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    log("versus baselines: " + str(result["versus_baselines"]))
