"""train: masked-transformer training with dynamic masks, schedules, early stopping and resume.

Every epoch draws fresh masks for the training profiles (seeded by (seed, epoch)), scores the model on
the static val mask, and writes a checkpoint atomically. A job that was killed and is started again
continues from its last checkpoint, and ends with the same weights as an uninterrupted run, because
every random draw is derived from (seed, epoch) rather than from the state of a global generator.
"""

import hashlib
import itertools
import json
import math
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

import torch.nn.functional as F

from l1kformer.inference import autocast_for, masked_outputs, to_inputs
from l1kformer.loader import RowBatches, column_stats
from l1kformer.mask import n_masked
from l1kformer.model import L1kFormer, ModelConfig

MASK_SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    mask_schedule: str = "constant"
    mask_start: float = 0.15
    mask_end: float = 0.15
    mask_replace: float = 0.8
    mask_random: float = 0.1
    patience: int = 3
    seed: int = 0
    device: str = "auto"
    window_rows: int = 16384
    gpus: int = 1
    max_steps_per_epoch: int = 0  # 0: the whole training set each epoch

    def __post_init__(self):
        if self.mask_schedule not in MASK_SCHEDULES:
            raise ValueError(f"mask_schedule must be one of {MASK_SCHEDULES}")
        if self.mask_replace + self.mask_random > 1:
            raise ValueError("mask_replace + mask_random must not exceed 1")


def split_settings(settings):
    """A run's flat settings -> (ModelConfig, TrainConfig)."""
    model_keys = {f.name for f in fields(ModelConfig)}
    train_keys = {f.name for f in fields(TrainConfig)}
    unknown = set(settings) - model_keys - train_keys
    if unknown:
        raise ValueError(f"unknown run settings: {sorted(unknown)}")
    return (ModelConfig(**{k: v for k, v in settings.items() if k in model_keys}),
            TrainConfig(**{k: v for k, v in settings.items() if k in train_keys}))


def lr_at(step, total_steps, cfg):
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine decay to ``lr x min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


def mask_ratio_at(progress, cfg):
    """Mask ratio at ``progress`` in [0, 1] of training: constant, linear or cosine start -> end."""
    progress = min(max(progress, 0.0), 1.0)
    if cfg.mask_schedule == "constant":
        return cfg.mask_start
    if cfg.mask_schedule == "linear":
        return cfg.mask_start + (cfg.mask_end - cfg.mask_start) * progress
    if cfg.mask_schedule == "cosine":
        return cfg.mask_end + 0.5 * (cfg.mask_start - cfg.mask_end) * (1 + math.cos(math.pi * progress))
    raise ValueError(f"mask_schedule must be one of {MASK_SCHEDULES}")


def random_mask(batch, n_genes, ratio, generator, device):
    """batch x n_genes bool with exactly ceil(ratio x n_genes) True per row, uniformly placed."""
    keys = torch.rand(batch, n_genes, generator=generator, device=device)
    idx = keys.topk(max(1, n_masked(ratio, n_genes)), dim=1, largest=False).indices
    return torch.zeros(batch, n_genes, dtype=torch.bool, device=device).scatter_(1, idx, True)


def corrupt(x, masked, cfg, model_cfg, generator):
    """BERT-style inputs: of the masked positions, ``mask_replace`` get [MASK], ``mask_random`` a random
    gene (rank) or N(0, 1) value (expression), the rest keep their value. Returns (inputs, visible)."""
    u = torch.rand(masked.shape, generator=generator, device=masked.device)
    replace = masked & (u < cfg.mask_replace)
    randomise = masked & (u >= cfg.mask_replace) & (u < cfg.mask_replace + cfg.mask_random)
    x = x.clone()
    if model_cfg.mode == "rank":
        noise = torch.randint(0, model_cfg.n_genes, x.shape, generator=generator, device=x.device)
        x = torch.where(randomise, noise, x)
        return x.masked_fill(replace, model_cfg.mask_id), None
    noise = torch.randn(x.shape, generator=generator, device=x.device)
    return torch.where(randomise, noise, x), masked & ~replace


def pick_device(wanted, log, local_rank=0):
    if wanted == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if wanted == "cuda":
        raise RuntimeError("device: cuda was asked for but no GPU is visible to this job")
    log("WARNING: no GPU visible to this job; training on the CPU (slow for real data)")
    return torch.device("cpu")


def evaluate_masked(model, loader, mask_rows, mask_positions, device, autocast):
    """Loss and metrics on a static mask: profile ``mask_rows[i]`` has ``mask_positions[i]`` masked.

    rank: cross-entropy, top-1 and mean rank error (genes scored above the true one, ties half);
    expression: MSE of standardised values (the loss), and MSE and Pearson r in original units.
    """
    sums = {"loss": 0.0, "n": 0, "top1": 0.0, "rank_error": 0.0, "sq_err": 0.0}
    preds, trues = [], []
    for _, pos, out, target in masked_outputs(model, loader, mask_rows, mask_positions, device, autocast):
        sums["n"] += len(target)
        if model.cfg.mode == "rank":
            sums["loss"] += float(F.cross_entropy(out, target, reduction="sum"))
            true_logit = out.gather(1, target.view(-1, 1))
            sums["top1"] += float((out.argmax(1) == target).sum())
            sums["rank_error"] += float((out > true_logit).sum() + 0.5 * ((out == true_logit).sum() - len(target)))
        else:
            sums["loss"] += float(((out - target) ** 2).sum())
            gene = torch.from_numpy(pos.reshape(-1)).to(out.device)
            p, t = model.unstandardize(out, gene), model.unstandardize(target, gene)
            sums["sq_err"] += float(((p - t) ** 2).sum())
            preds.append(p.cpu().numpy())
            trues.append(t.cpu().numpy())
    n = max(1, sums["n"])
    metrics = {"val_loss": sums["loss"] / n}
    if model.cfg.mode == "rank":
        metrics.update(val_top1=sums["top1"] / n, val_mean_rank_error=sums["rank_error"] / n)
    else:
        p, t = np.concatenate(preds), np.concatenate(trues)
        metrics.update(val_mse=sums["sq_err"] / n, val_pearson=float(np.corrcoef(p, t)[0, 1]))
    return metrics


def fingerprint(settings, inputs, sources):
    """Identity of a training job: settings, input files (size, mtime) and the code's bytes."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in sorted(map(str, inputs)):
        st = os.stat(path)
        h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
    for path in sorted(map(str, sources)):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def save_atomic(obj, path):
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def peak_memory_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train(settings, data_path, split, val_mask, checkpoint_path, job_id="", log=print,
          on_epoch_end=None, progress=True):
    """Train one run. ``settings``: flat dict of ModelConfig and TrainConfig fields.

    ``data_path``: ranks.h5 (rank mode) or expression.h5 (expression mode); ``split``: {set: rows};
    ``val_mask``: (rows, positions) of the static val mask. Returns (model, state): ``state`` holds
    the epoch, step, best val loss and epoch, the best weights (``best_state``) and the history.
    ``job_id`` (a fingerprint) decides whether an existing checkpoint belongs to this job.
    """
    from tqdm import tqdm

    model_cfg, cfg = split_settings(settings)
    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if dist else (0, 1)
    device = pick_device(cfg.device, log, int(os.environ.get("LOCAL_RANK", 0)))
    autocast = autocast_for(device)
    dataset = "ranks" if model_cfg.mode == "rank" else "expression"
    torch.manual_seed(cfg.seed)
    model = L1kFormer(model_cfg)
    train_rows = split["train"]
    if model_cfg.mode == "expression":
        mean, std = column_stats(data_path, dataset, train_rows, cfg.window_rows)
        model.value_mean.copy_(torch.from_numpy(mean).float())
        model.value_std.copy_(torch.from_numpy(np.maximum(std, 1e-6)).float())
    model.to(device)
    optimizer = model.configure_optimizer(cfg.lr, cfg.weight_decay)
    # With DistributedDataParallel every rank draws the same global batch, masks and corruption (all
    # seeded by (seed, epoch)) and trains on its own slice of it; gradients are averaged across ranks,
    # so N processes follow the single-process run with the same global batch.
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    train_loader = RowBatches(data_path, dataset, train_rows, cfg.batch_size, cfg.window_rows)
    val_rows, val_positions = val_mask
    val_loader = RowBatches(data_path, dataset, val_rows, max(cfg.batch_size, 64), cfg.window_rows)
    steps_per_epoch = min(len(train_loader), cfg.max_steps_per_epoch or len(train_loader))
    total_steps = cfg.epochs * steps_per_epoch

    state = {"epoch": 0, "step": 0, "best_val": float("inf"), "best_state": None, "best_epoch": 0,
             "bad_epochs": 0, "history": []}
    if os.path.exists(checkpoint_path):
        ckpt = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if ckpt.get("job_id") == job_id:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            state = ckpt["state"]
            log(f"resuming from {checkpoint_path} after epoch {state['epoch']}")
        else:
            log(f"ignoring {checkpoint_path}: it belongs to other settings, data or code")
    n_params = sum(p.numel() for p in model.parameters())
    if world > 1:
        log(f"DistributedDataParallel over {world} processes ({'nccl' if device.type == 'cuda' else 'gloo'})")
    log(f"{model_cfg.mode} model, {n_params:,} parameters, {len(train_rows)} train / {len(val_rows)} val "
        f"profiles, {steps_per_epoch} steps per epoch, device {device}")

    while state["epoch"] < cfg.epochs and state["bad_epochs"] < cfg.patience:
        epoch = state["epoch"]
        model.train()
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout, and nothing else, draws from it
        gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + epoch)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0, seen, loss_sum, ratio = time.time(), 0, 0.0, cfg.mask_start
        batches = itertools.islice(train_loader.epoch(cfg.seed, epoch), steps_per_epoch)
        bar = tqdm(batches, total=steps_per_epoch, file=sys.stderr, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   mininterval=10, disable=not progress)
        for _, values in bar:
            lr = lr_at(state["step"], total_steps, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            ratio = mask_ratio_at(state["step"] / max(1, total_steps - 1), cfg)
            x = y = to_inputs(model, values, device)
            masked = random_mask(len(x), model_cfg.n_genes, ratio, gen, device)
            inputs, visible = corrupt(x, masked, cfg, model_cfg, gen)
            weight = 1.0
            if world > 1:  # this rank's slice; the loss weighted so that the DDP average is the global mean
                part = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
                weight = world * int(masked[part].sum()) / int(masked.sum())
                inputs, masked, y = inputs[part], masked[part], y[part]
                visible = visible[part] if visible is not None else None
            with autocast():
                _, loss = net(inputs, masked, y, visible)
            optimizer.zero_grad(set_to_none=True)
            (loss * weight).backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            state["step"] += 1
            seen += len(x)
            batch_loss = loss.detach() * weight / world
            if world > 1:
                torch.distributed.all_reduce(batch_loss)
            loss_sum += float(batch_loss) * len(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.time() - t0
        metrics = evaluate_masked(model, val_loader, val_rows, val_positions, device, autocast)
        row = {"epoch": epoch + 1, "lr": lr, "mask_ratio": ratio, "train_loss": loss_sum / max(1, seen),
               **metrics, "samples_per_s": seen / max(elapsed, 1e-9), "peak_mem_mb": peak_memory_mb(device)}
        state["history"].append(row)
        if metrics["val_loss"] < state["best_val"]:
            state.update(best_val=metrics["val_loss"], best_epoch=epoch + 1, bad_epochs=0,
                         best_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        if rank == 0:
            save_atomic({"job_id": job_id, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "state": state}, checkpoint_path)
        if world > 1:
            torch.distributed.barrier()
        log("epoch " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()))
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    if state["bad_epochs"] >= cfg.patience:
        log(f"early stop: val loss did not improve for {cfg.patience} epochs")
    return model, state


def final_model(model, state, settings):
    """The self-describing model file: weights of the best val epoch and the config to rebuild it."""
    model_cfg, cfg = split_settings(settings)
    return {"model_config": asdict(model_cfg), "train_config": asdict(cfg), "state_dict": state["best_state"],
            "best_epoch": state["best_epoch"], "best_val_loss": state["best_val"],
            "history": state["history"]}


def write_history(history, path):
    import pandas as pd

    pd.DataFrame(history).to_csv(path, sep="\t", index=False, float_format="%.6g")


def run_training(settings, data_path, split_path, mask_path, model_path, history_path, checkpoint_path,
                 sources=(), log=print):
    """A whole training job: train (resuming when a checkpoint of this very job exists), then write the
    self-describing model file and the history atomically (rank 0 only) and drop the checkpoint."""
    from l1kformer.fileio import atomic_path
    from l1kformer.mask import read_mask
    from l1kformer.split import read_split

    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if dist else 0
    job_id = fingerprint(settings, [data_path, split_path, mask_path], sources)
    model, state = train(settings, data_path, read_split(split_path), read_mask(mask_path)["val"],
                         checkpoint_path, job_id, log=log, progress=rank == 0)
    if rank == 0:
        with atomic_path(model_path) as tmp:
            torch.save(final_model(model, state, settings), tmp)
        with atomic_path(history_path) as tmp:
            write_history(state["history"], tmp)
        os.remove(checkpoint_path)
        log(f"best epoch {state['best_epoch']} (val loss {state['best_val']:.4g}); wrote {model_path}")
    return model, state
