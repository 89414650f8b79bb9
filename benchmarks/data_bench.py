"""Data steps at scale: wall time and peak RSS of ingest, normalize (data.level: 2, per plate), split, rank
and mask on a synthetic GCTX.

    python benchmarks/data_bench.py                      # 50,000 and 200,000 profiles
    python benchmarks/data_bench.py --sizes 1320000      # the size of GSE92742 Level 3

Each step runs in its own process (peak RSS is that process's ru_maxrss). Rank throughput is also
measured against the plain per-profile loop (one stable argsort per profile) on the same profiles,
side by side in this run. Targets: 1.32 M profiles through ingest, split, rank and mask in <= 3 min, <= 2 GB; normalize
(done only for Level 2 input) no slower than rank.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench_config import SCRIPTS, defaults, run_measured

sys.path.insert(0, str(SCRIPTS))

INGEST = {k: v for k, v in defaults("data", n_genes=978).items() if k not in ("inputs", "plate_field")}
STEPS = {
    "ingest": "from l1kformer.ingest import ingest; ingest(['{d}/in.gctx'], '{d}/x.h5', '{d}/s.parquet', "
              "'{d}/g.tsv', log=lambda m: None, **{ingest!r})",
    "normalize": "from l1kformer.normalize import normalize_file; normalize_file('{d}/fluor.h5', '{d}/s.parquet', "
                 "'{d}/n.h5', threads=2, log=lambda m: None)",
    "split": "from l1kformer.split import write_split; write_split('{d}/s.parquet', '{d}/split.h5', "
             "{{'train': 0.8, 'val': 0.1, 'test': 0.1}}, 1, log=lambda m: None)",
    "rank": "from l1kformer.rank import rank_file; rank_file('{d}/x.h5', '{d}/r.h5', threads=2, "
            "log=lambda m: None)",
    "mask": "from l1kformer.mask import write_mask; from l1kformer.split import read_split; "
            "write_mask(read_split('{d}/split.h5'), 978, '{d}/m.h5', 0.15, 2, log=lambda m: None)",
}


# Both run in child processes: Linux keeps a process's peak RSS across exec, so the parent must stay
# small for the children's ru_maxrss to be their own.
WRITE_INPUT = """
from l1kformer.simulate import SimulationConfig, make_layout, make_truth, simulate_block, gene_table
from l1kformer.gctx import write_gctx
n = {n}
cfg = SimulationConfig(**{{**{simulate!r}, 'n_plates': -(-n // 384), 'wells_per_plate': 384}})
truth, (meta, codes), genes = make_truth(cfg), make_layout(cfg), gene_table(cfg.n_genes)
meta = meta.iloc[:n]
write_gctx('{d}/in.gctx', lambda a, b: simulate_block(truth, codes, a, b, cfg.seed), meta['id'],
           genes['id'], sample_meta=meta, gene_meta=genes)
"""

FLUORESCENCE = """
import h5py, numpy as np
with h5py.File('{d}/x.h5') as src, h5py.File('{d}/fluor.h5', 'w') as out:  # Level 2-like: 2^x, positive
    x = src['expression']
    y = out.create_dataset('expression', shape=x.shape, dtype=np.float32, chunks=x.chunks)
    for a in range(0, x.shape[0], 65536):
        y[a:a + 65536] = np.exp2(x[a:a + 65536])
    for name in ('sample_id', 'gene_id'):
        src.copy(name, out)
"""

RANK_THROUGHPUT = """
import time, h5py, numpy as np
from l1kformer.gene_order import rank_genes, rank_genes_loop
with h5py.File('{d}/x.h5') as h5:
    x = h5['expression'][:20000]
t = time.perf_counter(); fast = rank_genes(x); t_fast = time.perf_counter() - t
t = time.perf_counter(); slow = rank_genes_loop(x); t_loop = time.perf_counter() - t
assert np.array_equal(fast, slow)
print(f'# rank throughput (1 thread, {{len(x):,}} profiles): vectorised {{len(x) / t_fast:,.0f}} profiles/s, '
      f'per-profile loop {{len(x) / t_loop:,.0f}} profiles/s, ratio {{t_loop / t_fast:.1f}}x', flush=True)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000])
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    print(f"# data steps; {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    sys.stdout.flush()
    print(f"{'profiles':>9} {'step':>7} {'wall_s':>8} {'peak_rss_MiB':>13} {'us/profile':>11}")
    for n in args.sizes:
        with tempfile.TemporaryDirectory(dir=args.dir) as d:
            t = time.perf_counter()
            run_measured(WRITE_INPUT.format(d=d, n=n, simulate=defaults("simulate", n_genes=978)))
            print(f"# wrote {n} profiles in {time.perf_counter() - t:.1f} s "
                  f"({Path(d, 'in.gctx').stat().st_size / 2**30:.2f} GiB)")
            total_wall, peak = 0.0, 0.0
            for step, code in STEPS.items():
                if step == "normalize":
                    run_measured(FLUORESCENCE.format(d=d))  # its input, not timed
                wall, rss = run_measured(code.format(d=d, ingest=INGEST))
                total_wall, peak = total_wall + wall, max(peak, rss)
                print(f"{n:>9} {step:>7} {wall:>8.2f} {rss:>13.0f} {1e6 * wall / n:>11.2f}", flush=True)
            print(f"{n:>9} {'total':>7} {total_wall:>8.2f} {peak:>13.0f} {1e6 * total_wall / n:>11.2f}")
            run_measured(RANK_THROUGHPUT.format(d=d))


if __name__ == "__main__":
    main()
