"""ingest: raw matrices (one or many files) -> one canonical samples x genes float32 matrix.

Outputs: an HDF5 file with ``expression`` (samples x genes, float32, log2 as given, chunked by rows),
``sample_id`` and ``gene_id``; sample metadata (parquet, one row per sample in matrix order, with the
source file, the file's own fields and those of the sample tables); the gene table (TSV, canonical gene
order). Published releases (12,328 rows, metadata in separate tables) are read as they are: the gene
table's selected genes are kept, the sample tables joined, and only blocks that hold a kept sample
read, aligned to the file's chunks, so memory does not grow with the file.
"""

import os

import numpy as np
import pandas as pd
import pyarrow as pa

from l1kformer.errors import InputError
from l1kformer.fileio import atomic_outputs, h5_create, h5_write_strings, kept_blocks
from l1kformer.genes import GeneTable, check_gene_ids, column_order
from l1kformer.matrix import normalize_id
from l1kformer.readers import open_matrix
from l1kformer.sample_table import SampleTable, broad_missing

CHUNK_ROWS = 1024
DEFAULT_BLOCK_BYTES = 256 << 20  # one read block of an input file: bounds memory whatever the file's size


def _filter_mask(path, meta, filters, n_samples):
    keep = np.ones(n_samples, dtype=bool)
    for column, allowed in sorted(filters.items()):
        if column not in meta.columns:
            raise InputError(path, f"has no sample field {column!r} to filter on (data.filters), in the file "
                                   f"or a sample table")
        values = meta[column]
        if pd.api.types.is_numeric_dtype(values):
            wanted = [float(a) for a in allowed if _is_number(a)]
            keep &= values.isin(wanted).to_numpy()
        else:
            wanted = {normalize_id(a) for a in allowed}
            keep &= values.astype(str).isin(wanted).to_numpy()
    return keep


def _is_number(value):
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def _clean_meta(meta):
    """One parquet-friendly type per column: numbers stay numbers, everything else is a string."""
    out = {}
    for column in meta.columns:
        values = meta[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            out[column] = values.astype("float64")
        else:
            out[column] = values.astype("string[pyarrow]")
    return pd.DataFrame(out)


def _check_finite(path, block, sample_ids, gene_ids):
    bad = ~np.isfinite(block)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(block[i, j]) else "infinite"
        raise InputError(path, f"{int(bad.sum())} NaN or infinite values in this block; first: {kind} "
                               f"at sample {sample_ids[i]!r}, gene {gene_ids[j]!r}")


class Plan:
    """The checked inputs: open matrices, each one's gene columns in canonical order, kept rows and
    sample fields (its own, with the sample table's joined on)."""

    def __init__(self):
        self.matrices, self.columns, self.keeps, self.metas = [], [], [], []
        self.canonical, self.gene_meta = None, None
        self.samples = pd.Index([])

    @property
    def total(self):
        return int(sum(k.sum() for k in self.keeps))

    def close(self):
        for m in self.matrices:
            m.close()


def ingest(paths, out_expression, out_samples, out_genes, *, gene_table, n_genes, gene_key, gene_match,
           orientation, filters, level, gene_filter=None, sample_table=None, sample_key=None,
           block_bytes=DEFAULT_BLOCK_BYTES, log=print):
    """Read, validate, align and concatenate ``paths``; write the three canonical outputs. The
    settings are those of config.yaml's ``data:`` section (``sample_table``: one path or a list).
    Only the kept genes and samples are read, in blocks aligned to the files' chunks of at most
    ``block_bytes``, so memory does not grow with the files."""
    if not paths:
        raise InputError("data.inputs", "no input files")
    if gene_filter and not gene_table:
        raise InputError("data.gene_filter", "selects rows of a gene table: set data.gene_table")
    table = GeneTable.from_file(gene_table, gene_key, gene_match, gene_filter) if gene_table else None
    if table is not None:
        log(f"{gene_table}: {len(table.ids)} of its {table.size} genes selected"
            + (f" by data.gene_filter {dict(sorted(gene_filter.items()))}" if gene_filter else ""))
        if n_genes is not None and len(table.ids) != n_genes:
            raise InputError(gene_table, f"gene table selects {len(table.ids)} genes, data.n_genes is {n_genes}")
    samples = None
    if sample_table:
        samples = SampleTable([sample_table] if isinstance(sample_table, (str, os.PathLike)) else sample_table,
                              sample_key)
    plan = Plan()
    try:
        for path in paths:
            _open(plan, path, table, n_genes, orientation)
        if samples is not None:
            samples.restrict(np.concatenate([m.sample_ids for m in plan.matrices]))
            log(f"{samples.source}: joined on {samples.key!r}, {len(samples.frame.columns)} fields")
        for m in plan.matrices:
            _check_samples(plan, m, samples, filters, log)
        samples = None  # the tables' rows now sit in plan.metas
        pa.default_memory_pool().release_unused()  # Arrow keeps freed memory: give it back before the matrix
        if plan.total == 0:
            raise InputError("data.filters", f"{dict(sorted(filters.items()))} selects no sample "
                                             f"in {', '.join(map(str, paths))}")
        _write(plan, out_expression, out_samples, out_genes, block_bytes, level, log)
        log(f"wrote {plan.total} samples x {len(plan.canonical)} genes")
    finally:
        plan.close()
    return plan.total


def _open(plan, path, table, n_genes, orientation):
    """Open one file, find its genes' columns in canonical order, and add it to ``plan``."""
    def is_gene_axis(ids):
        if table is not None:
            return table.is_gene_axis(ids)
        return n_genes is not None and len(ids) == n_genes

    m = open_matrix(path, orientation, is_gene_axis)
    plan.matrices.append(m)
    if m.n_samples == 0:
        raise InputError(path, "has no samples")
    if table is not None:
        if plan.canonical is None:
            plan.canonical, plan.gene_meta = table.ids, table.table
        plan.columns.append(table.file_columns(path, m))
    else:
        check_gene_ids(path, m.gene_ids, n_genes)
        if plan.canonical is None:
            plan.canonical, plan.gene_meta = m.gene_ids, m.gene_meta
        plan.columns.append(column_order(path, m.gene_ids, plan.canonical, "the first file"))


def _check_samples(plan, m, samples, filters, log):
    """One file's sample ids, its fields joined with the sample table, and the rows the filters keep."""
    sample_index = pd.Index(m.sample_ids)
    dup = sample_index[sample_index.duplicated()]
    if len(dup):
        raise InputError(m.path, f"{len(dup)} duplicate sample ids (e.g. {dup[0]!r})")
    meta = broad_missing(m.sample_meta)
    if samples is not None:
        meta = samples.join(m.path, m.sample_ids, meta)
    keep = _filter_mask(m.path, meta, filters, m.n_samples)
    kept = sample_index[keep]
    clash = kept.intersection(plan.samples)
    if len(clash):
        raise InputError(m.path, f"{len(clash)} sample ids already in an earlier file (e.g. {clash[0]!r})")
    plan.samples = plan.samples.append(kept)
    plan.keeps.append(keep)
    plan.metas.append(meta.loc[keep].reset_index(drop=True))
    log(f"{m.path}: {m.n_samples} samples x {len(m.gene_ids)} genes; kept {len(plan.canonical)} of its "
        f"{len(m.gene_ids):,} gene rows and {int(keep.sum())} of its samples (data.filters)")


OUT_OF_RANGE = 10.0  # values beyond this many 1st-99th percentile spreads from that range are refused


def _check_range(path, block, sample_ids, gene_ids, limits):
    lo, hi = limits
    bad = (block < lo) | (block > hi)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(path, f"{int(bad.sum())} values far outside the data's own range (beyond "
                               f"{lo:.4g} to {hi:.4g}, {OUT_OF_RANGE:g} x the 1st-99th percentile spread from it); "
                               f"first {block[i, j]:g} at sample {sample_ids[i]!r}, gene {gene_ids[j]!r}")


def _limits(q01, q99):
    """The accepted value range of a file, from its first block's 1st and 99th percentiles."""
    spread = max(q99 - q01, 1e-6)
    return q01 - OUT_OF_RANGE * spread, q99 + OUT_OF_RANGE * spread


def check_level(level, q, where, log):
    """Warn when the values do not look like the declared (or, for ``auto``, the usual) log2 Level 3:
    ``q``: the 0th, 50th and 100th percentiles of the first block."""
    low, median, high = q
    if high > 20 and low >= 0 and level in ("auto", 3):
        log(f"WARNING: {where}: values up to {high:.4g} are not log2 (Level 2 fluorescence? set data.level: 2 to "
            f"log2 and quantile-normalise them per plate); the models and baselines then report errors in "
            f"these units, not comparable with Level 3")
    if low < 0 and abs(median) < 1 and level in ("auto", 3):
        log(f"WARNING: {where}: median {median:.3g} with negative values looks like z-scores (Level 4); "
            f"set data.level: 4 if that is meant (errors are then in z units)")
    if level == 4 and low >= 0:
        log(f"WARNING: {where}: data.level is 4 (z-scores) but no value is negative")
    return units_of(level, low, median, high)


def units_of(level, low, median, high):
    """The units errors are reported in: ``log2`` (Level 3), ``z`` (Level 4) or ``raw`` (not log2),
    as declared by ``data.level`` or, for ``auto``, as the values look."""
    if level in (2, 3, 4):
        return {2: "raw", 3: "log2", 4: "z"}[level]  # Level 2: raw until the normalize step
    if high > 20 and low >= 0:
        return "raw"
    return "z" if low < 0 and abs(median) < 1 else "log2"


def _write(plan, out_expression, out_samples, out_genes, block_bytes, level, log):
    """The matrix (streamed in row blocks, genes in canonical order), sample table and gene table."""
    total, canonical = plan.total, plan.canonical
    with atomic_outputs(out_expression, out_samples, out_genes) as (tmp_x, tmp_s, tmp_g):
        with h5_create(tmp_x) as h5:
            data = h5.create_dataset("expression", shape=(total, len(canonical)), dtype=np.float32,
                                     chunks=(min(CHUNK_ROWS, total), len(canonical)), track_times=False)
            row, units = 0, None
            for m, columns, keep in zip(plan.matrices, plan.columns, plan.keeps):
                limits = None
                everything = np.array_equal(columns, np.arange(len(m.gene_ids)))
                max_rows = max(1, block_bytes // (4 * len(m.gene_ids)))
                wanted = None if everything else columns
                blocks = list(kept_blocks(keep, m.row_unit, max_rows))
                for k, (start, stop) in enumerate(blocks):
                    block = m.read_rows(start, stop, wanted)
                    if k + 1 < len(blocks):  # read the next block while this one is checked and written
                        m.prefetch(*blocks[k + 1], wanted)
                    block = block if keep[start:stop].all() else block[keep[start:stop]]
                    ids = m.sample_ids[start:stop][keep[start:stop]]
                    low, high = block.min(), block.max()  # NaN if any is NaN: one pass, no temporaries
                    if not (np.isfinite(low) and np.isfinite(high)):
                        _check_finite(m.path, block, ids, canonical)
                    if limits is None:
                        q = np.percentile(block, [0, 1, 50, 99, 100])
                        limits = _limits(q[1], q[3])
                        file_units = check_level(level, q[[0, 2, 4]], m.path, log)  # warns per file
                        units = units or file_units
                    if low < limits[0] or high > limits[1]:
                        _check_range(m.path, block, ids, canonical, limits)
                    data[row:row + len(block)] = block
                    row += len(block)
            h5_write_strings(h5, "sample_id", plan.samples)
            h5_write_strings(h5, "gene_id", canonical)
            h5.attrs["units"] = units or "log2"  # what errors on these values are measured in (plots, logs)
        frames = []
        for m, keep, meta in zip(plan.matrices, plan.keeps, plan.metas):
            meta = meta.copy()
            meta.insert(0, "source_file", str(m.path))
            meta.insert(0, "sample_id", pd.Series(m.sample_ids[keep], dtype="string[pyarrow]"))
            frames.append(meta)
        _clean_meta(pd.concat(frames, ignore_index=True)).to_parquet(tmp_s, index=False)
        genes = plan.gene_meta.copy().reset_index(drop=True)
        ids = [str(g) for g in canonical]
        if "gene_id" in genes.columns:  # the key itself (LINCS 2020's geneinfo_beta), or kept under a new name
            same = genes["gene_id"].astype(str).tolist() == ids
            genes = genes.drop(columns="gene_id") if same else genes.rename(columns={"gene_id": "table_gene_id"})
        genes.insert(0, "gene_id", ids)
        genes = genes.loc[:, ~genes.columns.duplicated()]
        genes.to_csv(tmp_g, sep="\t", index=False)
