"""evaluate: a trained model on the static test mask, with the same metrics as the baselines."""

import numpy as np
import pandas as pd
import torch

from l1kformer.inference import masked_outputs
from l1kformer.loader import RowBatches
from l1kformer.metrics import by_position, expression_metrics, score_profile, summarize_rank
from l1kformer.model import build_model


def load_model(path, device="cpu"):
    """Rebuild a model from its self-describing file (no config needed)."""
    ckpt = torch.load(path, map_location=device, weights_only=False)
    model = build_model(ckpt["model_config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


def dataset_of(model):
    return "ranks" if model.cfg.mode == "rank" else "expression"


def predict_masked(model, data_path, rows, positions, batch_size=64, device="cpu"):
    """Yield (values, positions, outputs) per batch of the masked set, in row order.

    values: the profiles' true data (ranks or expression, profiles x genes); outputs: logits
    (profiles x k x genes) in rank mode, predicted values in original units (profiles x k) otherwise.
    """
    loader = RowBatches(data_path, dataset_of(model), rows, batch_size)
    for values, pos, out, _ in masked_outputs(model, loader, rows, positions, device):
        if model.cfg.mode == "rank":
            out = out.view(len(pos), pos.shape[1], -1)
        else:
            out = model.unstandardize(out, torch.from_numpy(pos.reshape(-1)).to(out.device)).view(len(pos), -1)
        yield values, pos, out.cpu().numpy()


def evaluate_rank(model, ranks_path, rows, positions, batch_size=64, device="cpu"):
    """Metrics (as the baselines') and one prediction row per masked position."""
    parts, records = [], []
    for values, pos, logits in predict_masked(model, ranks_path, rows, positions, batch_size, device):
        for seq, p, lg in zip(values, pos, logits):
            true = seq[p].astype(np.int64)
            res = score_profile(lg, true)
            parts.append(res)
            assigned_position = dict(zip(res["assign_gene"], p))  # where the assignment put each gene
            records.append(pd.DataFrame({
                "profile": len(records), "position": p, "true_gene": true, "pred_gene": res["pred_gene"],
                "c_pred_gene": res["c_pred_gene"], "assign_gene": res["assign_gene"],
                "assigned_position": [assigned_position[g] for g in true],
                "rank_error": res["rank_error"], "c_rank_error": res["c_rank_error"]}))
    metrics = summarize_rank(parts)
    pred = pd.concat(records, ignore_index=True)
    n_genes = model.cfg.n_genes
    starts, top1 = by_position(pred["position"], (pred["pred_gene"] == pred["true_gene"]).astype(float), n_genes)
    _, c_top1 = by_position(pred["position"], (pred["c_pred_gene"] == pred["true_gene"]).astype(float), n_genes)
    _, err = by_position(pred["position"], pred["rank_error"].astype(float), n_genes)
    _, c_err = by_position(pred["position"], pred["c_rank_error"].astype(float), n_genes)
    metrics["by_position"] = {"bin_start": starts, "top1": top1, "c_top1": c_top1, "mean_rank_error": err,
                              "c_mean_rank_error": c_err}
    return metrics, pred


def evaluate_expression(model, expr_path, rows, positions, batch_size=64, device="cpu"):
    preds, trues, profile, gene = [], [], [], []
    offset = 0
    for values, pos, out in predict_masked(model, expr_path, rows, positions, batch_size, device):
        preds.append(out.ravel())
        trues.append(np.take_along_axis(values, pos, axis=1).ravel())
        profile.append(np.repeat(np.arange(offset, offset + len(pos)), pos.shape[1]))
        gene.append(pos.ravel())
        offset += len(pos)
    pred = pd.DataFrame({"profile": np.concatenate(profile), "gene": np.concatenate(gene),
                         "true": np.concatenate(trues), "pred": np.concatenate(preds)})
    metrics = expression_metrics(pred["pred"].to_numpy(), pred["true"].to_numpy(),
                                 pred["profile"].to_numpy(), pred["gene"].to_numpy())
    return metrics, pred


def compare_to_baselines(metrics, baselines, mode):
    """The model's ratio to the best baseline (the oracle apart: it is a bound, not a baseline)."""
    real = {k: v for k, v in baselines.items() if k != "oracle"}
    if mode == "rank":
        best_top1 = max(real, key=lambda k: real[k]["c_top1"])
        best_err = min(real, key=lambda k: real[k]["c_mean_rank_error"])
        out = {"best_baseline_c_top1": best_top1,
               "c_top1_ratio_to_best": metrics["c_top1"] / max(real[best_top1]["c_top1"], 1e-12),
               "best_baseline_c_mean_rank_error": best_err,
               "c_mean_rank_error_ratio_to_best": metrics["c_mean_rank_error"]
               / max(real[best_err]["c_mean_rank_error"], 1e-12)}
    else:
        best = min(real, key=lambda k: real[k]["mse"])
        out = {"best_baseline_mse": best, "mse_ratio_to_best": metrics["mse"] / real[best]["mse"]}
        if "oracle" in baselines:
            out["mse_ratio_to_oracle"] = metrics["mse"] / baselines["oracle"]["mse"]
    return out
