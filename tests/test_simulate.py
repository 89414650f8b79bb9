"""The simulated data look like Level 3 and the saved truth gives a Bayes oracle."""

import numpy as np

from conftest import defaults
from l1kformer.gctx import GctxMatrix
from l1kformer.mask import draw_positions
from l1kformer.simulate import SimulationConfig, codes_from_meta, load_truth, oracle_predict, simulate


def test_simulated_gctx_and_oracle(tmp_path):
    cfg = SimulationConfig(**defaults("simulate", n_plates=4, wells_per_plate=96, n_compounds=10, n_cell_lines=2))
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
