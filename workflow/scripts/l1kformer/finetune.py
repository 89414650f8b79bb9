"""finetune: a trained masked model (either trunk, either mode) fine-tuned to classify a downstream task.

As in the research this project grew from, in two phases, each stopped after ``patience`` epochs
without a better val accuracy:
- phase 1 fits the linear head on the frozen trunk's pooled output, standardised by its train mean
  and sd, as a logistic regression (L-BFGS, ``head_epochs`` steps, L2 ``head_l2``). The trunk runs in
  eval mode without gradients, so its features are computed once. Scored on its own this is the
  **embedding** variant (frozen features);
- phase 2 trains everything with AdamW at ``lr x lr_factor`` (``epochs``), from phase 1's head, and
  keeps phase 1's weights unless an epoch beats their val accuracy: the **finetuned** variant.
``start: scratch`` is the control: the same architecture freshly initialised (the model file's
buffers kept: standardisation statistics and position prior), trained end to end at ``lr`` for
``epochs``, with no phase 1 and no feature standardisation (a fresh trunk's pooled outputs barely vary
between profiles: standardised by them, they explode as soon as the trunk learns). Phase 2 writes a checkpoint after every epoch, and a killed job resumes
from it (phase 1, deterministic and fast, is fitted again) with the same result as an uninterrupted
job.
"""

import os

import numpy as np
import pandas as pd
import torch

from l1kformer.classify import LabelledRows, fit, fit_linear, outputs
from l1kformer.downstream import read_labels, scores, set_labels
from l1kformer.fileio import atomic_path, write_json
from l1kformer.inference import autocast_for, dataset_of, load_model
from l1kformer.model import FineTuned, build_model
from l1kformer.tasks import get_task
from l1kformer.train import fingerprint

def fresh_copy(model, seed):
    """The same architecture with fresh weights, keeping the model file's buffers."""
    torch.manual_seed(seed)
    fresh = build_model(model.cfg)
    buffers = dict(model.named_buffers())
    fresh.load_state_dict({k: v for k, v in model.state_dict().items() if k in buffers}, strict=False)
    return fresh


def _scored(forward, sets, to_inputs, autocast, n_classes):
    """{set: scores} and the test predictions of ``forward`` on ``sets`` ({set: batches})."""
    out, predicted = {}, None
    for name, batches in sets.items():
        logits, y = outputs(forward, batches, to_inputs, autocast)
        out[name] = scores(y, logits.argmax(1), n_classes)
        if name == "test":
            predicted = logits.argmax(1)
    return out, predicted


def standardise(net, sets, to_inputs, autocast):
    """Set ``net``'s feature standardisation from the train profiles' pooled outputs (trunk in eval
    mode); returns {set: (standardised features, labels)}."""
    net.eval()
    pooled = {s: outputs(net.pooled, b, to_inputs, autocast) for s, b in sets.items()}
    net.set_feature_stats(pooled["train"][0])
    mean, std = net.feature_mean.cpu().numpy(), net.feature_std.cpu().numpy()
    return {s: (((f - mean) / std).astype(np.float32), y) for s, (f, y) in pooled.items()}


def frozen_phase(net, sets, to_inputs, settings, device, autocast, log=print):
    """Phase 1: the linear head of ``net`` (a :class:`FineTuned`) fitted as a logistic regression
    (L-BFGS, ``head_l2``, up to ``head_epochs`` steps, early stopping on val accuracy) on the frozen
    trunk's standardised features of ``sets`` ({set: batches}), computed once with the trunk in eval
    mode. Fast and deterministic, so it is not checkpointed. Returns (the fit's state, the features as
    {set: (tensor, labels tensor)})."""
    features = standardise(net, sets, to_inputs, autocast)
    tensors = {s: (torch.from_numpy(f).to(device), torch.from_numpy(y).to(device)) for s, (f, y) in features.items()}
    state = fit_linear(net.out, tensors["train"], tensors["val"], settings["head_l2"], settings["head_epochs"],
                       settings["patience"], log, "head")
    return state, tensors


def run_finetune(model_path, data_path, labels_path, settings, start, outputs_to, checkpoint_path, device,
                 sources=(), log=print):
    """One fine-tuning job. ``settings``: downstream.finetune's; ``outputs_to``: paths of metrics,
    history, predictions and features (the fine-tuned model's penultimate layer on the test profiles)."""
    model, _ = load_model(model_path, device)
    frame, classes = read_labels(labels_path)
    n_classes = len(classes)
    seed = settings["seed"]
    if start == "scratch":
        model = fresh_copy(model, seed).to(device)
    torch.manual_seed(seed)
    net = FineTuned(model, n_classes, settings["dropout"]).to(device)
    task, dataset, autocast = get_task(model.cfg.mode), dataset_of(model), autocast_for(device)
    to_inputs = lambda values: task.to_inputs(model, values, device)  # noqa: E731
    batch = settings["batch_size"]
    rows = {s: set_labels(frame, s) for s in ("train", "val", "test")}
    sets = {s: LabelledRows(data_path, dataset, r, y, batch if s == "train" else max(batch, 256))
            for s, (r, y) in rows.items()}
    job_id = fingerprint({**settings, "start": start}, [model_path, data_path, labels_path], sources)
    saved, saver = _checkpoints(checkpoint_path, job_id, device, log)

    metrics = {"start": start, "n_classes": n_classes}
    history = []
    start_val = -1.0
    embedding_pred = None
    if start == "pretrained":
        state, feats = frozen_phase(net, sets, to_inputs, settings, device, autocast, log)
        history += [{**row, "phase": "frozen"} for row in state["history"]]
        metrics["embedding"] = {}
        with torch.no_grad():
            for s in ("val", "test"):
                predicted_head = net.out(feats[s][0]).argmax(1).cpu().numpy()
                metrics["embedding"][s] = scores(feats[s][1].cpu().numpy(), predicted_head, n_classes)
        embedding_pred = predicted_head
        metrics["embedding"]["best_epoch"] = state["best_epoch"]
        start_val = state["best_val"]
        log(f"frozen features (embedding): val accuracy {start_val:.4f}, "
            f"test {metrics['embedding']['test']['accuracy']:.4f}")
    lr = settings["lr"] * (settings["lr_factor"] if start == "pretrained" else 1.0)
    phase = {**settings, "lr": lr}
    state = fit(net, net, net.trained_parameters(), sets["train"], sets["val"], to_inputs, phase, device,
                autocast, log, "all", saved.get("all"), saver("all"), start_val=start_val)
    history += [{**row, "phase": "all"} for row in state["history"]]
    metrics["finetuned"], predicted = _scored(net, {s: sets[s] for s in ("val", "test")}, to_inputs,
                                              autocast, n_classes)
    metrics["finetuned"]["best_epoch"] = state["best_epoch"]
    log(f"fine-tuned: val accuracy {metrics['finetuned']['val']['accuracy']:.4f}, "
        f"test {metrics['finetuned']['test']['accuracy']:.4f} (best epoch {state['best_epoch']} of phase 2; "
        f"0: phase 1's head kept)")
    test_rows, test_y = rows["test"]
    predictions = pd.DataFrame({"row": test_rows, "label": test_y, "finetuned": predicted})
    if embedding_pred is not None:
        predictions["embedding"] = embedding_pred
    _write(outputs_to, metrics, history, predictions, outputs(net.features, sets["test"], to_inputs, autocast)[0],
           test_rows)
    if os.path.exists(checkpoint_path):
        os.remove(checkpoint_path)
    return metrics


def _checkpoints(checkpoint_path, job_id, device, log):
    """({phase: state} saved by this very job before, or {}; saver(phase) -> a ``save`` for fit)."""
    saved = {}
    if os.path.exists(checkpoint_path):
        ckpt = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if ckpt.get("job_id") == job_id:
            saved = ckpt["phases"]
            done = ", ".join(f"{phase} after epoch {state['epoch']}" for phase, state in saved.items())
            log(f"resuming from {checkpoint_path} ({done})")
        else:
            log(f"ignoring {checkpoint_path}: it belongs to other settings, data or code")

    def saver(phase):
        def save(state):
            saved[phase] = state
            with atomic_path(checkpoint_path) as tmp:
                torch.save({"job_id": job_id, "phases": saved}, tmp)
        return save

    return saved, saver


def _write(outputs_to, metrics, history, predictions, feats_test, test_rows):
    metrics_path, history_path, predictions_path, features_path = outputs_to
    with atomic_path(predictions_path) as tmp:
        predictions.to_parquet(tmp, index=False)
    with atomic_path(features_path) as tmp:
        frame_out = pd.DataFrame(feats_test, columns=[f"f{k}" for k in range(feats_test.shape[1])])
        frame_out.insert(0, "row", test_rows)
        frame_out.to_parquet(tmp, index=False)
    with atomic_path(history_path) as tmp:
        pd.DataFrame(history, columns=["phase", "name", "epoch", "train_loss", "val_accuracy"]).to_csv(
            tmp, sep="\t", index=False, float_format="%.6g")
    write_json(metrics_path, metrics)
