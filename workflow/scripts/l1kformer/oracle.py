"""oracle: on simulated data, the Bayes-optimal prediction of the masked test values from the
generator's saved parameters (simulate.py), scored like the baselines. Two bounds, not baselines: no
method can do better in expectation. ``oracle`` knows each profile's metadata (cell line, compound,
dose, time, plate), which no model sees; ``oracle_no_metadata`` sums over them under the generator's
prior and sees only the visible values, as the models do: the fair bound for them."""

import numpy as np
import pandas as pd

from l1kformer.baselines import flat_metrics, masked_set
from l1kformer.parallel import ordered_map
from l1kformer.simulate import blind_oracle_predict, codes_from_meta, load_truth, oracle_predict, plate_prior

BLOCK = 64  # profiles per block of the metadata-free oracle, the blocks on the job's threads


def oracle_baseline(expr_path, samples_path, truth_path, test_mask, log=print):
    rows, positions = test_mask
    values, positions = masked_set(expr_path, "expression", rows, positions)
    values64 = values.astype(np.float64)
    truth = load_truth(truth_path)
    meta_all = pd.read_parquet(samples_path)
    meta = meta_all.iloc[rows].reset_index(drop=True)
    prior = plate_prior(truth, meta_all)
    blocks = [(slice(a, a + BLOCK),) for a in range(0, len(values64), BLOCK)]
    blind = ordered_map(lambda b: blind_oracle_predict(truth, prior, values64[b], positions[b]), blocks)
    preds = {"oracle": oracle_predict(truth, codes_from_meta(truth, meta), values64, positions),
             "oracle_no_metadata": np.concatenate([np.empty((0, positions.shape[1]))] + list(blind))}
    out = {}
    for name, pred in preds.items():
        out[name] = flat_metrics(pred, values, positions)
        log(f"{name}: MSE {out[name]['mse']:.4f}, MAE {out[name]['mae']:.4f}, Pearson {out[name]['pearson']:.4f}")
    return out
