"""mask: the static mask of the val and test sets, drawn once and shared by every model and baseline.

Each profile gets exactly ``ceil(ratio x n_genes)`` masked positions, chosen uniformly without
replacement. Positions index the token sequence (rank positions in rank mode, genes in expression
mode). Val and test draw from independent child streams of one seed, in row blocks, so the result
does not depend on the block size. Output: HDF5 with ``{val,test}/rows`` (int64 rows of the
canonical matrix) and ``{val,test}/positions`` (profiles x k, int16, sorted), plus the settings.
"""

import math

import numpy as np

from l1kformer.fileio import atomic_path, h5_create, h5_write, row_blocks

MASKED_SETS = ("val", "test")


def n_masked(ratio, n_genes):
    return int(math.ceil(ratio * n_genes - 1e-9))


def draw_positions(rng, n_rows, n_genes, k, block_rows=8192):
    """``n_rows`` x ``k`` sorted positions; the k smallest of uniform keys in each row."""
    out = np.empty((n_rows, k), dtype=np.int16)
    for start, stop in row_blocks(n_rows, block_rows):
        keys = rng.random((stop - start, n_genes))
        part = np.argpartition(keys, k - 1, axis=1)[:, :k] if k < n_genes else \
            np.broadcast_to(np.arange(n_genes), keys.shape)
        out[start:stop] = np.sort(part, axis=1)
    return out


def make_mask(split, n_genes, ratio, seed):
    """{set: (rows, positions)} for the val and test sets of ``split``."""
    k = n_masked(ratio, n_genes)
    streams = np.random.SeedSequence(seed).spawn(len(MASKED_SETS))
    out = {}
    for name, stream in zip(MASKED_SETS, streams):
        rows = np.asarray(split[name], dtype=np.int64)
        out[name] = (rows, draw_positions(np.random.default_rng(stream), len(rows), n_genes, k))
    return out


def write_mask(split, n_genes, out_path, ratio, seed, log=print):
    masks = make_mask(split, n_genes, ratio, seed)
    with atomic_path(out_path) as tmp, h5_create(tmp) as h5:
        for name, (rows, positions) in masks.items():
            g = h5.create_group(name)
            h5_write(g, "rows", rows)
            h5_write(g, "positions", positions, chunk_rows=8192)
        h5.attrs["ratio"] = ratio
        h5.attrs["seed"] = seed
        h5.attrs["n_genes"] = n_genes
        h5.attrs["n_masked"] = n_masked(ratio, n_genes)
    for name, (rows, _) in masks.items():
        log(f"{name}: {len(rows)} profiles x {n_masked(ratio, n_genes)} masked of {n_genes} positions")
    return masks


def read_mask(path):
    import h5py

    with h5py.File(path, "r") as h5:
        return {name: (h5[name]["rows"][()], h5[name]["positions"][()]) for name in MASKED_SETS}
