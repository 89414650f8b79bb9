"""evaluate: a trained model on the static test mask, with the same metrics as the baselines."""

from l1kformer.fileio import atomic_path, parquet_chunks
from l1kformer.inference import predict_masked


def evaluate(model, data_path, rows, positions, predictions_path, batch_size=64, device="cpu"):
    """The metrics of ``model`` on the masked profiles ``rows`` / ``positions``, scored batch by batch;
    the per-position predictions go to ``predictions_path`` (Parquet) in chunks."""
    with atomic_path(predictions_path) as tmp, parquet_chunks(tmp) as write:
        return model.task.evaluate(model, predict_masked(model, data_path, rows, positions, batch_size, device),
                                   write)
