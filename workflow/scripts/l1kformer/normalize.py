"""normalize: Level 2 fluorescence -> log2, quantile-normalised within each plate (data.level: 2).

What the Broad does to make Level 3 from Level 2, per plate, less what the published Level 2 files
cannot support: log2; LISS (invariant-set scaling against 80 control transcripts, which are not among
the 978 rows of the published Level 2 matrices, so it cannot be done here); then quantile
normalisation: the k-th smallest value of every profile becomes the median over the plate's profiles
of their k-th smallest values, and values tied within a profile all get the median of those
reference values over the ranks they share (the rule that reproduces the Broad's QNORM of LJP009;
tests/test_normalize.py). Whole plates are read and written in blocks of a few thousand profiles
(``normalize_file``), so memory is bounded by the block, not the file.
"""

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pandas as pd

from l1kformer.errors import InputError
from l1kformer.fileio import atomic_path, h5_create, h5_write_strings

UNITS = "log2 (quantile normalised per plate)"
PLATE_FIELDS = ("det_plate", "rna_plate")  # tried in turn when data.plate_field is null


def quantile_normalize(values, transform=None, chunk_rows=128):
    """Quantile normalisation of one plate (profiles x genes) with the Broad's tie rule, float32 out.

    The order and the ties are those of ``values`` as stored (float32, no NaN); the reference is on
    ``transform(values)`` (``np.log2`` for Level 2 fluorescence; None: the values themselves), which must
    keep the order, so it is applied to the two middle values of each rank alone (float64). Untied
    positions take the reference as it is; only the runs of tied positions are worked out.

    The sort: each value widened to float64 (exact) has 29 zero mantissa bits, where the gene index goes,
    so one float64 sort per profile (numpy's vectorised one) gives the order and the sorted values;
    it keeps distinct values apart and tied ones together (their members in any order, which does not
    matter here: a tie's members all get the same value).
    """
    values = np.asarray(values, dtype=np.float32)
    m, n = values.shape
    bits = max(1, (n - 1).bit_length())
    if bits > 29:
        raise ValueError(f"{n} genes do not fit the 29 spare bits of a widened float32")
    low = np.uint64((1 << bits) - 1)
    keys = np.empty((m, n), dtype=np.float64)
    key_bits = keys.view(np.uint64)
    gene = np.arange(n, dtype=np.uint64)
    for start in range(0, m, chunk_rows):  # a chunk's keys stay in cache while they are sorted
        rows = slice(start, start + chunk_rows)
        np.bitwise_or(values[rows].astype(np.float64).view(np.uint64), gene, out=key_bits[rows])
        keys[rows].sort(axis=1)
    at = key_bits & low  # each sorted position's gene, ...
    at += (np.arange(m, dtype=np.uint64) * np.uint64(n))[:, None]  # ... as a flat index of the plate
    key_bits &= ~low
    ordered = keys.astype(np.float32)  # each profile's values, ascending
    middle = [(m - 1) // 2, m // 2]
    mid = np.sort(np.ascontiguousarray(ordered.T), axis=1)[:, middle].astype(np.float64)
    # ^ (a float32 sort of the transposed copy beats a partition, and a sort along the strided axis)
    reference = (mid if transform is None else transform(mid)).mean(axis=1)
    # ^ the median of the k-th smallest values: non-decreasing in k
    result = np.tile(reference.astype(np.float32), (m, 1))
    tied = ordered[:, 1:] == ordered[:, :-1]  # position k + 1 holds the value of position k
    run = np.flatnonzero(tied)
    if len(run):
        run += run // (n - 1) + 1  # -> flat positions of the m x n result
        starts = np.flatnonzero(np.diff(run, prepend=-2) != 1)  # each run of tied positions
        first = run[starts] - 1  # the run's first member (not itself marked tied)
        last = run[np.append(starts[1:], len(run)) - 1]
        lo, hi = first % n, last % n
        value = (reference[(lo + hi) // 2] + reference[(lo + hi + 1) // 2]) / 2  # the median over the run
        flat = result.reshape(-1)
        flat[first] = value
        flat[run] = np.repeat(value, last - first)  # a run's tied positions follow one another in ``run``
    out = np.empty((m, n), dtype=np.float32)
    out.reshape(-1)[at.view(np.int64).reshape(-1)] = result.reshape(-1)
    return out


def plates_of(samples, plate_field):
    """Each profile's plate (strings) and where it came from: ``plate_field``, else det_plate, else
    rna_plate, else the sample id's part before ':' (Broad ids: ``PLATE:WELL``)."""
    if plate_field is not None:
        if plate_field not in samples.columns:
            raise InputError("data.plate_field", f"{plate_field!r} is not a sample field; fields: "
                                                 f"{', '.join(samples.columns)}")
        field = plate_field
    else:
        field = next((f for f in PLATE_FIELDS if f in samples.columns), None)
    if field is not None:
        plates = samples[field]
        missing = plates.isna().to_numpy()
        where = f"sample field {field!r}"
    else:
        ids = samples["sample_id"].astype(str)
        missing = ~ids.str.contains(":").to_numpy()
        plates = ids.str.split(":").str[0]
        where = "the sample ids' part before ':'"
    if missing.any():
        example = samples["sample_id"].iloc[int(np.flatnonzero(missing)[0])]
        raise InputError("data.plate_field", f"{int(missing.sum())} profiles have no plate in {where} "
                                             f"(e.g. {example!r}): name a plate field in data.plate_field")
    return plates.astype(str).to_numpy(), where


def normalize_file(in_path, samples_path, out_path, plate_field=None, threads=1, block_rows=4096, log=print):
    """Write ``out_path`` like ``in_path`` (ingest's layout) with every plate log2 and quantile-normalised.

    Plates that lie one after another in the file (as ingest writes them when the inputs are in plate
    order) are read and written together, in blocks of about ``block_rows`` profiles, whole plates only;
    a plate whose rows are scattered is read and written alone. Blocks are normalised on ``threads``
    threads (numpy frees the GIL) while the main thread reads and writes, at most ``2 x threads + 1``
    blocks in memory.
    """
    samples = pd.read_parquet(samples_path)
    plates, where = plates_of(samples, plate_field)
    codes, names = pd.factorize(plates, sort=True)
    rows_of = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[rows_of], np.arange(len(names) + 1))
    ids = samples["sample_id"]
    with h5py.File(in_path, "r") as src, atomic_path(out_path) as tmp, ThreadPoolExecutor(threads) as pool:
        x = src["expression"]
        with h5_create(tmp) as h5:
            data = h5.create_dataset("expression", shape=x.shape, dtype=np.float32, chunks=x.chunks,
                                     track_times=False)
            pending = deque()
            blocks = _blocks([rows_of[bounds[p]:bounds[p + 1]] for p in range(len(names))], block_rows)
            for b, (at, parts) in enumerate(blocks):
                values = x[at]
                rows = np.arange(at.start, at.stop) if isinstance(at, slice) else at
                parts = [(names[p], local, ids.iloc[rows[local]]) for p, local in parts]
                pending.append((at, pool.submit(_block, in_path, values, parts, log)))
                while len(pending) > 2 * threads or (pending and b == len(blocks) - 1):
                    done, job = pending.popleft()
                    data[done] = job.result()
            h5_write_strings(h5, "sample_id", src["sample_id"].asstr()[()])
            h5_write_strings(h5, "gene_id", src["gene_id"].asstr()[()])
            h5.attrs["units"] = UNITS
    log(f"{len(names)} plates (from {where}) log2 and quantile-normalised: {len(plates)} profiles")


def _blocks(plate_rows, block_rows):
    """[(rows to read: a slice, or an index array for a scattered plate, [(plate, its rows within the
    block)])]: consecutive plates joined up to ``block_rows`` rows, in the order of their first row."""
    blocks, start, stop, parts = [], None, None, []
    for p in sorted(range(len(plate_rows)), key=lambda p: plate_rows[p][0]):
        rows = plate_rows[p]
        together = rows[-1] - rows[0] + 1 == len(rows)
        if parts and not (together and rows[0] == stop and stop - start + len(rows) <= block_rows):
            blocks.append((slice(start, stop), parts))
            parts = []
        if not together:
            blocks.append((rows, [(p, slice(None))]))
        elif parts:
            parts.append((p, slice(stop - start, stop - start + len(rows))))
            stop += len(rows)
        else:
            start, stop, parts = rows[0], rows[-1] + 1, [(p, slice(0, len(rows)))]
    if parts:
        blocks.append((slice(start, stop), parts))
    return blocks


def _block(path, values, parts, log):
    out = np.empty(values.shape, dtype=np.float32)
    for name, local, sample_ids in parts:
        out[local] = _plate(path, name, values[local], sample_ids, log)
    return out


def _plate(path, name, values, sample_ids, log):
    bad = ~((values > 0) & (values < np.inf))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(path, f"plate {name!r}: {int(bad.sum())} values are not positive and finite (first "
                               f"{values[i, j]:g} at sample {sample_ids.iloc[i]!r}): Level 2 fluorescence must "
                               f"be positive for log2 (data.level: 2)")
    if len(values) == 1:
        log(f"WARNING: plate {name!r} has one profile ({sample_ids.iloc[0]!r}): nothing to normalise it "
            f"against, so it is only log2-transformed")
    return quantile_normalize(values, np.log2)
