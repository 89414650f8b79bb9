"""Downstream baselines trained from scratch on the task's split: the majority class, and logistic
regression and an MLP on each input, named as the research's ``rlog``, ``rmlp``, ``elog``, ``emlp``:

- ``expression_*``: the profile's values standardised by the train profiles' per-gene mean and sd;
- ``rank_*``: each gene's rank position in the profile, scaled to about unit variance (as the rank
  models' genes view sees it).

Each is a small grid (``downstream.baselines.grid``), chosen by val accuracy; test is scored once, for
the chosen point. The MLPs (width, dropout, lr, weight decay) are trained by
:func:`l1kformer.classify.fit` on batches streamed from the data file; logistic regression is fitted
by L-BFGS on the input in memory (:func:`l1kformer.classify.fit_linear`), each weight decay of the
grid as its L2 strength.
"""

import contextlib
import itertools

import h5py
import numpy as np
import torch

from l1kformer.classify import LabelledRows, fit, fit_linear, outputs
from l1kformer.downstream import majority, rank_positions, scores, set_labels
from l1kformer.loader import column_stats, read_rows
from l1kformer.model import MLP

INPUTS = {"rank": "ranks", "expression": "expression"}  # input name -> HDF5 data set
KINDS = ("logistic", "mlp")


def input_transform(name, path, train_rows, device):
    """values (as read from the input's data set) -> float32 tensor on ``device``."""
    if name == "rank":
        return lambda values: torch.from_numpy(rank_positions(values)).to(device)
    mean, std = column_stats(path, INPUTS[name], train_rows)
    mean, std = mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)
    return lambda values: torch.from_numpy((values.astype(np.float32) - mean) / std).to(device)


def grid_points(kind, grid):
    keys = ["weight_decay"] if kind == "logistic" else ["lr", "weight_decay", "width", "dropout"]
    for values in itertools.product(*(grid[k] for k in keys)):
        yield dict(zip(keys, values))


def logistic(input_name, path, frame, n_classes, settings, device, log):
    """Logistic regression on the input held in memory (profiles x genes x 4 bytes), fitted by L-BFGS
    with each ``weight_decay`` of the grid as its L2 strength; the best by val accuracy."""
    rows = {s: set_labels(frame, s) for s in ("train", "val", "test")}
    to_inputs = input_transform(input_name, path, rows["train"][0], device)
    data = {s: (to_inputs(read_rows(path, INPUTS[input_name], r)), torch.from_numpy(y).to(device))
            for s, (r, y) in rows.items()}
    best = None
    for point in grid_points("logistic", settings["grid"]):
        torch.manual_seed(settings["seed"])
        linear = torch.nn.Linear(data["train"][0].shape[1], n_classes).to(device)
        state = fit_linear(linear, data["train"], data["val"], point["weight_decay"], settings["epochs"],
                           settings["patience"], log, f"{input_name}_logistic l2 {point['weight_decay']:g}")
        if best is None or state["best_val"] > best[0]:
            best = (state["best_val"], point, linear, state["best_epoch"])
    _, point, linear, epoch = best
    out = {"grid_point": point, "best_epoch": epoch}
    with torch.no_grad():
        for s in ("val", "test"):
            out[s] = scores(data[s][1].cpu().numpy(), linear(data[s][0]).argmax(1).cpu().numpy(), n_classes)
    return out


def baseline(kind, input_name, path, frame, n_classes, settings, device, log):
    """One baseline: every grid point trained, the best by val accuracy scored on val and test."""
    if kind == "logistic":
        return logistic(input_name, path, frame, n_classes, settings, device, log)
    rows = {s: set_labels(frame, s) for s in ("train", "val", "test")}
    batches = {s: LabelledRows(path, INPUTS[input_name], r, y, settings["batch_size"] if s == "train" else 4096)
               for s, (r, y) in rows.items()}
    to_inputs = input_transform(input_name, path, rows["train"][0], device)
    with h5py.File(path, "r") as h5:
        n_in = h5[INPUTS[input_name]].shape[1]
    best = None
    for point in grid_points(kind, settings["grid"]):
        torch.manual_seed(settings["seed"])
        net = MLP(n_in, n_classes, point["width"], settings["depth"], point["dropout"]).to(device)
        label = f"{input_name}_{kind} " + " ".join(f"{k} {v:g}" for k, v in point.items())
        state = fit(net, net, net.parameters(), batches["train"], batches["val"], to_inputs,
                    {**settings, **point}, device, contextlib.nullcontext, lambda m: None, label)
        log(f"{label}: val accuracy {state['best_val']:.4f} (epoch {state['best_epoch']})")
        if best is None or state["best_val"] > best[0]:
            best = (state["best_val"], point, net, state["best_epoch"])
    _, point, net, epoch = best
    out = {"grid_point": point, "best_epoch": epoch}
    for s in ("val", "test"):
        logits, y = outputs(net, batches[s], to_inputs, contextlib.nullcontext)
        out[s] = scores(y, logits.argmax(1), n_classes)
    return out


def all_baselines(paths, frame, n_classes, settings, device, log=print):
    """{name: {val, test, ...}}: the majority class and every kind on every input (``paths``: input
    name -> its HDF5 file)."""
    out = {"majority": majority(frame, n_classes)}
    for input_name in sorted(paths):
        for kind in KINDS:
            out[f"{input_name}_{kind}"] = baseline(kind, input_name, paths[input_name], frame, n_classes,
                                                   settings, device, log)
            log(f"{input_name}_{kind}: test accuracy {out[f'{input_name}_{kind}']['test']['accuracy']:.4f}")
    return out
