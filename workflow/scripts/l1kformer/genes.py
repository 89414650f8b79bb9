"""Align genes across files by id, optionally through a reference gene table.

With a reference table (e.g. the 978 landmark genes with ``pr_gene_id`` and ``affx_probe_id``
columns), a file's genes may be named by any of the table's ``match`` columns, in its row ids or in
its gene metadata; they are renamed to the table's ``key`` column and put in the table's order.
Without a table, the first file's gene order is the canonical one and every other file must hold the
same ids.
"""

import numpy as np
import pandas as pd

from l1kformer.errors import InputError
from l1kformer.matrix import normalize_ids


class GeneTable:
    """The canonical genes: ids in order, and how other id systems map onto them."""

    def __init__(self, table, key, match, source):
        if key not in table.columns:
            raise InputError(source, f"gene table has no key column {key!r}")
        self.source = source
        self.key = key
        self.table = table.reset_index(drop=True)
        self.ids = np.array(normalize_ids(self.table[key]), dtype=object)
        if len(set(self.ids)) != len(self.ids):
            raise InputError(source, f"gene table has duplicate {key} values")
        self.maps = {}
        for column in [key] + [m for m in match if m != key]:
            if column not in self.table.columns:
                raise InputError(source, f"gene table has no column {column!r} named in data.gene_match")
            self.maps[column] = dict(zip(normalize_ids(self.table[column]), self.ids))

    @classmethod
    def from_file(cls, path, key, match):
        try:
            table = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise InputError(path, f"cannot read gene table: {exc}") from None
        return cls(table, key, match, path)

    def is_gene_axis(self, ids):
        return any(all(i in m for i in ids) for m in self.maps.values())

    def canonical_ids(self, path, matrix):
        """The file's genes as the table's key ids (file order); error if some are unknown."""
        candidates = [("row ids", list(matrix.gene_ids))]
        for column in self.maps:
            if column in matrix.gene_meta.columns:
                candidates.append((f"gene field {column!r}", normalize_ids(matrix.gene_meta[column])))
        best_unknown = None
        for _, ids in candidates:
            for mapping in self.maps.values():
                unknown = [i for i in ids if i not in mapping]
                if not unknown:
                    return np.array([mapping[i] for i in ids], dtype=object)
                if best_unknown is None or len(unknown) < len(best_unknown):
                    best_unknown = unknown
        shown = ", ".join(best_unknown[:5]) + (" ..." if len(best_unknown) > 5 else "")
        hint = ""
        symbols = [c for c in self.table.columns if "symbol" in c.lower() and c not in self.maps]
        if symbols and any(not str(i).isdigit() for i in best_unknown[:20]):
            hint = f"; they look like gene symbols: add {symbols[0]} to data.gene_match"
        raise InputError(path, f"{len(best_unknown)} gene ids unknown to the reference table "
                               f"{self.source} (e.g. {shown}){hint}")


def check_gene_ids(path, ids, n_genes):
    """Gene count and uniqueness of one file's (canonical) gene ids."""
    if n_genes is not None and len(ids) != n_genes:
        hint = "; L1000 landmark matrices need data.n_genes: 978" if len(ids) == 978 else ""
        raise InputError(path, f"has {len(ids)} genes, expected {n_genes} (data.n_genes){hint}")
    seen, dups = set(), []
    for i in ids:
        if i in seen:
            dups.append(i)
        seen.add(i)
    if dups:
        raise InputError(path, f"duplicate gene ids: {', '.join(sorted(set(dups))[:5])}")


def column_order(path, ids, canonical, reference="the first file"):
    """Indices that put a file's gene columns in canonical order; error if the sets differ."""
    position = {g: k for k, g in enumerate(ids)}
    missing = [g for g in canonical if g not in position]
    if missing or len(ids) != len(canonical):
        extra = sorted(set(ids) - set(canonical))
        parts = [f"{len(missing)} missing" + (f" (e.g. {', '.join(missing[:3])})" if missing else ""),
                 f"{len(extra)} not in it" + (f" (e.g. {', '.join(extra[:3])})" if extra else "")]
        raise InputError(path, f"genes differ from {reference}: {', '.join(parts)}")
    return np.array([position[g] for g in canonical], dtype=np.int64)
