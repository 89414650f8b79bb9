"""normalize: Level 2 fluorescence -> log2, quantile-normalised within each plate (data.level: 2).

What the Broad does to make Level 3 from Level 2, per plate, less what the published Level 2 files
cannot support: log2; LISS (invariant-set scaling against 80 control transcripts, which are not among
the 978 rows of the published Level 2 matrices, so it cannot be done here); then quantile
normalisation: the k-th smallest value of every profile becomes the median over the plate's profiles
of their k-th smallest values, and values tied within a profile all get the median of those
reference values over the ranks they share (the rule that reproduces the Broad's QNORM of LJP009;
tests/test_normalize.py). Plates are read and written one at a time, so memory is one plate.
"""

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pandas as pd

from l1kformer.errors import InputError
from l1kformer.fileio import atomic_path, h5_create, h5_write_strings
from l1kformer.gene_order import rank_genes

UNITS = "log2 (quantile normalised per plate)"
PLATE_FIELDS = ("det_plate", "rna_plate")  # tried in turn when data.plate_field is null


def quantile_normalize(values, transform=None):
    """Quantile normalisation of one plate (profiles x genes) with the Broad's tie rule, float32 out.

    The order and the ties are those of ``values`` as stored (float32); the reference is on
    ``transform(values)`` (``np.log2`` for Level 2 fluorescence; None: the values themselves), which must
    keep the order, so it is applied to the two middle values of each rank alone (float64). Untied
    positions take the reference as it is; only the runs of tied positions are worked out.
    """
    values = np.asarray(values, dtype=np.float32)
    m, n = values.shape
    descending = np.empty((m, n), dtype=np.float32)
    order = rank_genes(values, sorted_out=descending)[:, ::-1]  # ascending; within a tie any order will do
    ordered = descending[:, ::-1]  # the values in that order (ties share a value)
    middle = [(m - 1) // 2, m // 2]
    mid = np.sort(ordered.T, axis=1)[:, middle].astype(np.float64)  # (a float32 sort beats a partition)
    reference = (mid if transform is None else transform(mid)).mean(axis=1)
    # ^ the median of the k-th smallest values: non-decreasing in k
    result = np.tile(reference.astype(np.float32), (m, 1))
    tied = ordered[:, 1:] == ordered[:, :-1]  # position k + 1 holds the value of position k
    at = np.flatnonzero(tied)
    if len(at):
        at += at // (n - 1) + 1  # -> flat positions of the m x n result
        starts = np.flatnonzero(np.diff(at, prepend=-2) != 1)  # each run of tied positions
        first = at[starts] - 1  # the run's first member (not itself marked tied)
        last = at[np.append(starts[1:], len(at)) - 1]
        lo, hi = first % n, last % n
        value = (reference[(lo + hi) // 2] + reference[(lo + hi + 1) // 2]) / 2  # the median over the run
        flat = result.reshape(-1)
        flat[first] = value
        flat[at] = np.repeat(value, last - first)  # a run's tied positions follow one another in ``at``
    out = np.empty((m, n), dtype=np.float32)
    np.put_along_axis(out, order, result, axis=1)
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


def normalize_file(in_path, samples_path, out_path, plate_field=None, threads=1, log=print):
    """Write ``out_path`` like ``in_path`` (ingest's layout) with every plate log2 and quantile-normalised;
    plates are read and written in turn and normalised on ``threads`` threads (numpy frees the GIL)."""
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
            for p, name in enumerate(names):
                rows = rows_of[bounds[p]:bounds[p + 1]]
                at = slice(rows[0], rows[-1] + 1) if rows[-1] - rows[0] + 1 == len(rows) else rows  # plates sit together
                pending.append((at, pool.submit(_plate, in_path, name, x[at], ids.iloc[rows], log)))
                while len(pending) > 2 * threads or (pending and p == len(names) - 1):
                    done, job = pending.popleft()
                    data[done] = job.result()
            h5_write_strings(h5, "sample_id", src["sample_id"].asstr()[()])
            h5_write_strings(h5, "gene_id", src["gene_id"].asstr()[()])
            h5.attrs["units"] = UNITS
    log(f"{len(names)} plates (from {where}) log2 and quantile-normalised: {len(plates)} profiles")


def _plate(path, name, values, sample_ids, log):
    bad = ~(values > 0)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(path, f"plate {name!r}: {int(bad.sum())} values are not positive (first {values[i, j]:g} "
                               f"at sample {sample_ids.iloc[i]!r}): Level 2 fluorescence must be positive for "
                               f"log2 (data.level: 2)")
    if len(values) == 1:
        log(f"WARNING: plate {name!r} has one profile ({sample_ids.iloc[0]!r}): nothing to normalise it "
            f"against, so it is only log2-transformed")
    return quantile_normalize(values, np.log2)
