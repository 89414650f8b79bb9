"""Evaluation at scale: the rank and expression baselines and the evaluation of a small model of each
mode, in seconds per 1,000 test profiles, and the peak RSS over all of them.

    python benchmarks/eval_bench.py                 # a test set of 10,000 profiles
    python benchmarks/eval_bench.py --test 30000

Makes a simulated set of N / 0.1 profiles (the default 80/10/10 split, so N test profiles and 8 N
train profiles), ingests, ranks, splits and masks it as the pipeline does (not timed), saves a small
untrained model of each mode (d_model 32, 1 layer, 2 heads: evaluation costs the same for any weights),
then runs each timed step in a fresh process (its peak RSS is that process's ru_maxrss), with 2 torch
threads. The evaluate steps also report their forward pass alone, run over the same batches, so the
scoring share is visible. The last line is the summary (one line, wrapped here):

    eval_bench: N=<n> rank_baselines=<s>/1k evaluate_rank=<s>/1k expression_baselines=<s>/1k
    evaluate_expression=<s>/1k peak_rss=<MiB>

Targets (issue 12, 2 cores): rank steps <= 2 s per 1,000, expression baselines <= 1 s per 1,000, peak
RSS <= 2 GB and flat from 10,000 to 30,000 test profiles.
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

PREPARE = """
import torch
from l1kformer.simulate import SimulationConfig, simulate
from l1kformer.ingest import ingest
from l1kformer.rank import rank_file
from l1kformer.split import write_split, read_split
from l1kformer.mask import write_mask
from l1kformer.model import build_model
from l1kformer.tasks import get_task
d, n = {d!r}, {n}
quiet = lambda m: None
cfg = SimulationConfig(**{{**{simulate!r}, 'n_plates': -(-n // 384), 'wells_per_plate': 384}})
simulate(cfg, d + '/sim.gctx', d + '/truth.h5', log=quiet)
ingest([d + '/sim.gctx'], d + '/x.h5', d + '/s.parquet', d + '/g.tsv', log=quiet, **{ingest!r})
rank_file(d + '/x.h5', d + '/r.h5', threads=2, log=quiet)
write_split(d + '/s.parquet', d + '/split.h5', {{'train': 0.8, 'val': 0.1, 'test': 0.1}}, 1, log=quiet)
write_mask(read_split(d + '/split.h5'), 978, d + '/m.h5', 0.15, 2, log=quiet)
split = read_split(d + '/split.h5')
for mode, data in (('rank', 'r.h5'), ('expression', 'x.h5')):
    cfg = {{**{model!r}, 'mode': mode}}
    torch.manual_seed(0)
    model = build_model(cfg)
    get_task(mode).prepare(model, d + '/' + data, split['train'], 16384)
    torch.save({{'model_config': cfg, 'state_dict': model.state_dict(), 'best_epoch': 0}}, d + '/' + mode + '.pt')
"""

HEAD = """
import json, time, torch
torch.set_num_threads(2)
from l1kformer.baselines_expression import expression_baselines
from l1kformer.baselines_rank import rank_baselines
from l1kformer.evaluate import evaluate
from l1kformer.inference import load_model, predict_masked
from l1kformer.mask import read_mask
from l1kformer.split import read_split
d = {d!r}
mask, split = read_mask(d + '/m.h5'), read_split(d + '/split.h5')
t = time.perf_counter()  # imports and the mask file are not timed
"""

EVALUATE = """
model, _ = load_model(d + '/{mode}.pt')
res = evaluate(model, d + '/{data}', *mask['test'], d + '/pred_{mode}.parquet')
seconds = time.perf_counter() - t
t = time.perf_counter()
for _ in predict_masked(model, d + '/{data}', *mask['test']):
    pass
out = {{'seconds': seconds, 'forward_seconds': time.perf_counter() - t, '{metric}': res['{metric}']}}
"""


def evaluate_step(mode, data, metric):
    """The evaluate step of one mode (its model, its data file, the metric it reports)."""
    return EVALUATE.replace("{mode}", mode).replace("{data}", data).replace("{metric}", metric)

STEPS = {
    "rank_baselines": """
res, _ = rank_baselines(d + '/r.h5', split, mask['val'], mask['test'], log=lambda m: None, **{rank!r})
out = {{'seconds': time.perf_counter() - t, 'c_mean_rank_error': res['gaussian_positions']['c_mean_rank_error']}}
""",
    "evaluate_rank": evaluate_step("rank", "r.h5", "c_top1"),
    "expression_baselines": """
res, _ = expression_baselines(d + '/x.h5', split, mask['val'], mask['test'], log=lambda m: None, **{expression!r})
out = {{'seconds': time.perf_counter() - t, 'linear_shrunk_mse': res['linear_shrunk']['mse']}}
""",
    "evaluate_expression": evaluate_step("expression", "x.h5", "mse"),
}

TAIL = """
json.dump(out, open(d + '/out.json', 'w'))
"""


def run_measured(code):
    """Wall seconds and peak RSS (MiB) of ``python -c code`` in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(SCRIPTS))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("eval_bench: a step failed (its traceback is above)")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test", type=int, default=10_000, help="test profiles (the set has 10 x as many)")
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    n_total = 10 * args.test
    evaluate = defaults("evaluate")
    settings = {
        "rank": {k: evaluate[k] for k in ("smoothing_sigma", "tune_profiles")},
        "expression": {k: evaluate[k] for k in ("knn_k", "knn_reference", "tune_profiles")},
    }
    model = {k: v for k, v in defaults("train", n_genes=978, d_model=32, n_layers=1, n_heads=2, d_ff=64).items()
             if k in ("trunk", "value_encoder", "d_model", "n_layers", "n_heads", "d_ff", "dense_width",
                      "dense_depth", "dropout", "n_genes")}
    print(f"# eval_bench: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, torch threads 2; "
          f"model d_model 32 x 1 layer; evaluate settings {settings}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        t = time.perf_counter()
        run_measured(PREPARE.format(d=d, n=n_total, simulate=defaults("simulate", n_genes=978), model=model,
                                    ingest={k: v for k, v in defaults("data", n_genes=978).items()
                                            if k not in ("inputs", "plate_field")}))
        import h5py

        with h5py.File(Path(d, "m.h5")) as h5:
            n_test, k = h5["test/positions"].shape
        with h5py.File(Path(d, "split.h5")) as h5:
            n_train = len(h5["train"])
        print(f"# prepared {n_total} profiles ({n_train} train, {n_test} test x {k} masked) in "
              f"{time.perf_counter() - t:.0f} s (not timed below)", flush=True)
        per_1k, peak = {}, 0.0
        print(f"{'step':>21} {'wall_s':>8} {'s_per_1k':>9} {'peak_rss_MiB':>13}  detail")
        for step, body in STEPS.items():
            code = HEAD.format(d=d) + body.format(**settings) + TAIL
            wall, rss = run_measured(code)
            out = json.loads(Path(d, "out.json").read_text())
            per_1k[step] = 1000 * out["seconds"] / n_test
            peak = max(peak, rss)
            detail = ", ".join(f"{key} {value:.4g}" for key, value in out.items() if key != "seconds")
            if "forward_seconds" in out:
                forward = 1000 * out["forward_seconds"] / n_test
                detail += (f" (forward pass alone {forward:.2f} s/1k; the rest, scoring, "
                           f"{per_1k[step] - forward:.2f} s/1k)")
            print(f"{step:>21} {out['seconds']:>8.2f} {per_1k[step]:>9.3f} {rss:>13.0f}  {detail}", flush=True)
    print(f"eval_bench: N={n_test} " + " ".join(f"{s}={v:.2f}/1k" for s, v in per_1k.items())
          + f" peak_rss={peak:.0f}")


if __name__ == "__main__":
    main()
