"""Metrics, constrained decoding and baselines: hand cases, identities, and the real-data reference."""

import numpy as np
import pytest

from conftest import defaults, ingest_settings, shared_file
from l1kformer.baselines import conditional_mean, shrink
from l1kformer.baselines_expression import expression_baselines, knn_predict
from l1kformer.baselines_rank import rank_baselines
from reference_metrics import expression_metrics, grouped_correlations, score_profile, summarize_rank

EXPRESSION_BASELINES = {k: defaults("evaluate")[k] for k in ("knn_k", "knn_reference", "tune_profiles")}
RANK_BASELINES = {k: defaults("evaluate")[k] for k in ("smoothing_sigma", "tune_profiles")}


def test_rank_metrics_hand_case():
    # 2 masked positions, 4 genes; the true genes are 2 and 0
    scores = np.log(np.array([[0.1, 0.2, 0.6, 0.1],
                              [0.3, 0.3, 0.2, 0.2]]))
    true = np.array([2, 0])
    r = score_profile(scores, true)
    np.testing.assert_allclose(r["ce"], [-np.log(0.6), -np.log(0.3)])
    assert list(r["top1"]) == [True, True]  # row 2: genes 0 and 1 tie; the lower index comes first
    assert list(r["rank_error"]) == [0.0, 0.5]  # a tie counts half
    # constrained to the missing genes {0, 2}: row 1 renormalises 0.3 vs 0.2
    np.testing.assert_allclose(r["c_ce"], [-np.log(0.6 / 0.7), -np.log(0.3 / 0.5)])
    assert list(r["c_top1"]) == [True, True] and list(r["c_rank_error"]) == [0.0, 0.0]
    assert list(r["assign_gene"]) == [2, 0] and r["assign_top1"].all()
    s = summarize_rank([r])
    assert s["top1"] == 1.0 and s["c_top1"] == 1.0 and s["mean_rank_error"] == 0.25


def test_hungarian_can_beat_greedy():
    # both positions prefer gene 5; one-to-one decoding must give it to the stronger claim
    scores = np.full((2, 8), -10.0)
    scores[0, [5, 3]] = [-0.1, -0.2]
    scores[1, [5, 3]] = [-0.5, -3.0]
    r = score_profile(scores, np.array([3, 5]))
    assert list(r["c_pred_gene"]) == [5, 5]  # greedy: both pick gene 5
    assert list(r["assign_gene"]) == [3, 5]  # assignment: total log-score -0.2 - 0.5 beats -0.1 - 3.0


def test_constrained_decoding_is_a_permutation_of_the_missing_genes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        true = rng.choice(978, size=147, replace=False)
        r = score_profile(rng.normal(size=(147, 978)), true)
        assert sorted(r["assign_gene"]) == sorted(true)
        assert set(r["c_pred_gene"]) <= set(true)


def test_expression_metrics_hand_case():
    pred = np.array([1.0, 2.0, 3.0, 5.0])
    true = np.array([1.0, 2.0, 4.0, 4.0])
    m = expression_metrics(pred, true, profile=np.array([0, 0, 1, 1]), gene=np.array([0, 1, 0, 1]))
    assert m["mse"] == pytest.approx(0.5) and m["mae"] == pytest.approx(0.5)
    assert m["pearson"] == pytest.approx(np.corrcoef(pred, true)[0, 1])
    x, y = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0, 9.0])
    assert grouped_correlations(x, y, np.zeros(4, int)) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert grouped_correlations(x, y, np.zeros(4, int), spearman=True) == pytest.approx(1.0)


def test_best_linear_predictor_equals_least_squares():
    rng = np.random.default_rng(1)
    g, n = 6, 400
    a = rng.normal(size=(g, g))
    train = rng.normal(size=(n, g)) @ a + rng.normal(size=g)
    test = rng.normal(size=(5, g)) @ a
    mean = train.mean(axis=0)
    cov = np.cov(train, rowvar=False, bias=True)
    positions = np.array([[1, 4]] * 5)
    pred = conditional_mean(mean, np.linalg.inv(shrink(cov, 0.0)), test, positions)
    observed = [0, 2, 3, 5]
    design = np.column_stack([np.ones(n), train[:, observed]])
    coef, *_ = np.linalg.lstsq(design, train[:, [1, 4]], rcond=None)
    direct = np.column_stack([np.ones(5), test[:, observed]]) @ coef
    np.testing.assert_allclose(pred, direct, rtol=1e-8, atol=1e-8)


def test_knn_hand_case():
    reference = np.array([[0.0, 0.0, 10.0], [1.0, 1.0, 20.0], [5.0, 5.0, 30.0]])
    pred = knn_predict(reference, np.array([[0.9, 1.2, 0.0]]), np.array([[2]]), k=2)
    assert pred[0, 0] == pytest.approx(15.0)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from l1kformer.ingest import ingest
    from l1kformer.mask import make_mask
    from l1kformer.rank import rank_file
    from l1kformer.simulate import SimulationConfig, simulate
    from l1kformer.split import split_rows

    d = tmp_path_factory.mktemp("sim")
    cfg = SimulationConfig(**defaults("simulate", n_genes=978, n_plates=3, wells_per_plate=128, n_cell_lines=2,
                                         n_compounds=8))
    simulate(cfg, d / "sim.gctx", d / "truth.h5", log=lambda m: None)
    ingest([d / "sim.gctx"], d / "x.h5", d / "s.parquet", d / "g.tsv", log=lambda m: None,
           **ingest_settings(n_genes=978))
    rank_file(d / "x.h5", d / "r.h5", log=lambda m: None)
    split = split_rows(384, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=0)
    return d, split, make_mask(split, 978, 0.15, seed=0)


def test_oracle_is_at_or_below_every_baseline(simulated):
    from l1kformer.oracle import oracle_baseline

    d, split, mask = simulated
    results, info = expression_baselines(d / "x.h5", split, mask["val"], mask["test"], log=lambda m: None,
                                         **EXPRESSION_BASELINES)
    results.update(oracle_baseline(d / "x.h5", d / "s.parquet", d / "truth.h5", mask["test"], log=lambda m: None))
    assert set(results) == {"gene_mean", "linear_shrunk", "linear_ledoit_wolf", "knn", "oracle", "oracle_no_metadata"}
    for name, m in results.items():  # knowing the metadata helps; seeing only the values, still a bound
        assert results["oracle"]["mse"] <= m["mse"], name
        assert name == "oracle" or results["oracle_no_metadata"]["mse"] <= m["mse"], name
    assert results["linear_shrunk"]["mse"] < results["gene_mean"]["mse"]
    assert info["shrinkage"] in (0.01, 0.03, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def test_rank_baselines_beat_chance(simulated):
    d, split, mask = simulated
    res, _ = rank_baselines(d / "r.h5", split, mask["val"], mask["test"], log=lambda m: None, **RANK_BASELINES)
    assert res["position_frequency_smoothed"]["c_mean_rank_error"] < 0.7 * 73.0  # chance among 147
    assert res["position_frequency"]["mean_rank_error"] < 488.5


# --- the reference numbers of ../shared/data/l1000/README.md -----------------------------------------

def test_baselines_near_the_reference_numbers_on_real_plates(tmp_path):
    from l1kformer.ingest import ingest
    from l1kformer.mask import make_mask
    from l1kformer.rank import rank_file

    files = [shared_file("LJP005_A375_24H_level3_n377x978.gct"), shared_file("CPC006_A375_6H_level3_n371x978.gctx")]
    ingest(files, tmp_path / "x.h5", tmp_path / "s.parquet", tmp_path / "g.tsv", log=lambda m: None,
           **ingest_settings(n_genes=978, gene_table=shared_file("landmark_genes_978.tsv")))
    rank_file(tmp_path / "x.h5", tmp_path / "r.h5", log=lambda m: None)
    # the README's protocol: 80/20 train/test, inside train 80/20 train/val, 147 masked per profile
    perm = np.random.default_rng(0).permutation(748)
    test, rest = np.sort(perm[:150]), perm[150:]
    split = {"train": np.sort(rest[120:]), "val": np.sort(rest[:120]), "test": test}
    mask = make_mask(split, 978, 0.15, seed=1)
    expr, info = expression_baselines(tmp_path / "x.h5", split, mask["val"], mask["test"], log=lambda m: None,
                                      **EXPRESSION_BASELINES)
    assert 0.85 < expr["gene_mean"]["mse"] < 1.10  # reference 0.973
    assert 0.45 < expr["linear_shrunk"]["mse"] < 0.62 and 0.5 <= info["shrinkage"] <= 0.9  # 0.538, a = 0.7
    assert 0.80 < expr["linear_ledoit_wolf"]["mse"] < 1.05 and info["ledoit_wolf_shrinkage"] < 0.1  # 0.949
    assert 0.55 < expr["knn"]["mse"] < 0.75  # 0.648
    rank, info = rank_baselines(tmp_path / "r.h5", split, mask["val"], mask["test"], log=lambda m: None,
                                **RANK_BASELINES)
    assert 0.008 < rank["position_frequency"]["top1"] < 0.025  # 0.015
    assert 150 < rank["position_frequency"]["mean_rank_error"] < 230  # 189
    assert 0.06 < rank["position_frequency_smoothed"]["c_top1"] < 0.10  # 0.081
    assert 15 < rank["position_frequency_smoothed"]["c_mean_rank_error"] < 21  # 17.8
    assert 0.05 < rank["position_frequency_smoothed"]["assign_top1"] < 0.09  # Hungarian 0.068
    assert 0.03 < rank["mean_rank"]["assign_top1"] < 0.06  # 0.046
    assert 19 < rank["mean_rank"]["c_mean_rank_error"] < 26  # 21.9
    # the conditional Gaussian on rank positions: 13.8 and 0.074 in the independent run
    assert 12 < rank["gaussian_positions"]["c_mean_rank_error"] < 16
    assert 0.055 < rank["gaussian_positions"]["c_top1"] < 0.095
    assert rank["gaussian_positions"]["c_mean_rank_error"] < rank["position_frequency_smoothed"]["c_mean_rank_error"]


def _score_profile_by_sorting(scores, true_genes):
    """The former per-profile implementation (full stable argsort, scipy log_softmax), for reference."""
    from scipy.special import log_softmax

    from reference_metrics import rank_error

    k = len(true_genes)
    logp = log_softmax(scores, axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")
    return {"ce": -logp[np.arange(k), true_genes], "top1": order[:, 0] == true_genes,
            "top5": (order[:, :5] == true_genes[:, None]).any(axis=1),
            "rank_error": rank_error(scores, true_genes), "pred_gene": order[:, 0]}


def test_counting_rank_metrics_equal_the_sorting_ones_exactly():
    rng = np.random.default_rng(5)
    for trial in range(20):
        n_genes, k = 60, 9
        scores = rng.normal(size=(k, n_genes))
        if trial % 2:  # many ties, as rounded scores have
            scores = np.round(scores, 1)
        true = rng.permutation(n_genes)[:k]
        new, old = score_profile(scores, true), _score_profile_by_sorting(scores, true)
        for key, value in old.items():
            if key == "ce":  # torch's exp and scipy's differ in the last bit
                np.testing.assert_allclose(new[key], value, rtol=1e-14, err_msg=key)
            else:
                np.testing.assert_array_equal(new[key], value, err_msg=key)


# --- blocked scoring equals the former per-profile scoring ---------------------------------------------

def _former_score_profile(scores, true_genes, assignment=None):
    """The former per-profile implementation (numpy and scipy, one profile at a time), for reference."""
    from scipy.optimize import linear_sum_assignment
    from scipy.special import log_softmax

    from reference_metrics import rank_error

    k = len(true_genes)
    rows = np.arange(k)
    true_score = scores[rows, true_genes][:, None]
    above, tied = (scores > true_score).sum(axis=1), scores == true_score
    place = above + (tied & (np.arange(scores.shape[1]) < true_genes[:, None])).sum(axis=1)
    logp = log_softmax(scores, axis=1)
    missing = np.sort(true_genes)
    local = np.searchsorted(missing, true_genes)
    sub = scores[:, missing]
    sub_logp = log_softmax(sub, axis=1)
    sub_order = np.argsort(-sub, axis=1, kind="stable")
    if assignment is None:
        r, c = linear_sum_assignment(-sub_logp)
        assignment = missing[c[np.argsort(r)]]
    return {"ce": -logp[rows, true_genes], "top1": place == 0, "top5": place < 5,
            "rank_error": above + 0.5 * (tied.sum(axis=1) - 1), "pred_gene": scores.argmax(axis=1),
            "c_ce": -sub_logp[rows, local], "c_top1": sub_order[:, 0] == local,
            "c_top5": (sub_order[:, :5] == local[:, None]).any(axis=1), "c_rank_error": rank_error(sub, local),
            "c_pred_gene": missing[sub_order[:, 0]], "assign_gene": assignment,
            "assign_top1": assignment == true_genes}


def _assert_same(blocked, former, i):
    for key, value in former.items():
        if key not in blocked:
            continue
        if key == "ce":  # torch's logsumexp against scipy's log-softmax: the last bit may differ
            np.testing.assert_allclose(blocked[key][i], value, rtol=1e-13, err_msg=key)
        else:
            np.testing.assert_array_equal(blocked[key][i], value, err_msg=key)


def test_blocked_rank_scoring_equals_the_former_per_profile_scoring_exactly():
    from scipy.ndimage import gaussian_filter1d

    from l1kformer.baselines_rank import distance_scores
    from l1kformer.metrics_rank import (PositionTable, in_position_order, score_distance_block, score_rank_block,
                                        score_table_block)

    rng = np.random.default_rng(11)
    n_genes, k, n = 90, 14, 12
    positions = np.sort(np.stack([rng.permutation(n_genes)[:k] for _ in range(n)]), axis=1)
    true = np.stack([rng.permutation(n_genes)[:k] for _ in range(n)])
    # free scores (a model's), with and without ties
    for scores in (rng.normal(size=(n, k, n_genes)), np.round(rng.normal(size=(n, k, n_genes)), 1)):
        blocked = score_rank_block(scores, true)
        for i in range(n):
            _assert_same(blocked, _former_score_profile(scores[i], true[i]), i)
    # position tables: counts (ties, solved as posed) and smoothed counts (solved transposed)
    counts = rng.poisson(0.6, size=(n_genes, n_genes)).astype(float)
    for table, transposed in ((counts, False), (gaussian_filter1d(counts, 3.0, axis=0), True)):
        logp = np.log((table + 0.5) / (table.sum(axis=1, keepdims=True) + 0.5 * n_genes))
        blocked = score_table_block(PositionTable(logp, transposed=transposed), positions, true)
        for i in range(n):
            _assert_same(blocked, _former_score_profile(logp[positions[i]], true[i]), i)
    # predicted positions scored by distance, with the missing genes assigned in predicted order
    gene_position = rng.normal(n_genes / 2, n_genes / 4, size=(n, n_genes))
    gene_position[:, : n_genes // 2] = np.round(gene_position[:, : n_genes // 2])  # ties, as visible genes have
    blocked = score_distance_block(gene_position, positions, true)
    order = in_position_order(gene_position, true)
    for i in range(n):
        scores = distance_scores(gene_position[i], positions[i])
        _assert_same(blocked, _former_score_profile(scores, true[i], assignment=order[i]), i)


def test_the_oracles_are_bounds_never_the_best_baseline(tmp_path):
    """A baseline file's ``bounds`` (the oracle step's) are left out when a run is compared with the
    best baseline, however low their error."""
    from l1kformer.fileio import read_baselines, read_bounds, write_json
    from l1kformer.summary import versus_baselines

    write_json(tmp_path / "expression.json", {"baselines": {"knn": {"mse": 0.7}, "linear_shrunk": {"mse": 0.6}}})
    write_json(tmp_path / "oracle.json", {"baselines": {"oracle": {"mse": 0.4}, "oracle_no_metadata": {"mse": 0.45}},
                                          "bounds": ["oracle", "oracle_no_metadata"]})
    paths = [tmp_path / "expression.json", tmp_path / "oracle.json"]
    bounds = read_bounds(paths)
    assert bounds == {"oracle", "oracle_no_metadata"}
    runs = {"m": {"mode": "expression", "test": {"mse": 0.5}}}
    name, value, ratio = versus_baselines(runs, {"expression": read_baselines(paths)}, bounds)["m"]["mse"]
    assert (name, value) == ("linear_shrunk", 0.6) and abs(ratio - 0.5 / 0.6) < 1e-12
    assert versus_baselines(runs, {"expression": read_baselines(paths)})["m"]["mse"][0] == "oracle"
