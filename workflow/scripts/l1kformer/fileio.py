"""Atomic output files and small deterministic HDF5 helpers.

Every step writes to a temporary name beside the target and renames at the end, so a failed step
leaves no partial output. HDF5 files are written without timestamps so that the same inputs give
byte-identical files.
"""

import contextlib
import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    with atomic_outputs(path) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_outputs(*paths):
    """Like :func:`atomic_path` for several files: all are renamed, or none is kept."""
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(_staged(p)) for p in paths]
        yield tmps
        for tmp, final in zip(tmps, paths):
            os.replace(tmp, final)


@contextlib.contextmanager
def _staged(path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def parquet_chunks(path, min_rows=1 << 18):
    """Yield ``write(frame)``: tables appended to one Parquet file at ``path`` (row groups of at least
    ``min_rows`` rows), so a large table is never held whole."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer, pending = None, []

    def flush():
        nonlocal writer
        table = pa.Table.from_pandas(pd.concat(pending, ignore_index=True), preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
        pending.clear()

    def write(frame):
        pending.append(frame)
        if sum(len(f) for f in pending) >= min_rows:
            flush()

    try:
        yield write
        if pending:
            flush()
        if writer is None:
            pq.write_table(pa.table({}), path)
    finally:
        if writer is not None:
            writer.close()


def h5_create(path):
    """Open a new HDF5 file for writing with settings that keep its bytes reproducible."""
    return h5py.File(path, "w", libver=("earliest", "v110"), track_order=False)


def h5_write(group, name, data, chunk_rows=None):
    """Write an array without creation timestamps; 2-D arrays chunked by rows if asked."""
    data = np.asarray(data)
    chunks = None
    if chunk_rows and data.ndim == 2 and data.shape[0] > 0:
        chunks = (min(chunk_rows, data.shape[0]), data.shape[1])
    return group.create_dataset(name, data=data, chunks=chunks, track_times=False)


def h5_write_strings(group, name, values):
    """Strings as UTF-8 (any id: Latin-1 ids of older CMap files are decoded to text on reading)."""
    data = np.array([str(v) for v in values], dtype=object)
    return group.create_dataset(name, data=data, dtype=h5py.string_dtype("utf-8"), track_times=False)


def row_blocks(n_rows, block_rows):
    """Yield (start, stop) pairs that cover ``range(n_rows)`` in blocks of ``block_rows``."""
    for start in range(0, n_rows, block_rows):
        yield start, min(start + block_rows, n_rows)


def kept_blocks(keep, unit, max_rows):
    """(start, stop) row ranges that cover every kept row (``keep``: bool per row), aligned to ``unit`` rows
    (a file's chunk length, the smallest piece it can read), at most ``max_rows`` long (rounded down to
    whole units, at least one), skipping every unit that holds no kept row."""
    n = len(keep)
    if n == 0:
        return
    starts = range(0, n, unit)
    wanted = np.add.reduceat(keep.astype(np.int64), np.arange(0, n, unit)) > 0
    per_block = max(1, max_rows // unit)
    run = None
    for k, start in enumerate(starts):
        if not wanted[k]:
            if run is not None:
                yield run, start
                run = None
            continue
        if run is None:
            run, units = start, 0
        units += 1
        if units == per_block:
            yield run, min(start + unit, n)
            run = None
    if run is not None:
        yield run, n


def _finite(obj):
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json(path, obj):
    """Atomic JSON with sorted keys; NaN and infinities become null (JSON has no NaN)."""

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite(obj), indent=2, sort_keys=True) + "\n")


def read_json(path):

    with open(path) as f:
        return json.load(f)


def data_units(path):
    """The units of a data file's values (``units`` attribute written by ingest; None for ranks)."""
    with h5py.File(path, "r") as h5:
        units = h5.attrs.get("units")
    return None if units is None else str(units)


def read_bounds(paths):
    """The methods that baseline files list under ``bounds`` (the oracles): no model can beat them in
    expectation, so they are shown beside the baselines but never counted as one."""
    return set().union(*(read_json(path).get("bounds", []) for path in paths))


def read_baselines(paths, part="baselines"):
    """The methods of several baseline files (``results/baselines/*.json``) in one dict, by name: their
    test metrics, or another ``part`` of the files (``by_position``) where they have it."""
    merged = {}
    for path in paths:
        merged.update(read_json(path).get(part, {}))
    return dict(sorted(merged.items()))


def fingerprint(settings, inputs, sources):
    """Identity of a training job: settings, input files (size, mtime) and the code's bytes."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in sorted(map(str, inputs)):
        st = os.stat(path)
        h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
    for path in sorted(map(str, sources)):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()
