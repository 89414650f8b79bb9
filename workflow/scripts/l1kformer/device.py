"""Where a job runs: the device it picks, and the autocast it trains and infers under. Torch only, so
that a job which needs no model (the downstream baselines) does not depend on the model's code."""

import contextlib

import torch


def pick_device(wanted, log, local_rank=0):
    """``auto``: CUDA if the job sees a GPU, else the CPU with a warning in the log."""
    if wanted == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if wanted == "cuda":
        raise RuntimeError("device: cuda was asked for but no GPU is visible to this job")
    log("WARNING: no GPU visible to this job; running on the CPU (slow for real data)")
    return torch.device("cpu")


def autocast_for(device):
    """bf16 autocast on CUDA, plain fp32 elsewhere."""
    if torch.device(device).type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext
