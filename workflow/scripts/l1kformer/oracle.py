"""oracle: on simulated data, the Bayes-optimal prediction of the masked test values from the
generator's saved parameters (simulate.py), scored like the baselines. It is a bound, not a baseline:
no method can do better in expectation."""

import numpy as np
import pandas as pd

from l1kformer.baselines import flat_metrics, masked_set
from l1kformer.simulate import codes_from_meta, load_truth, oracle_predict


def oracle_baseline(expr_path, samples_path, truth_path, test_mask, log=print):
    rows, positions = test_mask
    values, positions = masked_set(expr_path, "expression", rows, positions)
    truth = load_truth(truth_path)
    meta = pd.read_parquet(samples_path).iloc[rows].reset_index(drop=True)
    pred = oracle_predict(truth, codes_from_meta(truth, meta), values.astype(np.float64), positions)
    result = flat_metrics(pred, values, positions)
    log(f"oracle: MSE {result['mse']:.4f}, MAE {result['mae']:.4f}, Pearson {result['pearson']:.4f}")
    return {"oracle": result}
