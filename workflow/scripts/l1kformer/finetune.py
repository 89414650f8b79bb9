"""finetune: a trained masked model (either trunk, either mode) fine-tuned to classify a downstream task.

A readout (model.py's ``READOUTS``: ``mean``, ``cls``, ``attention``, ``genes``) turns the trunk's
states into one feature vector; a linear head classifies it. In two phases, each stopped after
``patience`` epochs without a better val accuracy:
- phase 1, the **layer probes**: the trunk frozen (eval mode, no gradients), the readout applied to
  each layer's states (the embeddings first, the last layer last) at its starting point (``genes``:
  the top principal directions of that layer's train token states), its features standardised by
  their train mean and sd, and a logistic regression fitted on them (L-BFGS, ``head_epochs`` steps,
  L2 ``head_l2``). The last layer's probe is the **embedding** variant (frozen features), and its
  readout, head and standardisation are where phase 2 starts;
- phase 2 trains everything with AdamW: the readout and head at ``lr``, the trunk at ``lr x
  lr_factor``, with dropout ``dropout`` before the head (0 by default, as in phase 1: no train / eval
  mismatch), optionally on class-balanced batches (``balanced``: each epoch draws as many train
  profiles as there are, with replacement, every class equally likely, as the research oversampled),
  for up to ``epochs`` epochs; the epoch is chosen on val accuracy, phase 1 counting as epoch 0: the
  **finetuned** variant.
``start: scratch`` is the control at the same budget: the same architecture freshly initialised (the
model file's buffers kept: standardisation statistics and position prior), the same readout started
the same way, trained end to end at ``lr`` for ``epochs``, without phase 1 and without the feature
standardisation (a fresh trunk's features barely vary between profiles: standardised by them, they
explode as soon as the trunk learns). Phase 2 writes a checkpoint after every epoch, and a killed job
resumes from it (phase 1, deterministic and fast, is fitted again) with the same result as an
uninterrupted job.
"""

import os

import numpy as np
import pandas as pd
import torch

from l1kformer.classify import LabelledRows, fit, fit_linear, outputs
from l1kformer.device import autocast_for
from l1kformer.downstream import read_labels, scores, set_labels
from l1kformer.embed import layer_readouts
from l1kformer.fileio import atomic_path, fingerprint, write_json
from l1kformer.inference import dataset_of, load_model
from l1kformer.model import FineTuned, build_model
from l1kformer.tasks import get_task


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


@torch.no_grad()
def layer_features(net, readouts, batches, to_inputs, autocast):
    """([features per layer], labels) of every profile of ``batches`` in order (float32 arrays)."""
    net.eval()
    feats, labels = [[] for _ in readouts], []
    for values, y in batches.epoch(0, 0, shuffle=False):
        with autocast():
            layers = net.states(to_inputs(values), all_layers=True)
            for out, readout, h in zip(feats, readouts, layers):
                out.append(readout(h).float().cpu().numpy())
        labels.append(y)
    return [np.concatenate(f) for f in feats], np.concatenate(labels)


def frozen_phase(net, sets, to_inputs, settings, device, autocast, log=print):
    """Phase 1, the layer probes of ``net`` (a :class:`FineTuned`): per layer, the readout started on
    that layer's states, features standardised, a logistic regression (L-BFGS, ``head_l2``, up to
    ``head_epochs`` steps, early stopping on val accuracy). Fast and deterministic, so not
    checkpointed. ``net`` leaves with the last layer's readout, standardisation and head. Returns
    ({layer: {val, test, best_epoch}}, the last layer's fit state, its test predictions)."""
    readouts = layer_readouts(net, (v for v, _ in sets["train"].epoch(0, 0, shuffle=False)), to_inputs, autocast)
    feats = {s: layer_features(net, readouts, b, to_inputs, autocast) for s, b in sets.items()}
    probes, n_classes = {}, net.out.out_features
    for layer, readout in enumerate(readouts):
        x = {s: torch.from_numpy(f[layer]).to(device, torch.float64) for s, (f, _) in feats.items()}
        mean, std = x["train"].mean(0), x["train"].std(0).clamp_min(1e-6)
        x = {s: ((v - mean) / std).float() for s, v in x.items()}
        y = {s: torch.from_numpy(labels).to(device) for s, (_, labels) in feats.items()}
        torch.manual_seed(settings["seed"])
        head = torch.nn.Linear(x["train"].shape[1], n_classes).to(device)
        state = fit_linear(head, (x["train"], y["train"]), (x["val"], y["val"]), settings["head_l2"],
                           settings["head_epochs"], settings["patience"], log, f"probe layer {layer}")
        with torch.no_grad():
            predicted = {s: head(x[s]).argmax(1).cpu().numpy() for s in ("val", "test")}
        probes[layer] = {s: scores(y[s].cpu().numpy(), predicted[s], n_classes) for s in ("val", "test")}
        probes[layer]["best_epoch"] = state["best_epoch"]
        log(f"probe on layer {layer}: val accuracy {probes[layer]['val']['accuracy']:.4f}, "
            f"test {probes[layer]['test']['accuracy']:.4f}")
    net.readout.load_state_dict(readouts[-1].state_dict())
    net.set_feature_stats(feats["train"][0][-1])
    net.out.load_state_dict(head.state_dict())
    return probes, state, predicted["test"]


def run_finetune(model_path, data_path, labels_path, settings, start, readout, outputs_to, checkpoint_path,
                 device, sources=(), log=print):
    """One fine-tuning job. ``settings``: downstream.finetune's; ``readout``: the readout's name;
    ``outputs_to``: paths of metrics, history, predictions and features (the fine-tuned model's
    standardised readout features on the test profiles)."""
    model, _ = load_model(model_path, device)
    frame, classes = read_labels(labels_path)
    n_classes = len(classes)
    seed = settings["seed"]
    if start == "scratch":
        model = fresh_copy(model, seed).to(device)
    torch.manual_seed(seed)
    net = FineTuned(model, n_classes, settings["dropout"], readout, settings["readout_width"]).to(device)
    task, dataset, autocast = get_task(model.cfg.mode), dataset_of(model), autocast_for(device)
    to_inputs = lambda values: task.to_inputs(model, values, device)  # noqa: E731
    batch = settings["batch_size"]
    rows = {s: set_labels(frame, s) for s in ("train", "val", "test")}
    sets = {s: LabelledRows(data_path, dataset, r, y, batch if s == "train" else max(batch, 256),
                            balanced=settings["balanced"] and s == "train")
            for s, (r, y) in rows.items()}
    job_id = fingerprint({**settings, "start": start, "readout": readout}, [model_path, data_path, labels_path],
                         sources)
    saved, saver = _checkpoints(checkpoint_path, job_id, device, log)

    metrics = {"start": start, "readout": readout, "n_classes": n_classes}
    history = []
    start_val = -1.0
    embedding_pred = None
    head_lr = settings["lr"]
    trunk_lr = head_lr * (settings["lr_factor"] if start == "pretrained" else 1.0)
    if start == "pretrained":
        probes, state, embedding_pred = frozen_phase(net, sets, to_inputs, settings, device, autocast, log)
        history += [{**row, "phase": "frozen"} for row in state["history"]]
        last = max(probes)
        metrics["embedding"] = probes[last]
        metrics["probes"] = {str(layer): p for layer, p in probes.items()}
        start_val = probes[last]["val"]["accuracy"]
    else:
        readouts = layer_readouts(net, (v for v, _ in sets["train"].epoch(0, 0, shuffle=False)), to_inputs, autocast)
        net.readout.load_state_dict(readouts[-1].state_dict())
    trunk, head = net.parameter_groups()
    state = fit(net, net, [(trunk, trunk_lr), (head, head_lr)], sets["train"], sets["val"], to_inputs, settings,
                device, autocast, log, "all", saved.get("all"), saver("all"), start_val=start_val)
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
