"""Align genes across files by id, optionally through a reference gene table.

With a reference table (the 978 landmark genes, or a release's whole gene_info / geneinfo_beta with a
``gene_filter`` such as ``{pr_is_lm: [1]}`` or ``{feature_space: [landmark]}``), the table's selected
rows are the canonical genes, in table order. A file's genes may be named by any of the table's
``match`` columns, in its row ids or in its gene metadata; they are renamed to the table's ``key``
column and put in the table's order, and a file's other genes (the 11,350 inferred genes of a
12,328-row Level 3-5 file) are dropped. Without a table, the first file's gene order is the canonical
one and every other file must hold the same ids.
"""

import numpy as np
import pandas as pd

from l1kformer.errors import InputError
from l1kformer.matrix import normalize_id, normalize_ids


class GeneTable:
    """The canonical genes: ids in order, and how other id systems map onto them."""

    def __init__(self, table, key, match, source, gene_filter=None):
        if key not in table.columns:
            raise InputError(source, f"gene table has no key column {key!r}; its columns: "
                                     f"{', '.join(map(repr, table.columns))}")
        self.source = source
        self.key = key
        self.size = len(table)
        self.table = _select(table, gene_filter or {}, source).reset_index(drop=True)
        self.ids = np.array(normalize_ids(self.table[key]), dtype=object)
        if len(set(self.ids)) != len(self.ids):
            raise InputError(source, f"gene table has duplicate {key} values")
        self.maps = {}
        for column in [key] + [m for m in match if m != key]:
            if column not in self.table.columns:
                raise InputError(source, f"gene table has no column {column!r} named in data.gene_match; its "
                                         f"columns: {', '.join(map(repr, table.columns))}")
            self.maps[column] = dict(zip(normalize_ids(self.table[column]), self.ids))

    @classmethod
    def from_file(cls, path, key, match, gene_filter=None):
        try:
            table = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False,
                                encoding="utf-8-sig")
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise InputError(path, f"cannot read gene table: {exc}") from None
        return cls(table, key, match, path, gene_filter)

    def is_gene_axis(self, ids):
        """Whether ``ids`` (one axis of a table file) name every selected gene through one id system."""
        return any(len({m[i] for i in ids if i in m}) == len(self.ids) for m in self.maps.values())

    def file_columns(self, path, matrix):
        """Indices of the file's gene columns that hold the selected genes, in table order; the file's
        other genes are dropped. Error if a selected gene is not in the file, or is in it twice."""
        candidates = [list(matrix.gene_ids)]
        for column in self.maps:
            if column in matrix.gene_meta.columns:
                candidates.append(normalize_ids(matrix.gene_meta[column]))
        best = None
        for ids in candidates:
            for mapping in self.maps.values():
                position, twice = {}, []
                for k, i in enumerate(ids):
                    gene = mapping.get(i)
                    if gene in position:
                        twice.append(i)
                    elif gene is not None:
                        position[gene] = k
                missing = [g for g in self.ids if g not in position]
                if not missing:
                    if twice:
                        raise InputError(path, f"duplicate gene ids: {', '.join(sorted(set(twice))[:5])}")
                    return np.array([position[g] for g in self.ids], dtype=np.int64)
                if best is None or len(missing) < len(best[0]):
                    best = missing, [i for i in ids if i not in mapping]
        self._refuse(path, *best)

    def _refuse(self, path, missing, unknown):
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        hint = ""
        symbols = [c for c in self.table.columns if "symbol" in c.lower() and c not in self.maps]
        if symbols and unknown and any(not str(i).isdigit() for i in unknown[:20]):
            hint = f"; its gene ids look like gene symbols (e.g. {unknown[0]}): add {symbols[0]} to data.gene_match"
        raise InputError(path, f"lacks {len(missing)} of the {len(self.ids)} genes selected from the gene table "
                               f"{self.source} (e.g. {self.key} {shown}){hint}")


def _select(table, gene_filter, source):
    """The gene table's rows whose fields hold allowed values (``data.gene_filter``), in table order."""
    keep = np.ones(len(table), dtype=bool)
    for field, allowed in sorted(gene_filter.items()):
        if field not in table.columns:
            raise InputError(source, f"gene table has no field {field!r} (data.gene_filter); "
                                     f"its fields: {', '.join(table.columns)}")
        keep &= np.isin(normalize_ids(table[field]), [normalize_id(a) for a in allowed])
    if not keep.any():
        raise InputError(source, f"data.gene_filter {dict(sorted(gene_filter.items()))} selects no gene "
                                 f"of the gene table")
    return table.loc[keep]


def check_gene_ids(path, ids, n_genes):
    """Gene count and uniqueness of one file's (canonical) gene ids."""
    if n_genes is not None and len(ids) != n_genes:
        hint = "; L1000 landmark matrices need data.n_genes: 978" if len(ids) == 978 else ""
        if len(ids) > (n_genes or 0):
            hint = hint or ("; to keep the landmarks of a release file, set data.gene_table and data.gene_filter "
                            "(e.g. {pr_is_lm: [1]} with GEO's gene_info)")
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
