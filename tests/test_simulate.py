"""The simulated data look like Level 3 and the saved truth gives a Bayes oracle."""

import numpy as np

from conftest import defaults
from l1kformer.gctx import GctxMatrix
from l1kformer.mask import draw_positions
from l1kformer.oracle import oracle_predict
from l1kformer.simulate import SimulationConfig, codes_from_meta, load_truth, simulate


def test_simulated_gctx_and_oracle(tmp_path):
    cfg = SimulationConfig(**defaults("simulate", n_genes=978, n_plates=4, wells_per_plate=96, n_compounds=10,
                                         n_cell_lines=2))
    simulate(cfg, tmp_path / "sim.gctx", tmp_path / "truth.h5", log=lambda m: None)
    m = GctxMatrix(tmp_path / "sim.gctx")
    x = m.read_rows(0, m.n_samples)
    meta = m.sample_meta
    assert x.shape == (384, 978) and x.dtype == np.float32
    assert x.max() == 15.0 and np.percentile(x, 0.5) > 2.0 and np.median(x) > 6
    for field in ("cell_id", "pert_id", "pert_iname", "pert_type", "pert_dose", "pert_time",
                  "det_plate", "det_well"):
        assert field in meta.columns
    assert set(meta["pert_type"]) == {"ctl_vehicle", "trt_cp"}
    assert meta["det_plate"].nunique() == 4 and meta["cell_id"].nunique() == 2
    # the truth file reproduces the layout, and the oracle beats the gene mean by far
    truth = load_truth(tmp_path / "truth.h5")
    codes = codes_from_meta(truth, meta)
    assert (codes["cell"] >= 0).all() and (codes["plate"] >= 0).all()
    pos = draw_positions(np.random.default_rng(0), 200, 978, 147)
    target = np.take_along_axis(x[:200], pos, 1)
    oracle = oracle_predict(truth, codes, x[:200].astype(float), pos)
    gene_mean = x.mean(axis=0)[pos]
    mse_oracle, mse_mean = ((oracle - target) ** 2).mean(), ((gene_mean - target) ** 2).mean()
    assert mse_oracle < 0.5 * mse_mean
    # the oracle does not peek: changing the masked values leaves its prediction unchanged
    y = x[:200].astype(float).copy()
    np.put_along_axis(y, pos, 0.0, 1)
    np.testing.assert_allclose(oracle_predict(truth, codes, y, pos), oracle)
    # same config, same file
    simulate(cfg, tmp_path / "b.gctx", tmp_path / "b.h5", log=lambda m: None)
    m2 = GctxMatrix(tmp_path / "b.gctx")
    np.testing.assert_array_equal(m2.read_rows(0, 384), x)


def test_oracle_equals_the_brute_force_mixture_posterior():
    """Woodbury with DUO-blocked noise and the state mixture against dense linear algebra on 9 genes."""
    from scipy.stats import multivariate_normal

    from l1kformer.simulate import duo_partner

    rng = np.random.default_rng(3)
    g, r, k = 9, 2, 3
    truth = {"mu": rng.normal(8, 1, g), "noise_sd": rng.uniform(0.3, 0.7, g), "cell_offset": np.zeros((1, g)),
             "state_offset": rng.normal(0, 1, (1, k, g)), "state_prob": np.array([[0.2, 0.5, 0.3]]),
             "loadings": rng.normal(0, 0.5, (1, k, g, r)), "signature": np.zeros((1, g)), "ec50": np.ones(1),
             "plate_offset": np.zeros((1, g)), "duo_rho": 0.3, "time_factor": np.ones(2)}
    codes = {"cell": np.zeros(4, int), "compound": -np.ones(4, int), "dose_um": np.zeros(4),
             "time_index": np.zeros(4, int), "plate": np.zeros(4, int)}
    sd, partner = truth["noise_sd"], duo_partner(g)
    noise = np.diag(sd ** 2)
    for i in range(g):
        if partner[i] >= 0:
            noise[i, partner[i]] = -0.3 * sd[i] * sd[partner[i]]
    x = rng.normal(8, 1, (4, g))
    positions = np.array([[0, 3, 4], [1, 2, 8], [5, 6, 7], [0, 1, 2]])
    got = oracle_predict(truth, codes, x, positions)
    for i in range(4):
        h = positions[i]
        o = np.setdiff1d(np.arange(g), h)
        w, means = [], []
        for s in range(k):
            mu = truth["mu"] + truth["state_offset"][0, s]
            cov = truth["loadings"][0, s] @ truth["loadings"][0, s].T + noise
            w.append(truth["state_prob"][0, s] * multivariate_normal(mu[o], cov[np.ix_(o, o)]).pdf(x[i, o]))
            means.append(mu[h] + cov[np.ix_(h, o)] @ np.linalg.solve(cov[np.ix_(o, o)], x[i, o] - mu[o]))
        expected = np.array(w) @ np.array(means) / np.sum(w)
        np.testing.assert_allclose(got[i], expected, rtol=1e-9, atol=1e-9)


def test_blind_oracle_equals_the_brute_force_sum_over_metadata(tmp_path):
    """The metadata-free oracle against dense Gaussians summed over every plate x treatment x state
    under the generator's prior, on a tiny simulation (9 genes: an unpaired one too)."""
    from scipy.stats import multivariate_normal

    from l1kformer.oracle import blind_oracle_predict, plate_prior
    from l1kformer.simulate import DOSES_UM, duo_partner

    cfg = SimulationConfig(**defaults("simulate", n_genes=9, n_plates=4, wells_per_plate=16, n_compounds=3,
                                         n_cell_lines=2, n_factors=2, n_states=2))
    simulate(cfg, tmp_path / "sim.gctx", tmp_path / "truth.h5", log=lambda m: None)
    m = GctxMatrix(tmp_path / "sim.gctx")
    x, meta = m.read_rows(0, m.n_samples).astype(float), m.sample_meta
    truth = load_truth(tmp_path / "truth.h5")
    prior = plate_prior(truth, meta)
    codes = codes_from_meta(truth, meta)
    positions = draw_positions(np.random.default_rng(1), 6, 9, 3)
    rows = np.array([0, 5, 17, 30, 44, 63])
    got = blind_oracle_predict(truth, prior, x[rows], positions)

    g, sd, rho = 9, truth["noise_sd"], float(truth["duo_rho"])
    noise = np.diag(sd ** 2)
    for a, b in enumerate(duo_partner(g)):
        if b >= 0:
            noise[a, b] = -rho * sd[a] * sd[b]
    components = []  # (prior, mean, cov)
    for q in range(cfg.n_plates):
        c = codes["cell"][codes["plate"] == q][0]
        tf = truth["time_factor"][codes["time_index"][codes["plate"] == q][0]]
        share = np.mean(codes["plate"] == q)
        ctrl = np.mean(codes["compound"][codes["plate"] == q] < 0)
        treatments = [(ctrl, np.zeros(g))] + [
            ((1 - ctrl) / (cfg.n_compounds * len(DOSES_UM)), tf * d / (d + truth["ec50"][p]) * truth["signature"][p])
            for p in range(cfg.n_compounds) for d in DOSES_UM]
        for k in range(cfg.n_states):
            load = truth["loadings"][c, k]
            for p_treat, effect in treatments:
                mean = (truth["mu"] + truth["cell_offset"][c] + truth["state_offset"][c, k]
                        + truth["plate_offset"][q] + effect)
                components.append((share * p_treat * truth["state_prob"][c, k], mean, load @ load.T + noise))
    for i, row in enumerate(rows):
        h = positions[i]
        o = np.setdiff1d(np.arange(g), h)
        w = np.array([p * multivariate_normal(mu[o], cov[np.ix_(o, o)]).pdf(x[row, o]) for p, mu, cov in components])
        means = np.array([mu[h] + cov[np.ix_(h, o)] @ np.linalg.solve(cov[np.ix_(o, o)], x[row, o] - mu[o])
                          for _, mu, cov in components])
        np.testing.assert_allclose(got[i], w @ means / w.sum(), rtol=1e-8, atol=1e-8)
    # it does not peek at the masked values
    y = x[rows].copy()
    np.put_along_axis(y, positions, 0.0, 1)
    np.testing.assert_allclose(blind_oracle_predict(truth, prior, y, positions), got)


def _mse_ratios(x_path, samples, n, truth=None):
    """The dev-plate protocol of ../shared/data/l1000/README.md: MSE of gene mean, shrunk linear, kNN
    (and the oracle on simulated data), each as a ratio to the gene mean."""
    from l1kformer.baselines_expression import expression_baselines
    from l1kformer.mask import make_mask
    from l1kformer.oracle import oracle_baseline

    perm = np.random.default_rng(0).permutation(n)
    test, rest = np.sort(perm[:round(0.2 * n)]), perm[round(0.2 * n):]
    split = {"train": np.sort(rest[round(0.2 * len(rest)):]), "val": np.sort(rest[:round(0.2 * len(rest))]),
             "test": test}
    mask = make_mask(split, 978, 0.15, seed=1)
    res, info = expression_baselines(x_path, split, mask["val"], mask["test"], knn_k=10, knn_reference=20000,
                                     tune_profiles=500, log=lambda m: None)
    if truth is not None:
        res.update(oracle_baseline(x_path, samples, truth, mask["test"], log=lambda m: None))
    gm = res["gene_mean"]["mse"]
    return {"gene mean MSE": gm, "shrinkage a": info["shrinkage"],
            **{f"{k} / gene mean": res[k]["mse"] / gm for k in ("linear_shrunk", "knn", "oracle") if k in res}}


def _level3_stats(x_path, samples, partner):
    import h5py
    import pandas as pd

    x = h5py.File(x_path)["expression"][()].astype(float)
    meta = pd.read_parquet(samples)
    plate = meta["source_file"].astype(str) + meta.get("det_plate", pd.Series([""] * len(meta))).astype(str)
    resid = x.copy()
    for p in plate.unique():
        resid[(plate == p).to_numpy()] -= x[(plate == p).to_numpy()].mean(axis=0)
    vehicle = (meta["pert_type"].astype(str).str.lower() == "ctl_vehicle").to_numpy()
    rv = resid[vehicle]
    duo = [np.corrcoef(rv[:, a], rv[:, b])[0, 1] for a, b in enumerate(partner) if b > a]
    return {"gene means, mean": x.mean(axis=0).mean(), "gene means, sd": x.mean(axis=0).std(),
            "within-plate sd, median": np.median(resid.std(axis=0)), "DUO residual r, vehicle": np.mean(duo),
            "ties per profile": np.mean([x.shape[1] - len(np.unique(row)) for row in x])}


def test_calibration_against_the_real_plates(tmp_path):
    """Real A375 Level 3 (two plates) against the generator with a real-like layout (one cell line, two
    plates, 200 compounds), on the same protocol. Prints the table; the ratios must stay close."""
    import pandas as pd

    from conftest import ingest_settings, shared_file
    from l1kformer.ingest import ingest

    table_path = shared_file("landmark_genes_978.tsv")
    real_files = [shared_file("LJP005_A375_24H_level3_n377x978.gct"),
                  shared_file("CPC006_A375_6H_level3_n371x978.gctx")]
    ingest(real_files, tmp_path / "r.h5", tmp_path / "r.parquet", tmp_path / "r.tsv", log=lambda m: None,
           **ingest_settings(n_genes=978, gene_table=table_path))
    genes = pd.read_csv(tmp_path / "r.tsv", sep="\t", dtype=str)
    by_analyte = genes.reset_index().groupby("pr_analyte_id")["index"].apply(list)
    real_partner = -np.ones(978, int)
    for members in by_analyte:
        if len(members) == 2:
            real_partner[members[0]], real_partner[members[1]] = members[1], members[0]
    cfg = SimulationConfig(**defaults("simulate", n_genes=978, n_cell_lines=1, n_plates=2, wells_per_plate=384,
                                         n_compounds=200))
    simulate(cfg, tmp_path / "sim.gctx", tmp_path / "truth.h5", log=lambda m: None)
    ingest([tmp_path / "sim.gctx"], tmp_path / "s.h5", tmp_path / "s.parquet", tmp_path / "s.tsv",
           log=lambda m: None, **ingest_settings(n_genes=978))
    from l1kformer.simulate import duo_partner

    real = {**_level3_stats(tmp_path / "r.h5", tmp_path / "r.parquet", real_partner),
            **_mse_ratios(tmp_path / "r.h5", None, 748)}
    sim = {**_level3_stats(tmp_path / "s.h5", tmp_path / "s.parquet", duo_partner(978)),
           **_mse_ratios(tmp_path / "s.h5", tmp_path / "s.parquet", 768, tmp_path / "truth.h5")}
    print("\ncalibration: real A375 Level 3 (748 profiles) vs simulated (768), same protocol")
    print(f"{'':28s} {'real':>8s} {'simulated':>10s}")
    for key in sim:
        print(f"{key:28s} {real.get(key, float('nan')):8.3f} {sim[key]:10.3f}")
    for key in ("linear_shrunk / gene mean", "knn / gene mean"):
        assert abs(sim[key] - real[key]) < 0.08, (key, real[key], sim[key])
    assert sim["shrinkage a"] == real["shrinkage a"]
    assert -0.30 < sim["DUO residual r, vehicle"] < -0.14
    assert sim["oracle / gene mean"] < 0.85 * sim["linear_shrunk / gene mean"]  # the mixture: linear is not Bayes
