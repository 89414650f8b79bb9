"""The one interface every matrix reader gives (GCTX, GCT, CSV / TSV, parquet, h5ad), and id cleaning.

A matrix has ``sample_ids`` and ``gene_ids`` (normalised strings, object arrays), ``sample_meta`` and
``gene_meta`` (DataFrames, one row per sample / gene), ``n_samples`` and ``read_rows(start, stop)``
giving float32 values samples x genes in the file's own gene order, and ``close()``.
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
    return [normalize_id(v) for v in values]


def _table(meta, n):
    if meta is None or (len(meta.columns) == 0 and len(meta) != n):
        return pd.DataFrame(index=range(n))
    return meta.reset_index(drop=True)


class Matrix:
    """Ids are normalised here, once, whatever the format; subclasses implement ``read_rows``."""

    def __init__(self, path, sample_ids, gene_ids, sample_meta=None, gene_meta=None):
        self.path = path
        self.sample_ids = np.array(normalize_ids(sample_ids), dtype=object)
        self.gene_ids = np.array(normalize_ids(gene_ids), dtype=object)
        # a file without metadata (GCT 1.2, GCTX with only ids) gets an empty table of the right length
        self.sample_meta = _table(sample_meta, len(self.sample_ids))
        self.gene_meta = _table(gene_meta, len(self.gene_ids))

    @property
    def n_samples(self):
        return len(self.sample_ids)

    def read_rows(self, start, stop):
        raise NotImplementedError

    def close(self):
        pass


class InMemoryMatrix(Matrix):
    """A matrix read whole (text formats, parquet, h5ad)."""

    def __init__(self, path, values, sample_ids, gene_ids, sample_meta=None, gene_meta=None):
        super().__init__(path, sample_ids, gene_ids, sample_meta, gene_meta)
        self.values = values

    def read_rows(self, start, stop):
        return np.ascontiguousarray(self.values[start:stop], dtype=np.float32)
