"""The downstream tasks' ceiling on simulated data: the Bayes-optimal classifier's val and test accuracy.

The generator knows each profile's distribution given its plate, latent state and treatment; the Bayes
classifier (oracle.py's :func:`~l1kformer.oracle.class_log_posteriors`) sums over everything it does
not ask about under the generator's own prior and picks the most probable of the task's classes. No
classifier can do better in expectation on the same profiles (up to the rounding to 3 decimals and the
cap at 15), so every model and baseline reads as a fraction of what the data allow. Fields the
generator draws: ``cell_id`` and ``pert_id``; another field gets no ceiling and says why.
"""

import pandas as pd

from l1kformer.downstream import labels_field, read_labels, scores, set_labels
from l1kformer.loader import read_rows
from l1kformer.oracle import ORACLE_FIELDS, plate_prior, task_oracle
from l1kformer.simulate import load_truth


def downstream_oracle(expr_path, samples_path, truth_path, labels_path, log=print):
    """{field, val, test} scores of the Bayes classifier, or {field, reason} where there is none."""
    frame, classes = read_labels(labels_path)
    field = labels_field(labels_path)
    if field not in ORACLE_FIELDS:
        reason = f"the generator draws no {field!r}: the ceiling exists for {', '.join(sorted(ORACLE_FIELDS))}"
        log(f"no oracle: {reason}")
        return {"field": field, "reason": reason}
    truth = load_truth(truth_path)
    prior = plate_prior(truth, pd.read_parquet(samples_path))
    out = {"field": field}
    for s in ("val", "test"):
        rows, y = set_labels(frame, s)
        predicted = task_oracle(truth, prior, read_rows(expr_path, "expression", rows), field, classes)
        out[s] = scores(y, predicted, len(classes))
        log(f"oracle ({field}), {s}: accuracy {out[s]['accuracy']:.4f} on {len(y)} profiles")
    return out
