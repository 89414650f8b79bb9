"""ingest: raw matrices (one or many files) -> one canonical samples x genes float32 matrix.

Outputs: an HDF5 file with ``expression`` (samples x genes, float32, log2 as given, chunked by rows),
``sample_id`` and ``gene_id``; sample metadata (parquet, one row per sample in matrix order, with the
source file); the gene table (TSV, canonical gene order). Files are streamed in row blocks, so memory
does not grow with the number of profiles.
"""

import numpy as np
import pandas as pd

from l1kformer.errors import InputError
from l1kformer.fileio import atomic_outputs, h5_create, h5_write, row_blocks
from l1kformer.genes import GeneTable, check_gene_ids, column_order
from l1kformer.readers import normalize_id, open_matrix

CHUNK_ROWS = 1024


def _filter_mask(path, meta, filters):
    keep = np.ones(len(meta), dtype=bool)
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


def ingest(paths, out_expression, out_samples, out_genes, n_genes=978, gene_table=None,
           gene_key="pr_gene_id", gene_match=("pr_gene_id", "affx_probe_id"), orientation="auto",
           filters=None, block_rows=16384, log=print):
    """Read, validate, align and concatenate ``paths``; write the three canonical outputs."""
    if not paths:
        raise InputError("data.inputs", "no input files")
    table = GeneTable.from_file(gene_table, gene_key, gene_match) if gene_table else None
    if table is not None and n_genes is not None and len(table.ids) != n_genes:
        raise InputError(gene_table, f"gene table has {len(table.ids)} genes, data.n_genes is {n_genes}")

    def is_gene_axis(ids):
        if table is not None:
            return table.is_gene_axis(ids)
        return n_genes is not None and len(ids) == n_genes

    matrices, orders, keeps = [], [], []
    canonical, gene_meta = None, None
    seen_samples = pd.Index([])
    try:
        for path in paths:
            m = open_matrix(path, orientation, is_gene_axis)
            matrices.append(m)
            if m.n_samples == 0:
                raise InputError(path, "has no samples")
            ids = table.canonical_ids(path, m) if table is not None else m.gene_ids
            check_gene_ids(path, ids, n_genes)
            if canonical is None:
                canonical = table.ids if table is not None else ids
                gene_meta = table.table if table is not None else m.gene_meta
            orders.append(column_order(path, ids, canonical))
            sample_index = pd.Index(m.sample_ids)
            dup = sample_index[sample_index.duplicated()]
            if len(dup):
                raise InputError(path, f"{len(dup)} duplicate sample ids (e.g. {dup[0]!r})")
            keep = _filter_mask(path, m.sample_meta, filters or {})
            keeps.append(keep)
            kept = sample_index[keep]
            clash = kept.intersection(seen_samples)
            if len(clash):
                raise InputError(path, f"{len(clash)} sample ids already in an earlier file "
                                       f"(e.g. {clash[0]!r})")
            seen_samples = seen_samples.append(kept)
            log(f"{path}: {m.n_samples} samples x {len(ids)} genes, {int(keep.sum())} kept by filters")
        total = int(sum(k.sum() for k in keeps))
        if total == 0:
            raise InputError("data.filters", f"{dict(sorted((filters or {}).items()))} selects no sample "
                                             f"in {', '.join(map(str, paths))}")
        with atomic_outputs(out_expression, out_samples, out_genes) as (tmp_x, tmp_s, tmp_g):
            with h5_create(tmp_x) as h5:
                data = h5.create_dataset("expression", shape=(total, len(canonical)), dtype=np.float32,
                                         chunks=(min(CHUNK_ROWS, total), len(canonical)),
                                         track_times=False)
                row = 0
                for m, order, keep in zip(matrices, orders, keeps):
                    for start, stop in row_blocks(m.n_samples, block_rows):
                        block = m.read_rows(start, stop)[:, order][keep[start:stop]]
                        _check_finite(m.path, block, m.sample_ids[start:stop][keep[start:stop]],
                                      canonical)
                        data[row:row + len(block)] = block
                        row += len(block)
                h5_write(h5, "sample_id", np.array(seen_samples.astype(str), dtype=bytes))
                h5_write(h5, "gene_id", np.array([str(g) for g in canonical], dtype=bytes))
            frames = []
            for m, keep in zip(matrices, keeps):
                meta = m.sample_meta.loc[keep].reset_index(drop=True)
                meta.insert(0, "source_file", str(m.path))
                meta.insert(0, "sample_id", pd.Series(m.sample_ids[keep], dtype="string[pyarrow]"))
                frames.append(meta)
            _clean_meta(pd.concat(frames, ignore_index=True)).to_parquet(tmp_s, index=False)
            genes = gene_meta.copy().reset_index(drop=True)
            genes.insert(0, "gene_id", [str(g) for g in canonical])
            genes = genes.loc[:, ~genes.columns.duplicated()]
            genes.to_csv(tmp_g, sep="\t", index=False)
        log(f"wrote {total} samples x {len(canonical)} genes")
    finally:
        for m in matrices:
            m.close()
    return total
