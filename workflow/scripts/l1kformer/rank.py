"""rank: the rank step, ranks.h5 from expression.h5 (optionally normalised by train gene medians),
block by block on threads; the ranking itself is ``gene_order.rank_genes``.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from l1kformer.errors import InputError
from l1kformer.fileio import atomic_path, h5_create, h5_write, row_blocks
from l1kformer.gene_order import rank_genes

NORMALIZATIONS = ("none", "median_ratio", "median_center")
MEDIAN_MAX_ROWS = 250_000


def gene_medians(dataset, train_rows, max_rows=MEDIAN_MAX_ROWS, log=print):
    """Per-gene median over the training profiles (rows of ``dataset``, an HDF5 dataset).

    Above ``max_rows`` training profiles the median is taken over an evenly spaced subset of
    ``max_rows`` of them, which bounds memory; the log says so.
    """
    train_rows = np.sort(np.asarray(train_rows))
    if len(train_rows) == 0:
        raise InputError("split", "no training profiles to compute gene medians from")
    if len(train_rows) > max_rows:
        pick = np.linspace(0, len(train_rows) - 1, max_rows).round().astype(np.int64)
        log(f"gene medians from {max_rows} evenly spaced of {len(train_rows)} training profiles")
        train_rows = train_rows[pick]
    parts = []
    for start, stop in row_blocks(len(train_rows), 16384):
        rows = train_rows[start:stop]
        lo, hi = rows[0], rows[-1] + 1
        parts.append(dataset[lo:hi][rows - lo])
    return np.median(np.concatenate(parts), axis=0).astype(np.float32)


def normalize(values, medians, method):
    if method == "none":
        return values
    if method == "median_ratio":
        return values / medians
    if method == "median_center":
        return values - medians
    raise ValueError(f"unknown normalisation {method!r}")


def rank_file(expression_path, out_path, normalization="none", train_rows=None, block_rows=16384,
              threads=1, log=print):
    """Rank every profile of the canonical expression file; write ``ranks`` (samples x genes, int16)."""
    import h5py

    if normalization not in NORMALIZATIONS:
        raise InputError("rank.normalize", f"{normalization!r} is not one of {NORMALIZATIONS}")
    with h5py.File(expression_path, "r") as src:
        data = src["expression"]
        n, g = data.shape
        medians = None
        if normalization != "none":
            if train_rows is None:
                raise ValueError("normalisation needs the training rows")
            medians = gene_medians(data, train_rows, log=log)
            if normalization == "median_ratio" and np.any(medians <= 0):
                raise InputError(expression_path, "median_ratio normalisation needs positive gene "
                                                  "medians; use median_center for log or z-scored data")
        with atomic_path(out_path) as tmp, h5_create(tmp) as dst:
            ranks = dst.create_dataset("ranks", shape=(n, g), dtype=np.int16,
                                       chunks=(max(1, min(1024, n)), g), track_times=False)
            _rank_blocks(data, ranks, medians, normalization, block_rows, max(1, threads))
            ranks.attrs["normalization"] = normalization
            if medians is not None:
                h5_write(dst, "gene_medians", medians)
    log(f"ranked {n} profiles x {g} genes (normalisation: {normalization})")
    return n


def _rank_blocks(data, ranks, medians, normalization, block_rows, threads):
    """Rank ``data`` into ``ranks`` (HDF5 datasets) block by block, overlapping I/O with sorting: while
    the pool sorts block i into a preallocated buffer (numpy's sort releases the GIL), the main thread
    writes block i - 1 and reads block i + 1."""
    n, g = data.shape
    buffers = [np.empty((min(block_rows, n), g), dtype=np.int16) for _ in range(2)]
    with ThreadPoolExecutor(threads) as pool:
        previous = None  # (start, stop, buffer, futures) of the block being sorted
        for i, (start, stop) in enumerate(row_blocks(n, block_rows)):
            block = normalize(data[start:stop], medians, normalization)
            out = buffers[i % 2][: stop - start]
            bounds = np.linspace(0, stop - start, threads + 1).astype(int)
            futures = [pool.submit(rank_genes, block[a:b], out=out[a:b]) for a, b in zip(bounds, bounds[1:])]
            if previous is not None:
                _finish(ranks, *previous)
            previous = (start, stop, out, futures)
        if previous is not None:
            _finish(ranks, *previous)


def _finish(ranks, start, stop, out, futures):
    for f in futures:
        f.result()
    ranks[start:stop] = out
