"""ingest: raw matrices (one or many files) -> one canonical samples x genes float32 matrix.

Outputs: an HDF5 file with ``expression`` (samples x genes, float32, log2 as given, chunked by rows),
``sample_id`` and ``gene_id``; sample metadata (parquet, one row per sample in matrix order, with the
source file); the gene table (TSV, canonical gene order). Files are streamed in row blocks, so memory
does not grow with the number of profiles.
"""

import numpy as np
import pandas as pd

from l1kformer.errors import InputError
from l1kformer.fileio import atomic_outputs, h5_create, h5_write_strings, row_blocks
from l1kformer.genes import GeneTable, check_gene_ids, column_order
from l1kformer.matrix import normalize_id
from l1kformer.readers import open_matrix

CHUNK_ROWS = 1024


def _filter_mask(path, meta, filters, n_samples):
    keep = np.ones(n_samples, dtype=bool)
    for column, allowed in sorted(filters.items()):
        if column not in meta.columns:
            raise InputError(path, f"has no sample field {column!r} to filter on (data.filters)")
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
    """The checked inputs: open matrices, each one's gene order into the canonical genes and kept rows."""

    def __init__(self):
        self.matrices, self.orders, self.keeps = [], [], []
        self.canonical, self.gene_meta = None, None
        self.samples = pd.Index([])

    @property
    def total(self):
        return int(sum(k.sum() for k in self.keeps))

    def close(self):
        for m in self.matrices:
            m.close()


def ingest(paths, out_expression, out_samples, out_genes, *, gene_table, n_genes, gene_key, gene_match,
           orientation, filters, level, block_rows=16384, log=print):
    """Read, validate, align and concatenate ``paths``; write the three canonical outputs. The
    settings are those of config.yaml's ``data:`` section."""
    if not paths:
        raise InputError("data.inputs", "no input files")
    table = GeneTable.from_file(gene_table, gene_key, gene_match) if gene_table else None
    if table is not None and n_genes is not None and len(table.ids) != n_genes:
        raise InputError(gene_table, f"gene table has {len(table.ids)} genes, data.n_genes is {n_genes}")
    plan = Plan()
    try:
        for path in paths:
            _open_and_check(plan, path, table, n_genes, orientation, filters, log)
        if plan.total == 0:
            raise InputError("data.filters", f"{dict(sorted(filters.items()))} selects no sample "
                                             f"in {', '.join(map(str, paths))}")
        _write(plan, out_expression, out_samples, out_genes, block_rows, level, log)
        log(f"wrote {plan.total} samples x {len(plan.canonical)} genes")
    finally:
        plan.close()
    return plan.total


def _open_and_check(plan, path, table, n_genes, orientation, filters, log):
    """Open one file, check its genes and samples against the earlier ones, and add it to ``plan``."""
    def is_gene_axis(ids):
        if table is not None:
            return table.is_gene_axis(ids)
        return n_genes is not None and len(ids) == n_genes

    m = open_matrix(path, orientation, is_gene_axis)
    plan.matrices.append(m)
    if m.n_samples == 0:
        raise InputError(path, "has no samples")
    ids = table.canonical_ids(path, m) if table is not None else m.gene_ids
    check_gene_ids(path, ids, n_genes)
    if plan.canonical is None:
        plan.canonical = table.ids if table is not None else ids
        plan.gene_meta = table.table if table is not None else m.gene_meta
    reference = f"the gene table {table.source}" if table is not None else "the first file"
    plan.orders.append(column_order(path, ids, plan.canonical, reference))
    sample_index = pd.Index(m.sample_ids)
    dup = sample_index[sample_index.duplicated()]
    if len(dup):
        raise InputError(path, f"{len(dup)} duplicate sample ids (e.g. {dup[0]!r})")
    keep = _filter_mask(path, m.sample_meta, filters, m.n_samples)
    plan.keeps.append(keep)
    kept = sample_index[keep]
    clash = kept.intersection(plan.samples)
    if len(clash):
        raise InputError(path, f"{len(clash)} sample ids already in an earlier file (e.g. {clash[0]!r})")
    plan.samples = plan.samples.append(kept)
    log(f"{path}: {m.n_samples} samples x {len(ids)} genes, {int(keep.sum())} kept by filters")


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
        log(f"WARNING: {where}: values up to {high:.4g} are not log2 (Level 2 fluorescence?); the models "
            f"and baselines then report errors in these units, not comparable with Level 3")
    if low < 0 and abs(median) < 1 and level in ("auto", 3):
        log(f"WARNING: {where}: median {median:.3g} with negative values looks like z-scores (Level 4); "
            f"set data.level: 4 if that is meant (errors are then in z units)")
    if level == 4 and low >= 0:
        log(f"WARNING: {where}: data.level is 4 (z-scores) but no value is negative")
    return units_of(level, low, median, high)


def units_of(level, low, median, high):
    """The units errors are reported in: ``log2`` (Level 3), ``z`` (Level 4) or ``raw`` (not log2),
    as declared by ``data.level`` or, for ``auto``, as the values look."""
    if level in (3, 4):
        return {3: "log2", 4: "z"}[level]
    if high > 20 and low >= 0:
        return "raw"
    return "z" if low < 0 and abs(median) < 1 else "log2"


def _write(plan, out_expression, out_samples, out_genes, block_rows, level, log):
    """The matrix (streamed in row blocks, genes in canonical order), sample table and gene table."""
    total, canonical = plan.total, plan.canonical
    with atomic_outputs(out_expression, out_samples, out_genes) as (tmp_x, tmp_s, tmp_g):
        with h5_create(tmp_x) as h5:
            data = h5.create_dataset("expression", shape=(total, len(canonical)), dtype=np.float32,
                                     chunks=(min(CHUNK_ROWS, total), len(canonical)), track_times=False)
            row, units = 0, None
            for m, order, keep in zip(plan.matrices, plan.orders, plan.keeps):
                limits, identity, everything = None, np.array_equal(order, np.arange(len(order))), keep.all()
                for start, stop in row_blocks(m.n_samples, block_rows):
                    block = m.read_rows(start, stop)  # reordered and filtered only where needed
                    block = block if identity else np.take(block, order, axis=1)
                    block = block if everything else block[keep[start:stop]]
                    ids = m.sample_ids[start:stop][keep[start:stop]]
                    if not block.size:
                        continue
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
        for m, keep in zip(plan.matrices, plan.keeps):
            meta = m.sample_meta.loc[keep].reset_index(drop=True)
            meta.insert(0, "source_file", str(m.path))
            meta.insert(0, "sample_id", pd.Series(m.sample_ids[keep], dtype="string[pyarrow]"))
            frames.append(meta)
        _clean_meta(pd.concat(frames, ignore_index=True)).to_parquet(tmp_s, index=False)
        genes = plan.gene_meta.copy().reset_index(drop=True)
        genes.insert(0, "gene_id", [str(g) for g in canonical])
        genes = genes.loc[:, ~genes.columns.duplicated()]
        genes.to_csv(tmp_g, sep="\t", index=False)
