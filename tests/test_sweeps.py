"""Sweeps: grids expanded into readable run names, fast dry runs."""

import time

import pytest

from l1kformer.errors import InputError
from l1kformer.sweeps import expand_sweeps


def test_grid_expands_to_readable_names():
    runs = expand_sweeps({"base": {"mode": "rank"}},
                         {"size": {"base": {"mode": "expression"},
                                   "grid": {"mask_schedule": ["constant", "linear"], "d_model": [64, 128]}}})
    assert sorted(runs) == ["base", "size.d_model-128.mask_schedule-constant", "size.d_model-128.mask_schedule-linear",
                            "size.d_model-64.mask_schedule-constant", "size.d_model-64.mask_schedule-linear"]
    assert runs["size.d_model-64.mask_schedule-linear"] == {"mode": "expression", "d_model": 64,
                                                            "mask_schedule": "linear"}


def test_name_clash_and_missing_mode_are_errors():
    with pytest.raises(InputError, match="already taken"):
        expand_sweeps({"s.lr-0.001": {"mode": "rank"}}, {"s": {"base": {"mode": "rank"}, "grid": {"lr": [0.001]}}})
    with pytest.raises(InputError, match="needs a mode"):
        expand_sweeps({}, {"s": {"grid": {"lr": [0.001]}}})


@pytest.mark.workflow
def test_24_run_sweep_dry_run_takes_seconds(workflow):
    workflow.set_config({"sweeps": {"grid24": {"base": {"mode": "rank"}, "grid": {
        "d_model": [32, 64, 128], "mask_schedule": ["constant", "linear"], "lr": [0.001, 0.002],
        "n_layers": [1, 2]}}}})
    start = time.time()
    counts = workflow.job_counts()
    elapsed = time.time() - start
    assert counts["train"] == 24 + 2  # the sweep and the two named runs
    assert elapsed < 30, elapsed
    out = workflow.run("-n").stdout
    assert "grid24.d_model-128.lr-0.002.mask_schedule-linear.n_layers-2" in out


@pytest.mark.workflow
def test_sweep_values_are_validated(workflow):
    workflow.set_config({"sweeps": {"bad": {"base": {"mode": "rank"}, "grid": {"lr": ["fast"]}}}})
    proc = workflow.run("-n", check=False)
    assert proc.returncode != 0
    assert "l1kformer error: config key runs.bad.lr-fast.lr: 'fast' is not of type 'number'" in proc.stderr
