"""Open an expression matrix in any supported format, detected from the content, not the name.

Formats: GCTX (HDF5), GCT 1.2 / 1.3 text, CSV / TSV, parquet, AnnData ``.h5ad``. Every reader
returns a :class:`l1kformer.matrix.Matrix`. GCTX is read lazily in row blocks; the text formats are
small in practice and are read whole.
"""

import bz2
import csv
import gzip
import io
import lzma
import os

import numpy as np
import pandas as pd

from l1kformer.errors import InputError
from l1kformer.gctx import GctxMatrix
from l1kformer.matrix import InMemoryMatrix, normalize_ids

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
PARQUET_SIGNATURE = b"PAR1"
ORIENTATIONS = ("auto", "samples_x_genes", "genes_x_samples")


SUPPORTED = ("GCTX, GCT 1.2 / 1.3, CSV / TSV (also gzip, bz2 or xz compressed), parquet, AnnData h5ad")
COMPRESSION = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz"}
OTHER_FORMATS = {b"PK\x03\x04": "a ZIP archive (unpack it first)", b"RDX": "R data (.rda / .RData)",
                 b"RDA": "R data (.rda / .RData)", b"X\n": "R serialized data (.rds)"}


def compression_of(path):
    """'gzip', 'bz2', 'xz' (from the magic bytes) or None."""
    with open(path, "rb") as f:
        head = f.read(6)
    return next((name for magic, name in COMPRESSION.items() if head.startswith(magic)), None)


def open_bytes(path):
    """A binary stream of ``path``, decompressed when its magic bytes say so."""
    opener = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}.get(compression_of(path), open)
    return opener(path, "rb")


BOM = b"\xef\xbb\xbf"  # what Excel and Windows tools put before a UTF-8 table


def open_text(path):
    """A text stream of ``path`` (UTF-8, a leading byte-order mark dropped, undecodable bytes replaced),
    decompressed when needed; lines keep their ends (CRLF too) for the caller to strip."""
    return io.TextIOWrapper(open_bytes(path), encoding="utf-8-sig", errors="replace", newline="")


def _head(path):
    """The first 4 KiB of the (decompressed) content, and the compression."""
    compression = compression_of(path)
    try:
        with open_bytes(path) as f:
            return f.read(4096), compression
    except (OSError, EOFError, ValueError) as exc:
        raise InputError(path, f"cannot decompress ({compression}): {exc}") from None


def detect_format(path):
    """'gctx', 'h5ad', 'parquet', 'gct' or 'table', from the first bytes of the (decompressed) file."""
    if os.path.isdir(path):
        raise InputError(path, "is a directory, not a matrix file (list the files in data.inputs)")
    head, compression = _head(path)
    head = head.removeprefix(BOM)
    if not head.strip():
        raise InputError(path, "file is empty")
    for magic, name in OTHER_FORMATS.items():
        if head.startswith(magic):
            raise InputError(path, f"is {name}, which is not supported; supported: {SUPPORTED}")
    if compression and (head.startswith(HDF5_SIGNATURE) or head.startswith(PARQUET_SIGNATURE)):
        raise InputError(path, f"is a {compression}-compressed binary file: decompress it first")
    if head.startswith(HDF5_SIGNATURE):
        import h5py
        try:
            with h5py.File(path, "r") as f:
                if "0/DATA/0/matrix" in f:
                    return "gctx"
                if "X" in f and "obs" in f and "var" in f:
                    return "h5ad"
        except OSError as exc:
            raise InputError(path, f"cannot read HDF5 file (truncated or corrupt): {exc}") from None
        raise InputError(path, "HDF5 file is neither GCTX (/0/DATA/0/matrix) nor AnnData (X, obs, var)")
    if head.startswith(PARQUET_SIGNATURE):
        return "parquet"
    if head.lstrip().startswith((b"#1.2", b"#1.3")):
        return "gct"
    if head.lstrip().startswith(b"#1."):
        line = head.lstrip().split(b"\n")[0].decode("utf-8", errors="replace").strip()
        raise InputError(path, f"GCT version line {line!r} is not #1.2 or #1.3")
    if b"\x00" in head:
        raise InputError(path, f"is a binary file of no supported format; supported: {SUPPORTED}")
    return "table"


def to_float(path, cells, what):
    """Strings to float32; a cell that is not a number is an error naming its place."""
    cells = np.asarray(cells, dtype=object)
    try:
        return np.asarray(cells, dtype=np.float64).astype(np.float32)
    except (TypeError, ValueError):
        pass
    for (i, j), cell in np.ndenumerate(cells):
        try:
            float(cell)
        except (TypeError, ValueError):
            raise InputError(path, f"non-numeric cell {cell!r} at {what(i, j)}") from None
    raise InputError(path, "non-numeric cells")  # unreachable: some cell failed above


def read_gct(path):
    """GCT 1.2 or 1.3 text: genes in rows, samples in columns, metadata blocks as the spec says."""
    with open_text(path) as f:
        lines = f.read().splitlines()
    lines = [ln for ln in lines if ln.strip()]
    version = lines[0].strip().split("\t")[0]
    try:
        dims = [int(x) for x in lines[1].split("\t") if x.strip()]
    except ValueError:
        raise InputError(path, f"GCT dimension line is not numbers: {lines[1]!r}") from None
    if version == "#1.2" and len(dims) >= 2:
        n_rows, n_cols, n_rmeta, n_cmeta = dims[0], dims[1], 1, 0
    elif version == "#1.3" and len(dims) == 4:
        n_rows, n_cols, n_rmeta, n_cmeta = dims
    else:
        raise InputError(path, f"GCT {version} dimension line {lines[1]!r} is malformed")
    header = lines[2].split("\t")
    body = [ln.split("\t") for ln in lines[3:]]
    if len(header) != 1 + n_rmeta + n_cols:
        raise InputError(path, f"GCT header declares {n_cols} samples and {n_rmeta} gene fields but "
                               f"the column header has {len(header)} fields")
    if len(body) != n_cmeta + n_rows:
        raise InputError(path, f"GCT header declares {n_rows} genes and {n_cmeta} sample fields but "
                               f"the body has {len(body)} lines")
    for k, fields in enumerate(body):
        if len(fields) != len(header):
            raise InputError(path, f"GCT line {k + 4} has {len(fields)} fields, the header has {len(header)}")
    sample_ids = header[1 + n_rmeta:]
    cmeta = pd.DataFrame({r[0]: r[1 + n_rmeta:] for r in body[:n_cmeta]})
    cmeta = cmeta.apply(_maybe_numeric)
    rows = body[n_cmeta:]
    gene_ids = [r[0] for r in rows]
    gmeta = pd.DataFrame([r[1:1 + n_rmeta] for r in rows], columns=header[1:1 + n_rmeta])
    gmeta = gmeta.apply(_maybe_numeric)
    cells = np.array([r[1 + n_rmeta:] for r in rows], dtype=object)
    values = to_float(path, cells, lambda i, j: f"gene {gene_ids[i]!r}, sample {sample_ids[j]!r}")
    return InMemoryMatrix(path, values.T, sample_ids, gene_ids, cmeta, gmeta)


def _maybe_numeric(column):
    converted = pd.to_numeric(column, errors="coerce")
    missing = column.isin(["", "na", "NA", "NaN", "nan", "-666"])
    return converted if converted.notna().sum() == (~missing).sum() else column


def _read_table_frame(path, fmt):
    if fmt == "parquet":
        frame = pd.read_parquet(path)
        if isinstance(frame.index, pd.RangeIndex) and frame.shape[1] and frame.dtypes.iloc[0] == object:
            frame = frame.set_index(frame.columns[0])
        return frame
    with open_text(path) as f:
        first = f.readline().rstrip("\r\n")
    sep = "\t" if "\t" in first else ","
    header = next(csv.reader([first], delimiter=sep))
    try:
        frame = pd.read_csv(path, sep=sep, index_col=0, dtype=str, keep_default_na=False,
                            compression=compression_of(path), encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(path, f"cannot parse as {'TSV' if sep == chr(9) else 'CSV'}: {exc}") from None
    if len(header) == frame.shape[1] + 1:
        frame.columns = header[1:]  # pandas renames duplicate names (g1 -> g1.1); keep them to report
    return frame


def read_table(path, fmt, orientation, is_gene_axis):
    """CSV / TSV / parquet: ids in the first column and in the header; genes on either axis.

    ``is_gene_axis(ids) -> bool`` tells whether a list of ids are gene ids; with ``orientation``
    'auto' exactly one axis must pass it, else the user must say which.
    """
    frame = _read_table_frame(path, fmt)
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(path, "table has no data rows or no data columns")
    rows, cols = normalize_ids(frame.index), normalize_ids(frame.columns)
    if orientation == "auto":
        genes_in_rows, genes_in_cols = is_gene_axis(rows), is_gene_axis(cols)
        if genes_in_rows == genes_in_cols:
            raise InputError(path, "cannot tell from the ids which axis holds the genes "
                                   "(set data.orientation to samples_x_genes or genes_x_samples)")
        orientation = "genes_x_samples" if genes_in_rows else "samples_x_genes"
    cells = frame.to_numpy(dtype=object)
    values = to_float(path, cells, lambda i, j: f"row {rows[i]!r}, column {cols[j]!r}")
    if orientation == "genes_x_samples":
        return InMemoryMatrix(path, values.T, cols, rows)
    return InMemoryMatrix(path, values, rows, cols)


def read_h5ad(path):
    import anndata

    try:
        adata = anndata.read_h5ad(path)
    except OSError as exc:
        raise InputError(path, f"cannot read h5ad file (truncated or corrupt): {exc}") from None
    values = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    if values.dtype.kind not in "fiu":
        raise InputError(path, f"h5ad X has non-numeric dtype {values.dtype}")
    obs = adata.obs.reset_index(drop=True)
    obs = obs.apply(lambda c: c.astype(object) if isinstance(c.dtype, pd.CategoricalDtype) else c)
    return InMemoryMatrix(path, values, list(adata.obs_names), list(adata.var_names), obs,
                          adata.var.reset_index(drop=True))


def open_matrix(path, orientation="auto", is_gene_axis=None):
    """Open ``path`` in whatever supported format its content shows."""
    if orientation not in ORIENTATIONS:
        raise InputError(path, f"orientation {orientation!r} is not one of {ORIENTATIONS}")
    try:
        fmt = detect_format(path)
    except FileNotFoundError:
        raise InputError(path, "file does not exist") from None
    if fmt == "gctx":
        return GctxMatrix(path)
    if fmt == "h5ad":
        return read_h5ad(path)
    if fmt == "gct":
        return read_gct(path)
    return read_table(path, fmt, orientation, is_gene_axis or (lambda ids: False))
