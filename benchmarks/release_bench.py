"""Ingest of a published-layout release file: landmark selection and sample filters against the read floor.

    python benchmarks/release_bench.py                    # 50,000 and 100,000 profiles (2.5 and 4.9 GB)
    python benchmarks/release_bench.py --sizes 100000 --dir /scratch

Writes a GCTX laid out as the releases are: N profiles x 12,328 genes (978 landmarks scattered among
the rows), float32, uncompressed, chunks of 262 samples x 1,000 genes (cmapM's writer), profiles
stored plate by plate (384 wells), with the release's gene_info (``pr_is_lm``) and inst_info tables.
Then, each in a fresh process (peak RSS is that process's ru_maxrss):

- floor: h5py reads the whole matrix in the blocks ingest uses, and nothing else;
- ingest with the landmark selection (all profiles);
- ingest with a filter keeping 50% and 5% of the plates (whole plates, as a cell line, a batch or a
  plate filter keeps them: blocks holding no kept profile are skipped);
- ingest with a filter keeping 5% of the profiles scattered over every plate (as ``qc_pass`` or
  ``pert_type`` can): every chunk still holds a kept profile, so nothing can be skipped.

op_s is the time of the operation itself, timed inside the process (the read loop; the ``ingest()``
call, tables and output files included); wall_s adds the interpreter's start and imports (about
0.8 s here, the same for any file). MB/s is the matrix's bytes on disk over op_s, x_all a case's
op_s over the unfiltered ingest's; each the median of ``--repeat`` runs (every run's op_s in brackets:
shared disks are noisy). Targets (issue 21): ingest >= 0.7x the floor's
MB/s, peak RSS <= 2 GB and within 10% between the two sizes, the 5% plate filter <= 0.25x the
unfiltered time. The file is read from the page cache when it fits in memory, after being written
(both the floor and ingest alike); this run says whether it could drop the cache first.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_config import run_measured

WRITE = """
import numpy as np, pandas as pd
from l1kformer.gctx import write_gctx
n, rows = {n}, 12328
rng = np.random.default_rng(0)
ids = np.array([str(i) for i in rng.choice(np.arange(1, 200000), rows, replace=False)])
landmark = np.zeros(rows, dtype=bool); landmark[rng.choice(rows, 978, replace=False)] = True
pd.DataFrame({{'pr_gene_id': ids, 'pr_gene_symbol': ['S' + i for i in ids], 'pr_is_lm': landmark.astype(int)}}
             ).to_csv('{d}/gene_info.txt', sep='\\t', index=False)
plate = np.arange(n) // 384
inst = np.array([f'P{{p:05d}}_A375_24H_X1_B1:W{{w:03d}}' for p, w in zip(plate, np.arange(n) % 384)])
pd.DataFrame({{'inst_id': inst, 'rna_plate': [f'P{{p:05d}}' for p in plate],
              'qc_flag': np.where(rng.random(n) < 0.05, 'keep', 'drop'), 'pert_type': 'trt_cp'}}
             ).to_csv('{d}/inst_info.txt', sep='\\t', index=False)
def block(a, b):
    return np.random.default_rng(a).uniform(3, 15, (b - a, rows)).astype(np.float32)
write_gctx('{d}/release.gctx', block, inst, ids, chunk_rows=262, chunk_genes=1000, block_rows=5240)
"""

FLOOR = """
import time
import h5py
from l1kformer.ingest import DEFAULT_BLOCK_BYTES
t = time.perf_counter()
with h5py.File('{d}/release.gctx', 'r') as f:
    data = f['0/DATA/0/matrix']
    unit = data.chunks[0]
    rows = max(1, DEFAULT_BLOCK_BYTES // (4 * data.shape[1]) // unit) * unit
    for start in range(0, data.shape[0], rows):
        data[start:start + rows]
open('{d}/op_s', 'w').write(str(time.perf_counter() - t))
"""

INGEST = """
import time
from l1kformer.ingest import ingest
t = time.perf_counter()
ingest(['{d}/release.gctx'], '{d}/x.h5', '{d}/s.parquet', '{d}/g.tsv', gene_table='{d}/gene_info.txt',
       n_genes=978, gene_key='pr_gene_id', gene_match=['pr_gene_id'], gene_filter={{'pr_is_lm': [1]}},
       sample_table='{d}/inst_info.txt', sample_key='inst_id', orientation='auto', filters={filters!r},
       level=3, log=lambda m: None)
open('{d}/op_s', 'w').write(str(time.perf_counter() - t))
"""


def drop_cache():
    """Whether the page cache could be dropped (root on a machine that allows it)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return True
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50_000, 100_000])
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each case; the median is shown")
    args = ap.parse_args()
    print(f"# release ingest; {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    print(f"{'profiles':>9} {'case':>22} {'op_s':>7} {'wall_s':>7} {'MB/s':>7} {'x_floor':>8} {'x_all':>6} "
          f"{'peak_rss_MiB':>13}", flush=True)
    peaks = {}
    for n in args.sizes:
        with tempfile.TemporaryDirectory(dir=args.dir) as d:
            t = time.perf_counter()
            run_measured(WRITE.format(d=d, n=n))
            size = (n * 12328 * 4) / 1e6
            print(f"# wrote {n:,} x 12,328 in {time.perf_counter() - t:.1f} s ({size / 1e3:.2f} GB of values)",
                  flush=True)
            plates = sorted({f"P{p:05d}" for p in range(-(-n // 384))})
            cases = {
                "floor (h5py read)": FLOOR.format(d=d),
                "ingest, landmarks": INGEST.format(d=d, filters={}),
                "ingest, 50% of plates": INGEST.format(d=d, filters={"rna_plate": plates[::2]}),
                "ingest, 5% of plates": INGEST.format(d=d, filters={"rna_plate": plates[::20]}),
                "ingest, 5% scattered": INGEST.format(d=d, filters={"qc_flag": ["keep"]}),
            }
            ops, walls, rsses = ({case: [] for case in cases} for _ in range(3))
            for _ in range(args.repeat):  # the cases in turn, so that a slow spell of the disk hits them all
                for case, code in cases.items():
                    for out in ("x.h5", "s.parquet", "g.tsv"):  # as Snakemake does: no output to rename over
                        Path(d, out).unlink(missing_ok=True)
                    dropped = drop_cache()
                    wall, rss = run_measured(code)
                    ops[case].append(float(Path(d, "op_s").read_text()))
                    walls[case].append(wall)
                    rsses[case].append(rss)
            floor = size / statistics.median(ops["floor (h5py read)"])
            everything = statistics.median(ops["ingest, landmarks"])
            for case in cases:
                op, wall, rss = statistics.median(ops[case]), statistics.median(walls[case]), max(rsses[case])
                ratio = f"{op / everything:>6.3f}" if case.startswith("ingest") else f"{'':>6}"
                print(f"{n:>9} {case:>22} {op:>7.2f} {wall:>7.2f} {size / op:>7.0f} {size / op / floor:>8.2f} {ratio} "
                      f"{rss:>13.0f}  ({', '.join(f'{w:.2f}' for w in ops[case])})", flush=True)
            peaks[n] = max(rsses["ingest, landmarks"])
            print(f"# page cache {'dropped before each run' if dropped else 'NOT dropped (not root?): reads hit memory'}")
    if len(peaks) > 1:
        lo, hi = min(peaks.values()), max(peaks.values())
        print(f"# ingest peak RSS across sizes: {lo:.0f} to {hi:.0f} MiB ({100 * (hi - lo) / lo:.1f}% apart)")


if __name__ == "__main__":
    main()
