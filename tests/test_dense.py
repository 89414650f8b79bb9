"""The dense control (a masked MLP, no attention): same task objects, training, evaluation and files."""

import json

import pandas as pd
import pytest
import torch

from conftest import DEFAULTS
from l1kformer.model import DenseNet, build_model
from l1kformer.modes import MODES
from test_train import LEARN_EPOCHS, assert_beats_baseline, run, tiny_data  # noqa: F401 (a fixture)


@pytest.mark.parametrize("mode", ["rank", "expression"])
def test_dense_trunk_learns(tiny_data, tmp_path, mode):  # noqa: F811
    torch.set_num_threads(1)
    model, state = run(tiny_data, mode, tmp_path, extra={"trunk": "dense", "dense_width": 64, "dense_depth": 2,
                                                        "epochs": LEARN_EPOCHS[mode]})
    assert isinstance(model, DenseNet)
    h = state["history"]
    assert h[-1]["train_loss"] < 0.8 * h[0]["train_loss"], h
    assert_beats_baseline(h, tiny_data, mode)


@pytest.mark.parametrize("mode", ["rank", "expression"])
def test_dense_outputs_ignore_hidden_inputs(mode):
    """What sits at a masked position must not reach the prediction (no leak through the MLP)."""
    torch.manual_seed(0)
    cfg = dict(mode=mode, n_genes=8, trunk="dense", value_encoder="linear", attn_bias="none", rank_view="genes",
               position_prior=None, d_model=8, n_layers=1, n_heads=1, d_ff=8, dense_width=16, dense_depth=1, dropout=0.0)
    model = build_model(cfg).eval()
    masked = torch.tensor([[2, 5], [2, 5]])
    if mode == "rank":
        x = torch.stack([torch.randperm(8), torch.randperm(8)])
        y = x.clone()
        y[:, 2], y[:, 5] = x[:, 5], x[:, 2]  # the masked genes swapped
    else:
        x = torch.randn(2, 8)
        y = x.clone()
        y[:, [2, 5]] = 100.0
    out = model(x, masked)
    assert torch.equal(out, model(y, masked))
    assert out.shape[0] == 4


@pytest.mark.workflow
def test_dense_runs_through_the_pipeline(workflow):
    workflow.config["runs"] = {"rank_dense": {"mode": "rank", "trunk": "dense"},
                               "expr_dense": {"mode": "expression", "trunk": "dense", "epochs": 3}}
    workflow.set_config({})
    workflow.run()
    results = workflow.path / "results"
    history = pd.read_csv(results / "runs/expr_dense/history.tsv", sep="\t")
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    dense = json.loads((results / "runs/rank_dense/metrics.json").read_text())
    assert set(dense["test"]) == set(MODES["rank"].summary_columns) and dense["model_config"]["trunk"] == "dense"
    for name in ("rank_dense", "expr_dense"):
        emb = pd.read_parquet(results / f"runs/{name}/embeddings_test.parquet")
        genes = pd.read_parquet(results / f"runs/{name}/gene_embeddings.parquet")
        assert emb.shape[1] == 1 + 256 and len(genes) == DEFAULTS["data"]["n_genes"]  # sample id + dense_width columns
    summary = pd.read_csv(results / "summary.tsv", sep="\t").set_index("name")
    assert {"rank_dense", "expr_dense", "gaussian_positions"} <= set(summary.index)
