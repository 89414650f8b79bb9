"""Sample tables: the instance or signature metadata that L1000 releases ship beside their matrices.

GEO's ``*_inst_info.txt`` and ``*_sig_info.txt``, LINCS 2020's ``instinfo_beta.txt`` and
``siginfo_beta.txt``: tab-separated text, one row per profile of a whole release, ``-666`` for a
missing value (as in the files' own metadata). A table is joined to the matrices' sample ids on one
key column (``inst_id``, ``sample_id`` or ``sig_id``), named in ``data.sample_key`` or found as the one
column that holds every id. The tables are read in batches, and only the rows the matrices use are kept.
"""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from l1kformer.errors import InputError
from l1kformer.matrix import normalize_ids
from l1kformer.readers import open_bytes, open_text

MISSING = ["-666", "-666.0", "-666.000000", ""]  # how the Broad writes a missing value


def broad_missing(meta):
    """A sample table with the Broad's ``-666`` (text or number) as missing."""
    out = {}
    for column in meta.columns:
        values = meta[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            out[column] = values.mask(values == -666)
        else:
            out[column] = values.mask(values.astype(str).str.strip().isin(MISSING))
    return pd.DataFrame(out, index=meta.index)


def _batches(path):
    """The table's rows in batches of Arrow strings (blanks trimmed, the Broad's missing values null),
    so that a release-wide table (3 M rows in LINCS 2020) is never held whole."""
    with open_text(path) as f:
        first = f.readline()
    delimiter = "\t" if "\t" in first else ","
    names = [n.strip() for n in first.rstrip("\r\n").split(delimiter)]
    if len(set(names)) != len(names):
        raise InputError(path, "sample table has duplicate column names")
    options = pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, null_values=MISSING,
                                   strings_can_be_null=True)
    try:
        with open_bytes(path) as f:
            read = pacsv.ReadOptions(block_size=8 << 20, use_threads=False, column_names=names, skip_rows=1)
            reader = pacsv.open_csv(f, read_options=read, parse_options=pacsv.ParseOptions(delimiter=delimiter),
                                    convert_options=options)
            for batch in reader:
                yield pa.RecordBatch.from_arrays([pc.utf8_trim_whitespace(c) for c in batch.columns], names=names)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(path, f"cannot read sample table: {exc}") from None


def _numeric_or_text(values):
    """Numbers stay numbers (float64) when every present value is one; else Arrow-backed text."""
    if not values.notna().any():
        return values
    try:
        numbers = pc.cast(pa.array(values), pa.float64())  # fails at the first value that is not a number
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
        return values
    return pd.Series(numbers.to_numpy(zero_copy_only=False), index=values.index)


def _as_float(values):
    """Values as float64 numbers, NaN where missing or not a number."""
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


class SampleTable:
    """One or several sample tables (rows concatenated), keyed and cut to the matrices' sample ids."""

    def __init__(self, paths, key):
        self.paths = [str(p) for p in paths]
        self.source = ", ".join(self.paths)
        self.key = key
        self.frame = None

    def restrict(self, ids):
        """Read the tables, keeping the rows whose key (named, or found: the one column that holds every
        one of the matrices' sample ``ids``) is one of the ids; refuse duplicate keys among them."""
        ids = pa.array(pd.unique(np.asarray(ids, dtype=object)), type=pa.string())  # (Arrow's unique keeps more memory)
        seen, kept = {}, []  # column -> which ids it holds; the rows that may be the matrices'
        for path in self.paths:
            for batch in _batches(path):
                names = [self.key] if self.key is not None else batch.schema.names
                if self.key is not None and self.key not in batch.schema.names:
                    raise InputError(path, f"sample table has no column {self.key!r} (data.sample_key); "
                                           f"its columns: {', '.join(map(repr, batch.schema.names))}")
                hit = None
                for name in names:
                    where = pc.index_in(batch.column(name), value_set=ids)
                    found = seen.setdefault(name, np.zeros(len(ids), dtype=bool))
                    found[where.drop_null().to_numpy()] = True
                    hit = where.is_valid() if hit is None else pc.or_(hit, where.is_valid())
                kept.append(batch.filter(hit))
        if not kept:
            raise InputError(self.source, "sample table has no rows")
        self.key = self.key or self._find_key(seen, len(ids))
        used = pa.Table.from_batches(kept) if len({b.schema for b in kept}) == 1 else \
            pa.concat_tables([pa.Table.from_batches([b]) for b in kept], promote_options="default")
        where = pc.index_in(used[self.key], value_set=ids)  # one hash of the ids serves both checks below
        used = used.filter(where.is_valid())
        counts = np.bincount(where.drop_null().to_numpy(), minlength=len(ids))
        if (counts > 1).any():
            raise InputError(self.source, f"sample table has duplicate keys: {self.key!r} repeats for "
                                          f"{int((counts > 1).sum())} of the matrices' sample ids "
                                          f"(e.g. {ids[int(np.argmax(counts > 1))].as_py()!r})")
        self._keys = used[self.key].combine_chunks()
        frame = used.drop_columns([self.key]).to_pandas(types_mapper=pd.ArrowDtype)
        self.frame = pd.DataFrame({c: _numeric_or_text(frame[c]) for c in frame.columns})

    def _find_key(self, seen, n):
        full = sorted(name for name, found in seen.items() if found.all())
        if len(full) > 1:
            raise InputError(self.source, f"columns {' and '.join(map(repr, full))} of the sample table both "
                                          f"hold every matrix sample id: name the key in data.sample_key")
        if not full:
            best = max(seen, key=lambda name: seen[name].sum())
            raise InputError(self.source, f"no column of the sample table holds every matrix sample id "
                                          f"(data.sample_key: null); closest: {best!r} with {seen[best].sum()} of {n}")
        return full[0]

    def join(self, path, sample_ids, meta):
        """The file's own sample fields (``meta``, one row per sample) with the table's joined on."""
        rows = pc.index_in(pa.array(np.asarray(sample_ids, dtype=object), type=pa.string()), value_set=self._keys)
        rows = pc.fill_null(rows, -1).to_numpy()
        missing = np.flatnonzero(rows < 0)
        if len(missing):
            shown = ", ".join(repr(str(sample_ids[i])) for i in missing[:3])
            raise InputError(path, f"{len(missing)} of its {len(sample_ids)} sample ids are not in the sample "
                                   f"table {self.source} (key {self.key!r}; e.g. {shown})")
        fields = self.frame.iloc[rows].reset_index(drop=True)
        meta = meta.reset_index(drop=True).copy()
        for column in fields.columns:
            if column in meta.columns:
                _check_same(path, column, sample_ids, meta[column], fields[column], self.source)
                meta[column] = meta[column].where(meta[column].notna(), fields[column])
            else:
                meta[column] = fields[column]
        return meta


def _check_same(path, column, sample_ids, own, joined, source):
    """A field in both the file and the table must agree wherever both have a value."""
    both = own.notna().to_numpy() & joined.notna().to_numpy()
    a, b = _as_float(own), _as_float(joined)
    numeric = np.isfinite(a) & np.isfinite(b)
    same = np.where(numeric, np.isclose(a, b, rtol=1e-5, atol=0),
                    normalize_ids(own.astype(object).to_numpy()) == normalize_ids(joined.astype(object).to_numpy()))
    bad = np.flatnonzero(both & ~same)
    if len(bad):
        i = bad[0]
        raise InputError(path, f"sample field {column!r} differs from the sample table {source} for {len(bad)} "
                               f"samples (e.g. {str(sample_ids[i])!r}: {own.iloc[i]!r} in the file, "
                               f"{joined.iloc[i]!r} in the table)")
