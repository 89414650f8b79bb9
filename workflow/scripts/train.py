import json
import os
import subprocess
import sys

import torch

from l1kformer.step import step
from l1kformer.train import run_training

with step(snakemake.log[0]) as log:
    import h5py

    data = snakemake.input.data
    with h5py.File(data, "r") as h5:
        n_genes = h5["ranks" if "ranks" in h5 else "expression"].shape[1]
    settings = {**snakemake.params.settings, "n_genes": n_genes}
    outdir = os.path.dirname(snakemake.output.model)
    job = dict(settings=settings, data_path=data, split_path=snakemake.input.split,
               mask_path=snakemake.input.mask, model_path=snakemake.output.model,
               history_path=snakemake.output.history, checkpoint_path=os.path.join(outdir, "checkpoint.pt"),
               sources=list(snakemake.input.package))
    n_proc = settings["gpus"]
    if n_proc == 1:
        torch.set_num_threads(snakemake.threads)
        run_training(log=log, **job)
    else:  # DistributedDataParallel: torchrun starts one process per GPU (gloo processes on a CPU)
        spec = os.path.join(outdir, "ddp_job.json")
        with open(spec, "w") as f:
            json.dump({**job, "log": snakemake.log[0], "threads": max(1, snakemake.threads // n_proc)}, f)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # finds l1kformer
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_proc}",
               "-m", "l1kformer.distributed", spec]
        log("launching: " + " ".join(cmd))
        subprocess.run(cmd, env=env, check=True, stdout=sys.stderr, stderr=sys.stderr)
        os.remove(spec)
