"""evaluate: a trained model on the static test mask, with the same metrics as the baselines.

Each mode's test scoring is one function of (model, batches, write) here (``SCORERS``): ``batches``
yields (values, positions, outputs) per block of masked profiles, ``write`` takes one prediction table
per block; it returns the test metrics.
"""

import numpy as np
import pandas as pd
import torch

from l1kformer.fileio import atomic_path, parquet_chunks
from l1kformer.inference import predict_masked
from l1kformer.metrics_expression import ExpressionTally
from l1kformer.metrics_rank import PositionBins, RankTally, missing_genes, score_rank_block
from l1kformer.parallel import ordered_map


def score_rank(model, batches, write):
    """Rank metrics (as the baselines') over blocks of profiles; one prediction row per masked position."""
    tally, bins, offset = RankTally(), PositionBins(model.cfg.n_genes), 0

    def score(values, pos, out):
        true = np.take_along_axis(values, pos, axis=1).astype(np.int64)
        return pos, true, score_rank_block(out.view(len(pos), pos.shape[1], -1), true)

    # batches are scored on worker threads (on the device of the outputs; the assignment on the CPU)
    # while the main thread runs the forward pass of the next ones
    for pos, true, res in ordered_map(score, batches):
        tally.add(res)
        bins.add(pos, {"top1": res["top1"], "c_top1": res["c_top1"],
                       "mean_rank_error": res["rank_error"], "c_mean_rank_error": res["c_rank_error"]})
        write(_rank_records(offset, pos, true, res))
        offset += len(pos)
    return {**tally.summary(), "by_position": bins.result()}


def _rank_records(offset, positions, true, res):
    """One row per masked position; ``assigned_position``: where the assignment put the true gene."""
    _, local = missing_genes(true)
    by_gene = np.argsort(res["assign_gene"], axis=1)  # the assignment's genes, sorted, are the missing genes
    assigned = np.take_along_axis(positions, np.take_along_axis(by_gene, local, axis=1), axis=1)
    return pd.DataFrame({
        "profile": np.repeat(np.arange(offset, offset + len(positions)), positions.shape[1]),
        "position": positions.ravel(), "true_gene": true.ravel(), "pred_gene": res["pred_gene"].ravel(),
        "c_pred_gene": res["c_pred_gene"].ravel(), "assign_gene": res["assign_gene"].ravel(),
        "assigned_position": assigned.ravel(), "rank_error": res["rank_error"].ravel(),
        "c_rank_error": res["c_rank_error"].ravel()})


def score_expression(model, batches, write):
    """Expression metrics in original units over blocks of profiles; one prediction row per masked entry."""
    offset = 0
    with ExpressionTally() as tally:
        for values, pos, out in batches:
            pred = model.unstandardize(out, torch.from_numpy(pos.reshape(-1)).to(out.device))
            pred = pred.double().cpu().numpy().reshape(pos.shape)
            true = np.take_along_axis(values, pos, axis=1)
            tally.add(pred, true, pos)
            write(pd.DataFrame({"profile": np.repeat(np.arange(offset, offset + len(pos)), pos.shape[1]),
                                "gene": pos.ravel(), "true": true.ravel(), "pred": pred.ravel()}))
            offset += len(pos)
        return tally.result()


SCORERS = {"rank": score_rank, "expression": score_expression}


def evaluate(model, data_path, rows, positions, predictions_path, batch_size=64, device="cpu"):
    """The metrics of ``model`` on the masked profiles ``rows`` / ``positions``, scored batch by batch;
    the per-position predictions go to ``predictions_path`` (Parquet) in chunks."""
    with atomic_path(predictions_path) as tmp, parquet_chunks(tmp) as write:
        return SCORERS[model.cfg.mode](model, predict_masked(model, data_path, rows, positions, batch_size, device),
                                       write)
