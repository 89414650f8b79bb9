"""The training step compiles to one graph (fixed-size masks, no boolean indexing, no host syncs) and the
compiled model computes what the eager one does."""

import pytest
import torch

from l1kformer.model import build_model, positions_mask
from l1kformer.tasks import get_task
from l1kformer.train import random_positions
from test_train import loss_of

pytestmark = pytest.mark.slow

N_GENES = 24


def tiny(mode, trunk, **extra):
    return build_model(dict({"mode": mode, "n_genes": N_GENES, "trunk": trunk, "value_encoder": "linear",
                             "attn_bias": "none", "rank_view": "sequence", "position_prior": None, "d_model": 16, "n_layers": 1, "n_heads": 2,
                             "d_ff": 32, "dense_width": 32, "dense_depth": 1, "dropout": 0.0}, **extra))


def batch(model, mode, gen):
    if mode == "rank":
        x = torch.stack([torch.randperm(N_GENES, generator=gen) for _ in range(6)])
    else:
        x = torch.randn(6, N_GENES, generator=gen)
    index = random_positions(6, N_GENES, 0.25, gen, "cpu")
    return x, index, get_task(mode).mask_inputs(x, positions_mask(x, index), N_GENES)


def loss_and_grads(model, inputs, index, x):
    model.zero_grad(set_to_none=True)
    out, loss = loss_of(model, inputs, index, x)
    loss.backward()
    return out.detach(), loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("mode,trunk,extra", [
    # every encoder and head once, the pair bias on both of its paths (shared genes, per-profile genes)
    ("expression", "transformer", {"attn_bias": "genes", "value_encoder": "gene_linear"}),
    ("rank", "transformer", {"attn_bias": "genes", "rank_view": "genes", "position_prior": 2.0}),
    ("rank", "transformer", {"attn_bias": "genes"}), ("rank", "dense", {}), ("expression", "dense", {})])
def test_compiled_model_matches_eager_in_one_graph(mode, trunk, extra):
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = tiny(mode, trunk, **extra)
    for p in model.parameters():  # a pair-bias table starts at zero: give it values to check
        if p.dim() == 3:
            torch.nn.init.normal_(p, 0.0, 0.5)
    x, index, inputs = batch(model, mode, torch.Generator().manual_seed(1))
    eager = loss_and_grads(model, inputs, index, x)
    compiled = torch.compile(model, fullgraph=True)  # fullgraph: a graph break is an error
    out = loss_and_grads(compiled, inputs, index, x)
    torch.testing.assert_close(out[0], eager[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[1], eager[1], rtol=1e-4, atol=1e-5)
    assert len(out[2]) == len(eager[2])
    for a, b in zip(out[2], eager[2]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_train_with_compile_follows_the_eager_run(tmp_path):
    """``train.compile: true`` through the real train(): a mask ratio that changes every step (so k
    changes) and a short last batch recompile without error, and the run follows the eager one."""
    from test_train import make_tiny_data, settings

    from l1kformer.train import train

    torch.set_num_threads(1)
    torch._dynamo.reset()
    d, split, mask = make_tiny_data(tmp_path)
    split = {**split, "train": split["train"][:300]}  # 300 = 9 batches of 32 and one of 12
    histories = {}
    for compiled in (False, True):
        s = settings("rank", epochs=2, mask_schedule="linear", mask_start=0.3, mask_end=0.2, compile=compiled)
        _, state = train(s, d / "ranks.h5", split, mask["val"], tmp_path / f"{compiled}.pt", log=lambda m: None,
                         progress=False)
        histories[compiled] = state["history"]
    for eager, comp in zip(histories[False], histories[True]):
        for key in ("train_loss", "val_loss", "val_mean_rank_error"):
            assert comp[key] == pytest.approx(eager[key], rel=2e-3), key
