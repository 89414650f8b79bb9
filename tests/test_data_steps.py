"""rank, split and mask on their own."""

import h5py
import numpy as np
import pytest

from l1kformer.errors import InputError
from l1kformer.mask import make_mask, n_masked
from l1kformer.rank import gene_medians, rank_file
from l1kformer.gene_order import rank_genes, rank_genes_loop
from l1kformer.split import split_groups, split_rows

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def test_rank_matches_the_per_profile_loop_including_ties():
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(8, 3, (500, 978)), 1).astype(np.float32)  # few decimals: many ties
    x[x > 15] = 15.0
    x[0, :10] = 0.0
    x[0, 10:20] = -0.0  # -0.0 ties with 0.0
    x[1] = -2.5  # all tied: gene order
    x[2, ::2] = -1e-30
    ranks = rank_genes(x)
    assert ranks.dtype == np.int16
    np.testing.assert_array_equal(ranks, rank_genes_loop(x))
    np.testing.assert_array_equal(ranks[1], np.arange(978))
    assert x[3, ranks[3, 0]] == x[3].max()


def test_rank_hand_case():
    x = np.array([[1.0, 3.0, 2.0, 3.0]], dtype=np.float32)
    np.testing.assert_array_equal(rank_genes(x), [[1, 3, 2, 0]])


def test_rank_file_in_blocks_and_threads(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(8, 2, (1000, 50)).astype(np.float32)
    with h5py.File(tmp_path / "x.h5", "w") as h5:
        h5["expression"] = x
    rank_file(tmp_path / "x.h5", tmp_path / "r.h5", block_rows=128, threads=2, log=lambda m: None)
    with h5py.File(tmp_path / "r.h5") as h5:
        np.testing.assert_array_equal(h5["ranks"][()], rank_genes_loop(x))


def test_normalisation_uses_training_profiles_only(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(8, 2, (200, 20)).astype(np.float32)
    train = np.arange(0, 200, 2)
    x[1::2] += 100.0  # non-training profiles far off: they must not move the medians
    with h5py.File(tmp_path / "x.h5", "w") as h5:
        h5["expression"] = x
    with h5py.File(tmp_path / "x.h5") as h5:
        med = gene_medians(h5["expression"], train)
        np.testing.assert_allclose(med, np.median(x[train], axis=0), rtol=1e-6)
        sub = gene_medians(h5["expression"], train, max_rows=10, log=lambda m: None)
        assert sub.shape == (20,)
    rank_file(tmp_path / "x.h5", tmp_path / "r.h5", "median_center", train, log=lambda m: None)
    with h5py.File(tmp_path / "r.h5") as h5:
        np.testing.assert_array_equal(h5["ranks"][()], rank_genes_loop(x - med))
        np.testing.assert_allclose(h5["gene_medians"][()], med)


def test_split_fractions_and_seed():
    a = split_rows(1000, FRACTIONS, seed=3)
    assert [len(a[s]) for s in ("train", "val", "test")] == [800, 100, 100]
    assert len(np.unique(np.concatenate(list(a.values())))) == 1000
    b = split_rows(1000, FRACTIONS, seed=3)
    c = split_rows(1000, FRACTIONS, seed=4)
    assert all((a[s] == b[s]).all() for s in a)
    assert not (a["test"] == c["test"]).all()


def test_split_fractions_must_sum_to_one():
    with pytest.raises(InputError, match="split.fractions"):
        split_rows(10, {"train": 0.8, "val": 0.3, "test": 0.1}, 0)


def test_group_split_keeps_groups_whole():
    rng = np.random.default_rng(5)
    groups = rng.choice([f"plate{k}" for k in range(40)], size=5000)
    sets = split_groups(groups, FRACTIONS, seed=1)
    owner = {}
    for s, rows in sets.items():
        for g in set(groups[rows]):
            assert owner.setdefault(g, s) == s
    sizes = {s: len(r) / 5000 for s, r in sets.items()}
    assert sizes["test"] == pytest.approx(0.1, abs=0.03) and sizes["val"] == pytest.approx(0.1, abs=0.03)
    assert sum(len(r) for r in sets.values()) == 5000


def test_group_split_with_too_few_groups():
    with pytest.raises(InputError, match="too few"):
        split_groups(np.array(["a", "a", "b", "b"]), FRACTIONS, seed=0)


def test_mask_exact_count_seeded_and_sorted():
    split = {"train": np.arange(100), "val": np.arange(100, 130), "test": np.arange(130, 200)}
    masks = make_mask(split, 978, 0.15, seed=2)
    k = n_masked(0.15, 978)
    assert k == 147
    for name, (rows, pos) in masks.items():
        np.testing.assert_array_equal(rows, split[name])
        assert pos.shape == (len(rows), k) and pos.dtype == np.int16
        assert (np.diff(pos, axis=1) > 0).all()  # sorted and distinct
        assert pos.min() >= 0 and pos.max() < 978
    again = make_mask(split, 978, 0.15, seed=2)
    other = make_mask(split, 978, 0.15, seed=3)
    assert (again["test"][1] == masks["test"][1]).all()
    assert not (other["test"][1] == masks["test"][1]).all()
    # positions are uniform: each position masked about k/978 of the time
    big = make_mask({"val": np.arange(20000), "test": np.arange(1)}, 978, 0.15, seed=0)["val"][1]
    freq = np.bincount(big.ravel(), minlength=978) / 20000
    # binomial sd of one position's frequency is about 0.0025: no position may stray 6 sd from k/978
    assert np.abs(freq - k / 978).max() < 0.015


def test_mask_independent_of_block_size():
    from l1kformer.mask import draw_positions

    a = draw_positions(np.random.default_rng(1), 1000, 978, 147, block_rows=64)
    b = draw_positions(np.random.default_rng(1), 1000, 978, 147, block_rows=1000)
    np.testing.assert_array_equal(a, b)
    assert n_masked(0.1, 10) == 1 and n_masked(0.15, 20) == 3
