"""evaluate: a trained model on the static test mask, with the same metrics as the baselines."""

from l1kformer.inference import predict_masked


def evaluate(model, data_path, rows, positions, batch_size=64, device="cpu"):
    """(metrics, predictions table) of ``model`` on the masked profiles ``rows`` / ``positions``."""
    return model.task.evaluate(model, predict_masked(model, data_path, rows, positions, batch_size, device))
