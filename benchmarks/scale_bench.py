"""Host memory of the train step does not grow with the number of profiles.

    python benchmarks/scale_bench.py --sizes 100000 1000000

For each size, writes a synthetic ranks.h5 (random rankings, chunked by rows as the pipeline writes
them), a split (a fixed 2,000 val profiles, the rest train) and a static val mask, then runs the
pipeline's own training job (``run_training``) in a fresh process for a bounded number of steps and
prints its wall time and peak RSS (ru_maxrss of that process). The loader reads row windows, so the
RSS should be flat from 100 k to 1 M profiles.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_config import defaults

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"

MAKE_DATA = """
import h5py, numpy as np
from l1kformer.gene_order import rank_genes
from l1kformer.mask import write_mask
from l1kformer.fileio import h5_create
n, d = {n}, '{d}'
with h5_create(d + '/ranks.h5') as h5:
    ds = h5.create_dataset('ranks', shape=(n, 978), dtype=np.int16, chunks=(1024, 978))
    rng = np.random.default_rng(0)
    for s in range(0, n, 65536):
        e = min(n, s + 65536)
        ds[s:e] = rank_genes(rng.random((e - s, 978), dtype=np.float32))
rows = np.arange(n)
split = {{'train': rows[2000:], 'val': rows[:2000], 'test': rows[:0]}}
with h5_create(d + '/split.h5') as h5:
    for k, v in split.items():
        h5[k] = v
write_mask(split, 978, d + '/mask.h5', 0.15, 0, log=lambda m: None)
"""

TRAIN = """
import json, torch
torch.set_num_threads(2)
from l1kformer.train import run_training
job = json.load(open('{d}/job.json'))
run_training(log=lambda m: None, **job)
"""


def measured(code):
    env = dict(os.environ, PYTHONPATH=str(SCRIPTS))
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit("benchmark step failed")
    return time.perf_counter() - t, usage.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--steps", type=int, default=200, help="training steps (batch 64) per size")
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    print(f"{'profiles':>10} {'train_steps':>11} {'wall_s':>8} {'peak_rss_MiB':>13}  (train step, rank mode, "
          f"d_model 32, 1 layer, batch 64, window_rows 16384)")
    for n in a.sizes:
        with tempfile.TemporaryDirectory(dir=a.dir) as d:
            measured(MAKE_DATA.format(n=n, d=d))
            settings = defaults("train", mode="rank", n_genes=978, d_model=32, n_layers=1, n_heads=2, d_ff=64,
                                epochs=1, batch_size=64, max_steps_per_epoch=a.steps, device="cpu")
            Path(d, "job.json").write_text(json.dumps(dict(
                settings=settings, data_path=f"{d}/ranks.h5", split_path=f"{d}/split.h5",
                mask_path=f"{d}/mask.h5", model_path=f"{d}/model.pt", history_path=f"{d}/history.tsv",
                checkpoint_path=f"{d}/ckpt.pt")))
            wall, rss = measured(TRAIN.format(d=d))
            print(f"{n:>10} {a.steps:>11} {wall:>8.1f} {rss:>13.0f}", flush=True)


if __name__ == "__main__":
    main()
