"""split: seeded train / val / test assignment of profiles, optionally grouped.

With ``group_by`` (a sample metadata column such as ``det_plate``, ``cell_id`` or ``pert_id``) whole
groups are assigned, so no group straddles two sets; the sets then hold approximately the requested
fractions of profiles. Output: HDF5 with sorted int64 row indices ``train``, ``val`` and ``test``.
"""

import math

import numpy as np
import pandas as pd

from l1kformer.errors import InputError
from l1kformer.fileio import atomic_path, h5_create, h5_write

SETS = ("train", "val", "test")


def check_fractions(fractions):
    total = sum(fractions[s] for s in SETS)
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise InputError("split.fractions", f"train + val + test must be 1, got {total:g}")
    if fractions["train"] <= 0:
        raise InputError("split.fractions", "train fraction must be positive")


def split_rows(n, fractions, seed):
    """Row indices per set for ``n`` profiles, drawn with ``seed``."""
    check_fractions(fractions)
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(fractions["test"] * n))
    n_val = int(round(fractions["val"] * n))
    return {"test": np.sort(perm[:n_test]), "val": np.sort(perm[n_test:n_test + n_val]),
            "train": np.sort(perm[n_test + n_val:])}


def _n_groups_for(cumulative, target):
    """How many leading groups bring the profile count closest to ``target`` (at least one)."""
    if target <= 0 or len(cumulative) == 0:
        return 0
    return int(np.argmin(np.abs(cumulative - target))) + 1


def split_groups(groups, fractions, seed):
    """Row indices per set such that each group lies in exactly one set.

    Groups are shuffled with ``seed``; the leading groups whose profiles come closest to the test
    share go to test, the next ones to val, the rest to train.
    """
    check_fractions(fractions)
    codes, uniques = pd.factorize(pd.Series(groups), sort=True)
    counts = np.bincount(codes, minlength=len(uniques))
    order = np.random.default_rng(seed).permutation(len(uniques))
    cumulative = np.cumsum(counts[order])
    n = len(codes)
    n_test = _n_groups_for(cumulative, fractions["test"] * n)
    done = cumulative[n_test - 1] if n_test else 0
    n_val = _n_groups_for(cumulative[n_test:] - done, fractions["val"] * n)
    if n_test + n_val >= len(uniques):
        raise InputError("split.group_by", f"{len(uniques)} groups are too few to fill train, val and "
                                           f"test with fractions {dict(sorted(fractions.items()))}")
    assign = np.zeros(len(uniques), dtype=np.int8)  # 0 train, 1 val, 2 test (SETS order)
    assign[order[:n_test]] = 2
    assign[order[n_test:n_test + n_val]] = 1
    set_of_row = assign[codes]
    return {s: np.flatnonzero(set_of_row == k) for k, s in enumerate(SETS)}


MIN_PROFILES = {"train": 2, "val": 1, "test": 1}


def check_sizes(sets, fractions, where, log, grouped=False):
    """Refuse sets too small for the steps after the split; warn when the achieved fractions (whole
    groups, or rounding on few profiles) stray from the asked ones by more than 0.05."""
    n = sum(len(sets[s]) for s in SETS)
    for s in SETS:
        if len(sets[s]) < MIN_PROFILES[s]:
            raise InputError(where, f"the {s} set would get {len(sets[s])} of {n} profiles (split.{s} "
                                    f"{fractions[s]:g}); it needs at least {MIN_PROFILES[s]}: use more "
                                    f"profiles or a larger split.{s}")
    achieved = {s: len(sets[s]) / n for s in SETS}
    if any(abs(achieved[s] - fractions[s]) > 0.05 for s in SETS):
        log(f"WARNING: {'split.group_by: whole groups' if grouped else 'split: rounding'} gives train / val / test = "
            + " / ".join(f"{achieved[s]:.2f}" for s in SETS) + " (asked "
            + " / ".join(f"{fractions[s]:g}" for s in SETS) + ")")


def write_split(samples_path, out_path, fractions, seed, group_by=None, log=print):
    import pyarrow.parquet as pq

    fields = pq.read_schema(samples_path).names
    if group_by and group_by not in fields:
        raise InputError("split.group_by", f"{group_by!r} is not a sample field of {samples_path} "
                                           f"(its fields: {', '.join(fields)})")
    meta = pd.read_parquet(samples_path, columns=[group_by] if group_by else ["sample_id"])
    if group_by:
        if meta[group_by].isna().any():
            raise InputError(samples_path, f"{int(meta[group_by].isna().sum())} samples have no "
                                           f"{group_by!r} (split.group_by)")
        sets = split_groups(meta[group_by].astype(str).to_numpy(), fractions, seed)
    else:
        sets = split_rows(len(meta), fractions, seed)
    check_sizes(sets, fractions, "split.group_by" if group_by else str(samples_path), log, grouped=bool(group_by))
    with atomic_path(out_path) as tmp, h5_create(tmp) as h5:
        for s in SETS:
            h5_write(h5, s, sets[s].astype(np.int64))
        h5.attrs["seed"] = seed
        h5.attrs["group_by"] = group_by or ""
        for s in SETS:
            h5.attrs[f"fraction_{s}"] = fractions[s]
    for s in SETS:
        groups = f", {meta[group_by].iloc[sets[s]].nunique()} {group_by} groups" if group_by else ""
        log(f"{s}: {len(sets[s])} profiles ({len(sets[s]) / max(1, len(meta)):.1%}){groups}")
    return sets


def read_split(path):
    import h5py

    with h5py.File(path, "r") as h5:
        return {s: h5[s][()] for s in SETS}
