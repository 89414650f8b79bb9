"""A small GCTX (HDF5) reader and writer; cmapPy itself does not run on pandas >= 2.

Layout as the Broad writes it: ``/0/DATA/0/matrix`` is stored samples x genes (float32),
``/0/META/ROW`` holds gene fields (``id`` first), ``/0/META/COL`` sample fields; strings are
fixed-length byte strings, numbers float32.
"""

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa

from l1kformer.errors import InputError
from l1kformer.fileio import h5_write, row_blocks
from l1kformer.matrix import Matrix

MATRIX = "0/DATA/0/matrix"
ROW = "0/META/ROW"
COL = "0/META/COL"


def decode(values):
    """Byte strings to a compact pandas string Series (UTF-8, else Latin-1 as older CMap files are).

    Other arrays are returned unchanged. Arrow-backed strings keep 1.3 M sample ids and their metadata
    in tens of MB instead of the hundreds that Python str objects would take.
    """
    values = np.asarray(values)
    if values.dtype.kind != "S":
        return values
    raw = pa.array(values)
    try:
        text = raw.cast(pa.string())
    except pa.ArrowInvalid:
        text = pa.array([v.decode("latin-1") for v in values.tolist()], type=pa.string())
    return pd.Series(text, dtype=pd.ArrowDtype(pa.string())).str.strip()


def _read_meta(path, group):
    fields = {}
    for name, ds in group.items():
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
            raise InputError(path, f"GCTX metadata field {group.name}/{name} is not a 1-D array")
        fields[name] = decode(ds[()])
    if "id" not in fields:
        raise InputError(path, f"GCTX has no {group.name}/id")
    ids = fields.pop("id")
    return ids, pd.DataFrame(fields)


class GctxMatrix(Matrix):
    """An open GCTX file: ids and metadata in memory, values read in row (sample) blocks."""

    def __init__(self, path):
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise InputError(path, f"cannot read HDF5 file (truncated or corrupt): {exc}") from None
        f = self._file
        try:
            if MATRIX not in f or ROW not in f or COL not in f:
                raise InputError(path, f"HDF5 file is not GCTX: needs /{MATRIX}, /{ROW} and /{COL}")
            gene_ids, gene_meta = _read_meta(path, f[ROW])
            sample_ids, sample_meta = _read_meta(path, f[COL])
            super().__init__(path, sample_ids, gene_ids, sample_meta, gene_meta)
            self._data = f[MATRIX]
            shape = self._data.shape
            n_s, n_g = len(self.sample_ids), len(self.gene_ids)
            if shape == (n_s, n_g):
                self._transposed = False
            elif shape == (n_g, n_s):
                self._transposed = True
            else:
                raise InputError(path, f"matrix shape {shape} does not match {n_s} sample ids "
                                       f"and {n_g} gene ids")
            if self._data.dtype.kind not in "fiu":
                raise InputError(path, f"matrix has non-numeric dtype {self._data.dtype}")
        except BaseException:
            f.close()
            raise

    def read_rows(self, start, stop):
        """Values of samples ``start:stop`` as float32, samples x genes in file gene order."""
        try:
            if self._transposed:
                block = self._data[:, start:stop].T
            else:
                block = self._data[start:stop]
        except OSError as exc:
            raise InputError(self.path, f"cannot read matrix rows {start}-{stop} "
                                        f"(truncated or corrupt): {exc}") from None
        return np.ascontiguousarray(block, dtype=np.float32)

    def close(self):
        self._file.close()


def _meta_array(values):
    values = pd.Series(values)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=np.float32)
    strings = [("" if pd.isna(v) else str(v)).encode("utf-8") for v in values]
    width = max([1] + [len(s) for s in strings])
    return np.array(strings, dtype=f"S{width}")


def write_gctx(path, values, sample_ids, gene_ids, sample_meta=None, gene_meta=None,
               chunk_rows=1024, block_rows=16384):
    """Write a samples x genes matrix as GCTX, laid out as the Broad writes it.

    ``values`` is an array, or a function ``values(start, stop)`` returning rows ``start:stop``, so
    that files larger than memory can be written in blocks.
    """
    n, g = len(sample_ids), len(gene_ids)
    with h5py.File(path, "w") as f:
        f.attrs["version"] = np.bytes_(b"GCTX1.0")
        data = f.require_group("0/DATA/0").create_dataset(
            "matrix", shape=(n, g), dtype=np.float32, chunks=(max(1, min(chunk_rows, n)), g))
        for start, stop in row_blocks(n, block_rows):
            block = values(start, stop) if callable(values) else values[start:stop]
            data[start:stop] = np.asarray(block, dtype=np.float32)
        data.attrs["name"] = np.bytes_(b"unnamed")
        data.attrs["row_major"] = np.int32(0)
        for group, ids, meta in ((ROW, gene_ids, gene_meta), (COL, sample_ids, sample_meta)):
            g = f.require_group(group)
            h5_write(g, "id", _meta_array([str(i) for i in ids]))
            if meta is not None:
                for name in meta.columns:
                    if name != "id":
                        h5_write(g, name, _meta_array(meta[name].to_numpy()))
