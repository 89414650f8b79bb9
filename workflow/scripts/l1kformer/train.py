"""train: masked-model training with dynamic masks, schedules, early stopping and resume.

Every epoch draws fresh masks for the training profiles (seeded by (seed, epoch)), scores the model on
the static val mask, and writes a checkpoint atomically. A job that was killed and is started again
continues from its last checkpoint, and ends with the same weights as an uninterrupted run, because
every random draw is derived from (seed, epoch) rather than from the state of a global generator.
What differs between modes (inputs, corruption, loss, validation metrics) is the task's (tasks.py).
"""

import itertools
import math
import os
import resource
import time
from dataclasses import asdict, replace

import h5py
import pandas as pd
import torch

from l1kformer.errors import InputError
from l1kformer.fileio import atomic_path, fingerprint
from l1kformer.device import autocast_for, pick_device
from l1kformer.inference import masked_outputs
from l1kformer.loader import RowBatches
from l1kformer.mask import n_masked, read_mask
from l1kformer.model import build_model, positions_mask
from l1kformer.modes import get_mode
from l1kformer.settings import MASK_SCHEDULES, split_settings
from l1kformer.split import read_split
from l1kformer.tasks import get_task

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


def random_positions(batch, n_genes, ratio, generator, device):
    """batch x k masked positions (long, sorted in each row), k = ceil(ratio x n_genes), uniformly
    placed: the fixed-size index the model takes (no boolean masks, no data-dependent shapes)."""
    keys = torch.rand(batch, n_genes, generator=generator, device=device)
    return keys.topk(max(1, n_masked(ratio, n_genes)), dim=1, largest=False).indices.sort(dim=1).values


def use_compile(setting, device):
    """``train.compile``: auto compiles on CUDA only (on the CPU compiling costs more than it saves)."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


def peak_memory_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Job:
    """What one training run holds: settings, model, optimiser, data, device, process group."""

    def __init__(self, settings, data_path, split, val_mask, log, name="train"):
        self.name = name
        self.model_cfg, self.cfg = split_settings(settings)
        self.model_cfg = prior_for_data(self.model_cfg, self.cfg, len(split["train"]), log)
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank, self.world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if dist else (0, 1)
        self.device = pick_device(self.cfg.device, log, int(os.environ.get("LOCAL_RANK", 0)))
        self.autocast = autocast_for(self.device)
        torch.manual_seed(self.cfg.seed)
        self.model = build_model(self.model_cfg)
        self.task = get_task(self.model_cfg.mode)
        dataset, cfg = get_mode(self.model_cfg.mode).dataset, self.cfg
        self.task.prepare(self.model, data_path, split["train"], cfg.window_rows)
        self.model.to(self.device)
        self.optimizer = self.model.configure_optimizer(cfg.lr, cfg.weight_decay, fused=self.device.type == "cuda")
        # With DistributedDataParallel every rank draws the same global batch, masks and corruption
        # (all seeded by (seed, epoch)) and trains on its own slice of it; gradients are averaged
        # across ranks, so N processes follow the single-process run with the same global batch.
        self.net = torch.nn.parallel.DistributedDataParallel(self.model) if self.world > 1 else self.model
        self.compiled = use_compile(cfg.compile, self.device)
        if self.compiled:  # one graph: fixed-size masks, no host syncs inside the step
            self.net = torch.compile(self.net)
        self.train_loader = RowBatches(data_path, dataset, split["train"], cfg.batch_size, cfg.window_rows)
        self.val_rows, self.val_positions = val_mask
        self.val_loader = RowBatches(data_path, dataset, self.val_rows, max(cfg.batch_size, 64), cfg.window_rows)
        self.steps_per_epoch = min(len(self.train_loader), cfg.max_steps_per_epoch or len(self.train_loader))
        self.total_steps = cfg.epochs * self.steps_per_epoch


def prior_for_data(model_cfg, cfg, n_train, log=print):
    """The model config to build: a rank head's position prior is dropped when the train split has
    ``position_prior_below`` or more profiles per gene (None: always kept). With few profiles per gene
    (0.5 on the real plates) the prior is what the model could not learn; with many (48 on the default,
    57.6 on the proxy) the heads learn the frequencies themselves and the prior cost 2-3% of mean rank
    error (docs/model-study.md, Appendix G). The model file stores the result."""
    below, per_gene = cfg.position_prior_below, n_train / model_cfg.n_genes
    if model_cfg.mode != "rank" or model_cfg.position_prior is None or below is None or per_gene < below:
        return model_cfg
    log(f"position prior off: {per_gene:.1f} training profiles per gene (position_prior_below {below:g})")
    return replace(model_cfg, position_prior=None)


def train(settings, data_path, split, val_mask, checkpoint_path, job_id="", log=print,
          on_epoch_end=None, progress=True, name="train"):
    """Train one run. ``settings``: flat dict of ModelConfig and TrainConfig fields.

    ``data_path``: the task's data file (ranks.h5 or expression.h5); ``split``: {set: rows};
    ``val_mask``: (rows, positions) of the static val mask. Returns (model, state): ``state`` holds
    the epoch, step, best val loss and epoch, the best weights (``best_state``) and the history.
    ``job_id`` (a fingerprint) decides whether an existing checkpoint belongs to this job; ``name``
    (the run) is named in errors.
    """
    job = Job(settings, data_path, split, val_mask, log, name)
    state = _resume(job, checkpoint_path, job_id, log)
    n_params = sum(p.numel() for p in job.model.parameters())
    if job.world > 1:
        log(f"DistributedDataParallel over {job.world} processes "
            f"({'nccl' if job.device.type == 'cuda' else 'gloo'})")
    log(f"{job.model_cfg.mode} model, {n_params:,} parameters, {len(split['train'])} train / "
        f"{len(job.val_rows)} val profiles, {job.steps_per_epoch} steps per epoch, device {job.device}"
        f"{', compiled' if job.compiled else ''}")
    while state["epoch"] < job.cfg.epochs and state["bad_epochs"] < job.cfg.patience:
        row = _train_epoch(job, state, progress, log)
        _end_epoch(job, state, row, checkpoint_path, job_id, log)
        if on_epoch_end is not None:
            on_epoch_end(state["epoch"])
    if state["bad_epochs"] >= job.cfg.patience:
        log(f"early stop: val loss did not improve for {job.cfg.patience} epochs")
    return job.model, state


def _resume(job, checkpoint_path, job_id, log):
    """The training state: from this job's own checkpoint when there is one, else fresh."""
    state = {"epoch": 0, "step": 0, "best_val": float("inf"), "best_state": None, "best_epoch": 0,
             "bad_epochs": 0, "history": []}
    if os.path.exists(checkpoint_path):
        ckpt = torch.load(checkpoint_path, map_location=job.device, weights_only=False)
        if ckpt.get("job_id") == job_id:
            job.model.load_state_dict(ckpt["model"])
            job.optimizer.load_state_dict(ckpt["optimizer"])
            state = ckpt["state"]
            log(f"resuming from {checkpoint_path} after epoch {state['epoch']}")
        else:
            log(f"ignoring {checkpoint_path}: it belongs to other settings, data or code")
    return state


def _progress(batches, total, desc, log, every_s=30.0):
    """Yield ``batches``; log a plain line at each quarter of the epoch and at least every ``every_s``
    seconds (a log file gets lines, never carriage-return bars)."""
    t0 = last = time.time()
    marks = {max(1, round(total * q)) for q in (0.25, 0.5, 0.75)}
    for done, batch in enumerate(batches, 1):
        yield batch
        now = time.time()
        if done < total and (done in marks or now - last >= every_s):
            log(f"{desc}: {done}/{total} steps ({100 * done / total:.0f}%), {done / (now - t0):.2f} steps/s")
            last = now


def _train_epoch(job, state, progress, log):
    """One pass over the (capped) training batches with fresh masks; the epoch's history row."""
    cfg, epoch, device = job.cfg, state["epoch"], job.device
    job.model.train()
    torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout, and nothing else, draws from it
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + epoch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0, seen, lr, ratio = time.time(), 0, cfg.lr, cfg.mask_start
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device: no sync per step
    batches = itertools.islice(job.train_loader.epoch(cfg.seed, epoch), job.steps_per_epoch)
    if progress:
        batches = _progress(batches, job.steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", log)
    for _, values in batches:
        lr = lr_at(state["step"], job.total_steps, cfg)
        for group in job.optimizer.param_groups:
            group["lr"] = lr
        ratio = mask_ratio_at(state["step"] / max(1, job.total_steps - 1), cfg)
        loss_sum += _train_step(job, values, ratio, gen) * len(values)
        state["step"] += 1
        seen += len(values)
    loss_sum = float(loss_sum)  # the epoch's one host sync
    elapsed = time.time() - t0
    metrics = job.task.val_metrics(job.model, masked_outputs(job.model, job.val_loader, job.val_rows,
                                                             job.val_positions, device, job.autocast))
    return {"epoch": epoch + 1, "lr": lr, "mask_ratio": ratio, "train_loss": loss_sum / max(1, seen), **metrics,
            "samples_per_s": seen / max(elapsed, 1e-9), "peak_mem_mb": peak_memory_mb(device)}


def _train_step(job, values, ratio, gen):
    """One optimiser step on a batch; returns its mean loss over all ranks (a device tensor: no host
    sync per step)."""
    x = y = job.task.to_inputs(job.model, values, job.device)
    index = random_positions(len(x), job.model_cfg.n_genes, ratio, gen, job.device)
    inputs, hide = job.task.corrupt(x, positions_mask(x, index), job.cfg, job.model_cfg.n_genes, gen)
    weight = 1.0
    if job.world > 1:  # this rank's slice; the loss weighted so that the DDP average is the global mean
        part = slice(job.rank * len(x) // job.world, (job.rank + 1) * len(x) // job.world)
        weight = job.world * (part.stop - part.start) / len(x)  # every profile has the same k
        inputs, index, y = inputs[part], index[part], y[part]
        hide = hide[part] if hide is not None else None
    with job.autocast():
        _, loss = job.task.masked_loss(job.net, inputs, index, y, hide)
    job.optimizer.zero_grad(set_to_none=True)
    (loss * weight).backward()
    if job.cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(job.model.parameters(), job.cfg.grad_clip)
    job.optimizer.step()
    batch_loss = loss.detach().float() * weight / job.world
    if job.world > 1:
        torch.distributed.all_reduce(batch_loss)
    return batch_loss


def _end_epoch(job, state, row, checkpoint_path, job_id, log):
    """Record the epoch, keep the best weights, write the checkpoint (rank 0), log one line.
    A non-finite loss stops the run with one line (and drops the checkpoint it would resume into)."""
    bad = [k for k in ("train_loss", "val_loss") if not math.isfinite(row[k])]
    if bad:
        if job.rank == 0 and os.path.exists(checkpoint_path):
            os.remove(checkpoint_path)
        raise InputError(f"runs.{job.name}", f"epoch {row['epoch']}: {' and '.join(bad)} not finite; likely "
                         f"cause: extreme or non-finite input values (see the ingest log's value range) or a "
                         f"learning rate too high (lr {job.cfg.lr:g}); no model written")
    state["history"].append(row)
    if row["val_loss"] < state["best_val"]:
        state.update(best_val=row["val_loss"], best_epoch=row["epoch"], bad_epochs=0,
                     best_state={k: v.detach().cpu().clone() for k, v in job.model.state_dict().items()})
    else:
        state["bad_epochs"] += 1
    state["epoch"] = row["epoch"]
    if job.rank == 0:
        with atomic_path(checkpoint_path) as tmp:
            torch.save({"job_id": job_id, "model": job.model.state_dict(),
                        "optimizer": job.optimizer.state_dict(), "state": state}, tmp)
    if job.world > 1:
        torch.distributed.barrier()
    log(f"epoch {row['epoch']}/{job.cfg.epochs}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in row.items()
                                                                if k != "epoch"))


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def final_model(model, state, settings):
    """The self-describing model file: weights of the best val epoch and the config to rebuild it (the
    model's own, as built: :func:`prior_for_data` may have dropped the prior that ``settings`` name)."""
    _, cfg = split_settings(settings)
    return {"model_config": asdict(model.cfg), "train_config": asdict(cfg), "state_dict": state["best_state"],
            "best_epoch": state["best_epoch"], "best_val_loss": state["best_val"],
            "history": state["history"]}


def write_history(history, path):
    pd.DataFrame(history).to_csv(path, sep="\t", index=False, float_format="%.6g")


def n_genes_of(data_path, mode):
    """The number of genes in the data set that runs of ``mode`` read."""
    with h5py.File(data_path, "r") as h5:
        return h5[get_mode(mode).dataset].shape[1]


def run_training(settings, data_path, split_path, mask_path, model_path, history_path, checkpoint_path,
                 sources=(), log=print, name="train"):
    """A whole training job: train (resuming when a checkpoint of this very job exists), then write the
    self-describing model file and the history atomically (rank 0 only) and drop the checkpoint.
    ``settings``: the run's (config.yaml's ``train:`` keys and ``mode``); ``n_genes`` comes from the data."""
    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if dist else 0
    settings = {**settings, "n_genes": n_genes_of(data_path, settings["mode"])}
    job_id = fingerprint(settings, [data_path, split_path, mask_path], sources)
    model, state = train(settings, data_path, read_split(split_path), read_mask(mask_path)["val"],
                         checkpoint_path, job_id, log=log, progress=rank == 0, name=name)
    if rank == 0:
        with atomic_path(model_path) as tmp:
            torch.save(final_model(model, state, settings), tmp)
        with atomic_path(history_path) as tmp:
            write_history(state["history"], tmp)
        os.remove(checkpoint_path)
        log(f"best epoch {state['best_epoch']} (val loss {state['best_val']:.4g}); wrote {model_path}")
    return model, state
