"""The one loop that trains the downstream classifiers (model.py's ``MLP`` baselines and ``FineTuned``
trunks, or a head on frozen features), and their batches.

:func:`fit` trains any of them with AdamW at a constant learning rate, scores val accuracy after every epoch,
keeps the best epoch's weights, stops after ``patience`` epochs without a better val accuracy, and
can resume from the state it hands to ``save`` after every epoch; its batches are
:class:`LabelledRows` (rows of an HDF5 data set, streamed a window at a time). :func:`fit_linear` fits
a logistic regression on features held in memory by full-batch L-BFGS (the frozen-feature head and
the logistic baselines).
"""

import copy

import numpy as np
import torch
import torch.nn.functional as F

from l1kformer.loader import RowBatches
from l1kformer.model import decayed_groups


class LabelledRows:
    """(values, labels) batches of ``rows`` of an HDF5 data set, read a window at a time. ``balanced``:
    each epoch draws as many rows as there are, with replacement, every class equally likely (seeded
    by the epoch), instead of visiting every row once."""

    def __init__(self, path, dataset, rows, labels, batch_size, window_rows=16384, balanced=False):
        order = np.argsort(rows)
        self.rows, self.labels = np.asarray(rows)[order], np.asarray(labels)[order]
        self.path, self.dataset, self.batch_size, self.window_rows = path, dataset, batch_size, window_rows
        self.balanced = balanced
        self.loader = RowBatches(path, dataset, self.rows, batch_size, window_rows)

    def epoch(self, seed, epoch, shuffle=True):
        loader = self.loader
        if self.balanced and shuffle:
            counts = np.bincount(self.labels)
            weight = 1.0 / counts[self.labels]
            rng = np.random.default_rng([seed, epoch, 11])
            drawn = rng.choice(len(self.rows), size=len(self.rows), p=weight / weight.sum())
            loader = RowBatches(self.path, self.dataset, self.rows[drawn], self.batch_size, self.window_rows)
        for rows, values in loader.epoch(seed, epoch, shuffle):
            yield values, self.labels[np.searchsorted(self.rows, rows)]


@torch.no_grad()
def outputs(forward, batches, to_inputs, autocast):
    """(logits or features, labels) of every batch, in the batches' order, as float32 arrays."""
    out, labels = [], []
    for values, y in batches.epoch(0, 0, shuffle=False):
        with autocast():
            out.append(forward(to_inputs(values)).float().cpu().numpy())
        labels.append(y)
    return np.concatenate(out), np.concatenate(labels)


def accuracy(logits, labels):
    return float((logits.argmax(1) == labels).mean()) if len(labels) else 0.0


def _record(state, name, train_loss, val_acc, net):
    """End an epoch (or L-BFGS step): its history row, and ``net``'s weights kept when val accuracy
    improved, else one more epoch without improvement."""
    state["epoch"] += 1
    state["history"].append({"name": name, "epoch": state["epoch"], "train_loss": train_loss, "val_accuracy": val_acc})
    if val_acc > state["best_val"]:
        state.update(best_val=val_acc, best_epoch=state["epoch"], bad_epochs=0,
                     best_state={k: v.detach().cpu().clone() for k, v in net.state_dict().items()})
    else:
        state["bad_epochs"] += 1


def fit(net, forward, params, train, val, to_inputs, settings, device, autocast, log, name, state=None,
        save=None, start_val=-1.0):
    """Train ``forward`` (``net`` or a part of it: the head of a frozen trunk) on ``train`` batches,
    choosing the epoch by val accuracy. ``params``: the parameters to train (at ``settings["lr"]``), or
    a list of (parameters, learning rate). ``settings``: epochs, lr, weight_decay, patience, seed.
    ``state``: a state this function handed to ``save`` before (resume). ``start_val``: the val accuracy
    of ``net`` as it comes in, which an epoch must beat to be chosen (phase 2 of fine-tuning keeps the
    head of phase 1 unless it improves on it). Returns the final state:
    ``best_state`` holds ``net``'s best weights (loaded into ``net`` on return), ``history`` one row
    per epoch."""
    params = list(params)
    if not params or not isinstance(params[0], tuple):
        params = [(params, settings["lr"])]
    groups = [{**g, "lr": lr} for group, lr in params for g in decayed_groups(group, settings["weight_decay"])]
    optimizer = torch.optim.AdamW(groups, lr=settings["lr"])
    if state is None:
        state = {"epoch": 0, "best_val": start_val, "best_epoch": 0, "bad_epochs": 0, "history": [],
                 "best_state": copy.deepcopy(net.state_dict())}
    else:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    seed = settings["seed"]
    while state["epoch"] < settings["epochs"] and state["bad_epochs"] < settings["patience"]:
        epoch = state["epoch"]
        net.train()
        torch.manual_seed(seed * 100_003 + epoch)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        seen = 0
        for values, y in train.epoch(seed, epoch):
            target = torch.from_numpy(y).to(device)
            with autocast():
                loss = F.cross_entropy(forward(to_inputs(values)).float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(y)
            seen += len(y)
        net.eval()
        val_acc = accuracy(*outputs(forward, val, to_inputs, autocast))
        _record(state, name, float(loss_sum) / max(1, seen), val_acc, net)
        log(f"{name}: epoch {epoch + 1}/{settings['epochs']}, train loss {float(loss_sum) / max(1, seen):.4g}, "
            f"val accuracy {val_acc:.4f}")
        if save is not None:
            save({**state, "model": net.state_dict(), "optimizer": optimizer.state_dict()})
    net.load_state_dict(state["best_state"])
    net.eval()
    return state


def fit_linear(linear, train, val, l2, steps, patience, log, name):
    """Multinomial logistic regression: ``linear`` (an nn.Linear) fitted by full-batch L-BFGS on
    in-memory ``train`` (features, labels) tensors, minimising mean cross-entropy + l2 / 2 x |W|^2;
    each of up to ``steps`` steps runs up to 20 L-BFGS iterations, then scores val accuracy; the best
    step's weights are kept, and ``patience`` steps without a better val accuracy stop it. (Minibatch
    Adam on pooled embeddings, which are strongly correlated, stalls far from the optimum: 0.74
    against 0.98 val accuracy on the default's cell lines.) Returns fit's kind of state."""
    x, y = train
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1, max_iter=20, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(linear(x), y) + 0.5 * l2 * (linear.weight ** 2).sum()
        loss.backward()
        return loss

    state = {"epoch": 0, "best_val": -1.0, "best_epoch": 0, "bad_epochs": 0, "history": [],
             "best_state": copy.deepcopy(linear.state_dict())}
    while state["epoch"] < steps and state["bad_epochs"] < patience:
        loss = float(optimizer.step(closure).detach())
        with torch.no_grad():
            val_acc = float((linear(val[0]).argmax(1) == val[1]).float().mean())
        _record(state, name, loss, val_acc, linear)
    linear.load_state_dict(state["best_state"])
    log(f"{name}: {state['epoch']} L-BFGS steps, best val accuracy {state['best_val']:.4f} (step {state['best_epoch']})")
    return state
