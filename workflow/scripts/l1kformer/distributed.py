"""DistributedDataParallel training: :func:`launch` starts torchrun from the train job, and
:func:`main` is each process's entry point:

    torchrun --standalone --nproc_per_node N -m l1kformer.distributed job.json

``job.json`` holds the arguments of :func:`l1kformer.train.run_training`. NCCL on GPUs (one per
process, LOCAL_RANK), gloo on the CPU. Rank 0 writes the outputs.
"""

import json
import os
import subprocess
import sys

import torch

from l1kformer.errors import InputError


def launch(job, n_proc, threads, log_path, spec_path, log=print):
    """Run ``run_training(**job)`` in ``n_proc`` processes under torchrun; the job file is removed
    whatever happens. Each process logs to ``log_path.rank<N>``."""
    try:
        with open(spec_path, "w") as f:
            json.dump({**job, "log": log_path, "threads": max(1, threads // n_proc)}, f)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # finds l1kformer
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_proc}",
               "-m", "l1kformer.distributed", str(spec_path)]
        log("launching: " + " ".join(cmd))
        proc = subprocess.run(cmd, env=env, stdout=sys.stderr, stderr=sys.stderr)
        if proc.returncode != 0:
            if os.path.exists(_error_path(spec_path)):  # bad input in a process: its one line, as without DDP
                with open(_error_path(spec_path)) as f:
                    raise InputError(**json.load(f))
            raise subprocess.CalledProcessError(proc.returncode, cmd)
    finally:
        for path in (spec_path, _error_path(spec_path)):
            if os.path.exists(path):
                os.remove(path)


def _error_path(spec_path):
    return f"{spec_path}.error"


def main(spec_path):
    with open(spec_path) as f:
        job = json.load(f)
    from l1kformer.train import run_training

    cuda = torch.cuda.is_available() and job["settings"].get("device", "auto") != "cpu"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    torch.distributed.init_process_group("nccl" if cuda else "gloo")
    torch.set_num_threads(max(1, job.pop("threads", 1)))
    rank = torch.distributed.get_rank()
    log_file = open(f"{job.pop('log')}.rank{rank}", "w", buffering=1)
    sys.stderr = log_file

    def log(message):
        print(message, file=log_file, flush=True)

    try:
        run_training(log=log, **job)
    except InputError as exc:  # every rank sees the same data; rank 0 hands the one line to launch()
        log(f"l1kformer error: {exc}")
        if rank == 0:
            with open(_error_path(spec_path), "w") as f:
                json.dump({"where": exc.where, "problem": exc.problem}, f)
        raise SystemExit(1) from None
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
