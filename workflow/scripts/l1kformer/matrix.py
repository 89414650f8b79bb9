"""The one interface every matrix reader gives (GCTX, GCT, CSV / TSV, parquet, h5ad), and id cleaning.

A matrix has ``sample_ids`` and ``gene_ids`` (normalised strings, object arrays), ``sample_meta`` and
``gene_meta`` (DataFrames, one row per sample / gene), ``n_samples``, ``read_rows(start, stop, columns)``
giving float32 values samples x genes (the file's gene columns ``columns``, in that order; all of them, in
file order, when None), ``row_unit`` (the rows the file stores together: reads aligned to it skip what is
not kept) and ``close()``.
"""

import math

import numpy as np
import pandas as pd


def normalize_id(value):
    """One id as a clean string: bytes decoded, 780.0 -> '780', surrounding blanks removed."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            value = value.decode("latin-1")  # as older CMap files are
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value).strip()


def normalize_ids(values):
    """:func:`normalize_id` of every value, as an object array of str; vectorised for text (Arrow strings,
    byte or unicode arrays) and for numbers, element by element only for mixed objects."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.ArrowDtype) and \
            pa.types.is_string(values.dtype.pyarrow_dtype):
        text = pa.array(values)
    else:
        arr = values if isinstance(values, np.ndarray) else \
            values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values, dtype=object)
        if arr.dtype.kind == "S":
            try:
                text = pa.array(arr).cast(pa.string())
            except pa.ArrowInvalid:  # not UTF-8: Latin-1, as older CMap files are
                return np.array([normalize_id(v) for v in arr.tolist()], dtype=object)
        elif arr.dtype.kind == "U":
            text = pa.array(arr, type=pa.string())
        elif arr.dtype.kind in "iu":
            return arr.astype(str).astype(object)
        elif arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all() and \
                (np.abs(arr) < 2**53).all():
            return arr.astype(np.int64).astype(str).astype(object)
        else:
            return np.array([normalize_id(v) for v in arr.tolist()], dtype=object)
    if text.null_count:
        return np.array([normalize_id(v) for v in text.to_pylist()], dtype=object)
    return np.asarray(pc.utf8_trim_whitespace(text).to_numpy(zero_copy_only=False), dtype=object)


def _table(meta, n):
    if meta is None or (len(meta.columns) == 0 and len(meta) != n):
        return pd.DataFrame(index=range(n))
    return meta.reset_index(drop=True)


class Matrix:
    """Ids are normalised here, once, whatever the format; subclasses implement ``read_rows``."""

    def __init__(self, path, sample_ids, gene_ids, sample_meta=None, gene_meta=None):
        self.path = path
        self.sample_ids = normalize_ids(sample_ids)
        self.gene_ids = normalize_ids(gene_ids)
        # a file without metadata (GCT 1.2, GCTX with only ids) gets an empty table of the right length
        self.sample_meta = _table(sample_meta, len(self.sample_ids))
        self.gene_meta = _table(gene_meta, len(self.gene_ids))

    row_unit = 256

    @property
    def n_samples(self):
        return len(self.sample_ids)

    def read_rows(self, start, stop, columns=None):
        raise NotImplementedError

    def prefetch(self, start, stop, columns=None):
        """Rows ``start:stop`` come next: files on disk start reading them (``read_rows`` returns them)."""

    def close(self):
        pass


class InMemoryMatrix(Matrix):
    """A matrix read whole (text formats, parquet, h5ad)."""

    def __init__(self, path, values, sample_ids, gene_ids, sample_meta=None, gene_meta=None):
        super().__init__(path, sample_ids, gene_ids, sample_meta, gene_meta)
        self.values = values

    def read_rows(self, start, stop, columns=None):
        block = self.values[start:stop]
        block = block if columns is None else np.take(block, columns, axis=1)
        return np.ascontiguousarray(block, dtype=np.float32)
