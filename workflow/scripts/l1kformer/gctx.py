"""A small GCTX (HDF5) reader and writer; cmapPy itself does not run on pandas >= 2.

Layout as the Broad writes it: ``/0/DATA/0/matrix`` is stored samples x genes (float32),
``/0/META/ROW`` holds gene fields (``id`` first), ``/0/META/COL`` sample fields; strings are
fixed-length byte strings, numbers float32.
"""

import os
from concurrent.futures import ThreadPoolExecutor

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
        self._fd = self._reader = self._ahead = self._chunk_index = None  # raw reads, read-ahead
        chunks = self._data.chunks  # storage order: (samples, genes), or (genes, samples) when transposed
        self._raw = chunks is not None and self._data.dtype == np.dtype("<f4") and _unfiltered(self._data)
        if chunks is not None:
            self.row_unit, self._gene_unit = chunks[::-1] if self._transposed else chunks
        else:
            self._gene_unit = len(self.gene_ids)

    def read_rows(self, start, stop, columns=None):
        """Values of samples ``start:stop`` as float32, samples x genes: the file's gene columns ``columns``
        in that order (all, in file order, when None). Only the gene chunks that hold a wanted column are
        read (a 12,328-row release whose landmarks sit together is read a twelfth)."""
        if self._ahead is not None:
            (key, future), self._ahead = self._ahead, None
            block = future.result()  # raises what the read raised
            if key == _key(start, stop, columns):
                return block
        return self._read_rows(start, stop, columns)

    def prefetch(self, start, stop, columns=None):
        """Start reading samples ``start:stop`` in a background thread, so that the disk works while the
        block before is processed; ``read_rows`` of the same rows returns it."""
        if self._reader is None:
            self._reader = ThreadPoolExecutor(1)
        if self._ahead is not None:
            self._ahead[1].result()
        self._ahead = (_key(start, stop, columns), self._reader.submit(self._read_rows, start, stop, columns))

    def _read_rows(self, start, stop, columns):
        try:
            block = self._read_chunks(start, stop, columns) if self._raw else None
            return block if block is not None else self._read_slabs(start, stop, columns)
        except OSError as exc:
            raise InputError(self.path, f"cannot read matrix rows {start}-{stop} "
                                        f"(truncated or corrupt): {exc}") from None

    def _read_slabs(self, start, stop, columns):
        """Through HDF5: the runs of gene chunks that hold ``columns``, then the columns taken."""
        if columns is None:
            return self._read(start, stop, 0, len(self.gene_ids))
        columns = np.asarray(columns)
        spans = _spans(np.unique(columns // self._gene_unit), self._gene_unit, len(self.gene_ids))
        parts = [self._read(start, stop, g0, g1) for g0, g1 in spans]
        block = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        offsets = np.concatenate([np.arange(g0, g1) for g0, g1 in spans])  # read column -> file column
        local = np.searchsorted(offsets, columns)
        if len(local) == block.shape[1] and np.array_equal(local, np.arange(len(local))):
            return block
        return np.take(block, local, axis=1)

    def _read_chunks(self, start, stop, columns):
        """Uncompressed float32 chunks (as cmapM writes them) read straight from the file, one ``pread``
        each, and only the wanted columns copied out: no full-width block is ever built. None when a
        chunk is not stored (HDF5 fill values), so that HDF5 reads it."""
        n, ru = len(self.gene_ids), self.row_unit
        columns = np.arange(n) if columns is None else np.asarray(columns)
        index = self._chunk_places()
        self._open_fd()
        buf = np.empty(self._data.chunks, dtype=np.float32)
        chunk = buf.T if self._transposed else buf  # samples x genes
        out = np.empty((stop - start, len(columns)), dtype=np.float32)
        groups = [(g, np.flatnonzero(columns // self._gene_unit == g // self._gene_unit))
                  for g in np.unique(columns // self._gene_unit * self._gene_unit).tolist()]
        for r in range(start - start % ru, stop, ru):
            a, b = max(start, r), min(stop, r + ru)
            for g, where in groups:
                place = index.get((g, r) if self._transposed else (r, g))
                if place is None or place[1] != buf.nbytes:
                    return None
                if os.preadv(self._fd, [buf], place[0]) != buf.nbytes:
                    raise OSError(f"chunk at byte {place[0]} is cut short")
                out[a - start:b - start, where] = chunk[a - r:b - r, columns[where] - g]
        return out

    def _open_fd(self):
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)

    def _chunk_places(self):
        """{chunk's first element: (byte offset, stored size)}, listed once (H5Dchunk_iter)."""
        if self._chunk_index is None:
            index = {}
            self._data.id.chunk_iter(lambda info: index.__setitem__(info.chunk_offset, (info.byte_offset, info.size)))
            self._chunk_index = index
        return self._chunk_index

    def _read(self, start, stop, g0, g1):
        if self._transposed:
            return np.ascontiguousarray(self._data[g0:g1, start:stop].T, dtype=np.float32)
        return np.ascontiguousarray(self._data[start:stop, g0:g1], dtype=np.float32)

    def close(self):
        if self._reader is not None:
            self._reader.shutdown(wait=True)
        if self._fd is not None:
            os.close(self._fd)
        self._file.close()


def _unfiltered(data):
    """Whether the chunks are stored as they are (no compression, shuffle or checksum)."""
    try:
        return data.id.get_create_plist().get_nfilters() == 0 and hasattr(data.id, "chunk_iter") and \
            hasattr(os, "preadv")  # (not on Windows: HDF5 reads the chunks there)
    except (AttributeError, RuntimeError):
        return False


def _key(start, stop, columns):
    return start, stop, None if columns is None else np.asarray(columns).tobytes()


def _spans(chunk_ids, unit, n):
    """Runs of consecutive gene chunks as column ranges [(g0, g1), ...]."""
    spans = []
    for c in chunk_ids.tolist():
        g0, g1 = c * unit, min((c + 1) * unit, n)
        if spans and spans[-1][1] == g0:
            spans[-1] = (spans[-1][0], g1)
        else:
            spans.append((g0, g1))
    return spans


def _meta_array(values):
    values = pd.Series(values)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=np.float32)
    strings = [("" if pd.isna(v) else str(v)).encode("utf-8") for v in values]
    width = max([1] + [len(s) for s in strings])
    return np.array(strings, dtype=f"S{width}")


def write_gctx(path, values, sample_ids, gene_ids, sample_meta=None, gene_meta=None,
               chunk_rows=1024, block_rows=16384, chunk_genes=None, transposed=False):
    """Write a samples x genes matrix as GCTX, laid out as the Broad writes it.

    ``values`` is an array, or a function ``values(start, stop)`` returning rows ``start:stop``, so
    that files larger than memory can be written in blocks. Chunks are ``chunk_rows`` samples x
    ``chunk_genes`` genes (all genes when None; cmapM writes 262 x 1,000); ``transposed`` stores the
    matrix genes x samples, as some published files are.
    """
    n, g = len(sample_ids), len(gene_ids)
    chunks = (max(1, min(chunk_rows, n)), min(chunk_genes or g, g))
    with h5py.File(path, "w") as f:
        f.attrs["version"] = np.bytes_(b"GCTX1.0")
        data = f.require_group("0/DATA/0").create_dataset(
            "matrix", shape=(g, n) if transposed else (n, g), dtype=np.float32,
            chunks=chunks[::-1] if transposed else chunks)
        for start, stop in row_blocks(n, block_rows):
            block = np.asarray(values(start, stop) if callable(values) else values[start:stop], dtype=np.float32)
            if transposed:
                data[:, start:stop] = block.T
            else:
                data[start:stop] = block
        data.attrs["name"] = np.bytes_(b"unnamed")
        data.attrs["row_major"] = np.int32(0)
        for group, ids, meta in ((ROW, gene_ids, gene_meta), (COL, sample_ids, sample_meta)):
            g = f.require_group(group)
            h5_write(g, "id", _meta_array([str(i) for i in ids]))
            if meta is not None:
                for name in meta.columns:
                    if name != "id":
                        h5_write(g, name, _meta_array(meta[name].to_numpy()))
