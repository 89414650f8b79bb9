"""Training on tiny data on the CPU: learning, masking, schedules, determinism, resume."""

import math

import h5py
import numpy as np
import pytest
import torch

from conftest import defaults
from l1kformer.mask import make_mask
from l1kformer.model import L1kFormer, ModelConfig, build_model
from l1kformer.ranking import rank_genes
from l1kformer.split import split_rows
from l1kformer.model import positions_mask
from l1kformer.train import final_model, lr_at, mask_ratio_at, random_positions, split_settings, train

N_GENES = 16


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("tiny"))


def make_tiny_data(d):
    """512 profiles x 16 genes with strong co-expression (two factors), as expression and ranks."""
    rng = np.random.default_rng(0)
    load = rng.normal(0, 1.0, (N_GENES, 2))
    x = 8 + np.arange(N_GENES) * 0.3 + rng.normal(size=(512, 2)) @ load.T + rng.normal(0, 0.2, (512, N_GENES))
    x = x.astype(np.float32)
    with h5py.File(d / "expression.h5", "w") as h5:
        h5.create_dataset("expression", data=x, chunks=(64, N_GENES))
    with h5py.File(d / "ranks.h5", "w") as h5:
        h5.create_dataset("ranks", data=rank_genes(x), chunks=(64, N_GENES))
    split = split_rows(512, {"train": 0.75, "val": 0.125, "test": 0.125}, seed=0)
    mask = make_mask(split, N_GENES, 0.25, seed=0)
    return d, split, mask


def settings(mode, **extra):
    return defaults("train", **{"mode": mode, "n_genes": N_GENES, "d_model": 32, "n_layers": 2, "n_heads": 2,
                                "d_ff": 64, "epochs": 4, "batch_size": 32, "lr": 3e-3, "warmup_steps": 5,
                                "mask_start": 0.25, "mask_end": 0.25, "patience": 10, "window_rows": 128, **extra})


def train_config(**extra):
    return split_settings(settings("rank", **extra))[1]


def model_config(mode, **extra):
    return ModelConfig(**{"mode": mode, "n_genes": N_GENES, "trunk": "transformer", "value_encoder": "linear",
                          "d_model": 16, "n_layers": 1,
                          "n_heads": 2, "d_ff": 32, "dense_width": 32, "dense_depth": 1, "dropout": 0.0, **extra})


def run(tiny_data, mode, tmp_path, name="ckpt.pt", **kw):
    d, split, mask = tiny_data
    data = d / ("ranks.h5" if mode == "rank" and not kw.get("extra", {}).get("rank_values") else "expression.h5")
    return train(settings(mode, **kw.pop("extra", {})), data, split, mask["val"], tmp_path / name,
                 log=lambda m: None, progress=False, **kw)


@pytest.mark.parametrize("mode", ["rank", "expression"])
def test_training_loss_falls(tiny_data, tmp_path, mode):
    torch.set_num_threads(1)
    _, state = run(tiny_data, mode, tmp_path, extra={"epochs": 6})
    h = state["history"]
    assert h[-1]["train_loss"] < 0.8 * h[0]["train_loss"], h
    assert h[-1]["val_loss"] < h[0]["val_loss"], h
    if mode == "rank":
        assert h[-1]["val_top1"] > 2.0 / N_GENES  # well above chance
    else:
        assert h[-1]["val_pearson"] > 0.5


@pytest.mark.parametrize("mode", ["rank", "expression"])
def test_loss_ignores_unmasked_positions(mode):
    torch.manual_seed(0)
    model = L1kFormer(model_config(mode))
    index = random_positions(4, N_GENES, 0.25, torch.Generator().manual_seed(1), "cpu")
    masked = positions_mask(torch.zeros(4, N_GENES), index)
    if mode == "rank":
        x = torch.stack([torch.randperm(N_GENES) for _ in range(4)])
        inputs = x.masked_fill(masked, model.encoder.mask_id)
        other = torch.where(masked, x, (x + 1) % N_GENES)
    else:
        x = torch.randn(4, N_GENES)
        inputs = x
        other = torch.where(masked, x, x + 5.0)
    out, loss = model(inputs, index, x)
    out2, loss2 = model(inputs, index, other)
    assert torch.equal(loss, loss2)
    assert out.shape[0] == int(masked.sum()) == index.numel()  # the head runs at masked positions only
    changed = torch.where(masked, x + 1 if mode == "expression" else (x + 1) % N_GENES, x)
    assert not torch.equal(loss, model(inputs, index, changed)[1])



def test_rank_scores_only_the_missing_genes():
    """A gene shown at an unmasked position cannot be the answer at a masked one: the transformer never
    scores it there (in training, under the BERT corruption of the masked positions, and in evaluation),
    and the true gene of every masked position stays a candidate, so the loss is finite."""
    torch.manual_seed(0)
    model = L1kFormer(model_config("rank"))
    gen = torch.Generator().manual_seed(3)
    x = torch.stack([torch.randperm(N_GENES, generator=gen) for _ in range(5)])
    index = random_positions(5, N_GENES, 0.25, gen, "cpu")
    masked = positions_mask(x, index)
    cfg = type("Cfg", (), {"mask_replace": 0.4, "mask_random": 0.3})()  # every kind of corruption occurs
    corrupted, _ = model.task.corrupt(x, masked, cfg, N_GENES, gen)
    for inputs in (model.task.mask_inputs(model, x, masked), corrupted):
        out, loss = model(inputs, index, x)
        assert torch.isfinite(loss)
        out = out.view(5, index.shape[1], N_GENES)
        for b in range(5):
            missing = set(x[b, index[b]].tolist())
            low = {g for g in range(N_GENES) if bool((out[b, :, g] < -1e3).all())}
            assert low == set(range(N_GENES)) - missing
    assert ((corrupted != model.encoder.mask_id) & masked).any()  # random and kept genes were shown


def test_expression_mask_does_not_leak_the_value():
    torch.manual_seed(0)
    model = L1kFormer(model_config("expression"))
    index = torch.full((2, 1), 3)
    x = torch.randn(2, N_GENES)
    y = x.clone()
    y[:, 3] = 100.0  # the hidden value must not reach the prediction
    assert torch.equal(model(x, index)[0], model(y, index)[0])


def test_schedules_at_chosen_steps():
    cfg = train_config(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, 110, cfg) == pytest.approx(1e-4)
    assert lr_at(9, 110, cfg) == pytest.approx(1e-3)
    assert lr_at(10, 110, cfg) == pytest.approx(1e-3)
    assert lr_at(60, 110, cfg) == pytest.approx(1e-4 + 0.5 * 9e-4)
    assert lr_at(110, 110, cfg) == pytest.approx(1e-4)
    lin = train_config(mask_schedule="linear", mask_start=0.3, mask_end=0.1)
    cos = train_config(mask_schedule="cosine", mask_start=0.3, mask_end=0.1)
    const = train_config(mask_schedule="constant", mask_start=0.2)
    assert mask_ratio_at(0.0, lin) == pytest.approx(0.3) and mask_ratio_at(0.5, lin) == pytest.approx(0.2)
    assert mask_ratio_at(1.0, lin) == pytest.approx(0.1)
    assert mask_ratio_at(0.5, cos) == pytest.approx(0.2) and mask_ratio_at(0.25, cos) == pytest.approx(
        0.1 + 0.1 * (1 + math.cos(math.pi / 4)))
    assert mask_ratio_at(0.7, const) == 0.2


def test_dynamic_masks_differ_by_epoch_and_count_exactly():
    a = random_positions(8, 978, 0.15, torch.Generator().manual_seed(1), "cpu")
    b = random_positions(8, 978, 0.15, torch.Generator().manual_seed(2), "cpu")
    assert a.shape == (8, 147) and not torch.equal(a, b)
    assert (a.diff(dim=1) > 0).all()  # sorted, no position twice


def test_same_config_same_trajectory(tiny_data, tmp_path):
    torch.set_num_threads(1)
    _, s1 = run(tiny_data, "rank", tmp_path, name="a.pt", extra={"dropout": 0.1})
    _, s2 = run(tiny_data, "rank", tmp_path, name="b.pt", extra={"dropout": 0.1})
    key = ["train_loss", "val_loss", "val_top1", "val_mean_rank_error"]
    assert [[r[k] for k in key] for r in s1["history"]] == [[r[k] for k in key] for r in s2["history"]]


class Killed(Exception):
    pass


@pytest.mark.parametrize("mode", ["rank", "expression"])
def test_resume_ends_with_the_same_weights(tiny_data, tmp_path, mode):
    torch.set_num_threads(1)
    extra = {"epochs": 3, "dropout": 0.1}
    full_model, full = run(tiny_data, mode, tmp_path, name="full.pt", extra=extra, job_id="x")

    def stop(epoch):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        run(tiny_data, mode, tmp_path, name="part.pt", extra=extra, job_id="x", on_epoch_end=stop)
    resumed_model, resumed = run(tiny_data, mode, tmp_path, name="part.pt", extra=extra, job_id="x")
    assert len(resumed["history"]) == 3
    for k, v in full_model.state_dict().items():
        assert torch.equal(v, resumed_model.state_dict()[k]), k
    assert [r["val_loss"] for r in full["history"]] == [r["val_loss"] for r in resumed["history"]]
    # a checkpoint of other settings is not resumed
    _, fresh = run(tiny_data, mode, tmp_path, name="part.pt", extra=extra, job_id="other")
    assert fresh["history"][0]["train_loss"] == full["history"][0]["train_loss"]


def test_model_file_rebuilds_without_config(tiny_data, tmp_path):
    model, state = run(tiny_data, "expression", tmp_path, extra={"epochs": 1})
    path = tmp_path / "model.pt"
    torch.save(final_model(model, state, settings("expression", epochs=1)), path)
    ckpt = torch.load(path, weights_only=False)
    rebuilt = build_model(ckpt["model_config"])
    rebuilt.load_state_dict(ckpt["state_dict"])
    assert torch.equal(rebuilt.encoder.value_mean, model.encoder.value_mean)  # standardisation travels with the model
    x = torch.randn(2, N_GENES)
    masked = torch.arange(4).expand(2, 4)
    model.load_state_dict(ckpt["state_dict"])
    model.eval(), rebuilt.eval()
    assert torch.equal(model(x, masked)[0], rebuilt(x, masked)[0])


@pytest.mark.parametrize("encoder", ["mlp", "soft_bins", "gene_linear"])
def test_value_encoders_learn(tiny_data, tmp_path, encoder):
    torch.set_num_threads(1)
    _, state = run(tiny_data, "expression", tmp_path, extra={"epochs": 6, "value_encoder": encoder})
    h = state["history"]
    assert h[-1]["val_loss"] < 0.95 * h[0]["val_loss"] and h[-1]["val_pearson"] > 0.5, h


@pytest.mark.parametrize("mode", ["rank", "expression"])
def test_gene_pair_bias_steers_attention_from_gene_to_gene(mode):
    """attn_bias genes: a large bias from gene a to gene b makes a's token read b's, wherever the two
    sit (rank mode: the tokens' genes, not their positions, index the table), and [MASK] has its row."""
    from l1kformer.model import SelfAttention

    torch.manual_seed(0)
    cfg = model_config(mode, attn_bias="genes")
    attn = SelfAttention(cfg)
    with torch.no_grad():
        attn.qkv.weight[: 2 * cfg.d_model] = 0.0  # no content attention: the bias alone decides
    h = torch.randn(3, N_GENES, cfg.d_model)
    if mode == "expression":
        genes = torch.arange(N_GENES)  # position i is gene i, for every profile
    else:
        genes = torch.stack([torch.randperm(N_GENES) for _ in range(3)])
        genes[genes == 0] = N_GENES  # gene 0 hidden: a [MASK] token
    a, b = (2, 5) if mode == "expression" else (N_GENES, 7)
    with torch.no_grad():
        attn.pair_bias[:, a, b] = 50.0
    y = attn(h, genes)
    reads = attn.proj(h @ attn.qkv.weight[2 * cfg.d_model:].T)  # what each token would pass on alone
    for row in range(3):
        qa = a if mode == "expression" else int((genes[row] == a).nonzero())
        kb = b if mode == "expression" else int((genes[row] == b).nonzero())
        torch.testing.assert_close(y[row, qa], reads[row, kb], rtol=1e-4, atol=1e-5)
        assert not torch.allclose(y[row, (qa + 1) % N_GENES], reads[row, kb], atol=1e-3)


@pytest.mark.parametrize("rank_values", [False, True])
def test_rank_gene_view_ignores_what_the_hidden_positions_hold(rank_values):
    """rank_view genes: a token per gene with its visible rank position (and with rank_values its
    value); the hidden positions show nothing, so BERT's [MASK], random or kept tokens there, and any
    value there, give the same outputs, visible genes are ruled out, and the loss is finite and trains
    the position head. A visible gene's value does reach the outputs."""
    from l1kformer.tasks import rank_ids, shown_genes

    torch.manual_seed(0)
    model = L1kFormer(model_config("rank", rank_view="genes", attn_bias="genes", rank_values=rank_values))
    gen = torch.Generator().manual_seed(3)
    x = torch.stack([torch.randperm(N_GENES, generator=gen) for _ in range(5)])
    if rank_values:  # (gene id, value at that position)
        x = torch.stack([x.float(), torch.randn(x.shape, generator=gen).sort(1, descending=True).values], -1)
    index = random_positions(5, N_GENES, 0.25, gen, "cpu")
    masked = positions_mask(x, index)
    cfg = type("Cfg", (), {"mask_replace": 0.4, "mask_random": 0.3})()
    corrupted, _ = model.task.corrupt(x, masked, cfg, N_GENES, gen)
    out, loss = model(model.task.mask_inputs(model, x, masked), index, x)
    out2, _ = model(corrupted, index, x)
    out3, _ = model(x, index, x)  # every hidden position keeps its true gene
    torch.testing.assert_close(out, out2)
    torch.testing.assert_close(out, out3)
    if rank_values:
        other = x.clone()
        other[..., 1] = torch.where(masked, 100.0, x[..., 1])  # other values at the hidden positions
        torch.testing.assert_close(model(other, index, x)[0], out)
        other[..., 1] = torch.where(masked, x[..., 1], x[..., 1] + 1.0)  # and at the visible ones
        assert not torch.allclose(model(other, index, x)[0], out, atol=1e-3)
    assert torch.isfinite(loss)
    x = rank_ids(x)
    shown = shown_genes(x.masked_fill(masked, N_GENES), N_GENES)  # the genes at unmasked positions
    assert shown.sum() == 5 * (N_GENES - index.shape[1])
    assert (out.view(5, -1, N_GENES).masked_select(shown.unsqueeze(1).expand(-1, index.shape[1], -1)) <= -1e3).all()
    loss.backward()
    assert model.head.proj.weight.grad.abs().sum() > 0 and model.encoder.mask_emb.grad.abs().sum() > 0


@pytest.mark.parametrize("mode,extra", [("rank", {"rank_view": "genes"}), ("rank", {"attn_bias": "genes"}),
                                        ("rank", {"rank_view": "genes", "rank_values": True}),
                                        ("rank", {"rank_view": "genes", "n_registers": 1, "profile_token": True}),
                                        ("expression", {"n_registers": 1, "profile_token": True}),
                                        ("expression", {"attn_bias": "genes", "n_registers": 2})])
def test_model_variants_learn(tiny_data, tmp_path, mode, extra):
    torch.set_num_threads(1)
    _, state = run(tiny_data, mode, tmp_path, extra={"epochs": 6, **extra})
    h = state["history"]
    assert h[-1]["val_loss"] < 0.95 * h[0]["val_loss"], h
    if mode == "rank":
        assert h[-1]["val_top1"] > 2.0 / N_GENES
    else:
        assert h[-1]["val_pearson"] > 0.5


def test_rank_values_inputs_are_the_rank_steps_ranks_with_their_values(tmp_path):
    """A rank_values run reads expression.h5 and ranks it itself: its gene ids are the rank step's file,
    ties included (values rounded to one decimal), and each position carries its gene's value,
    standardised with the train split's per-gene mean and sd."""
    from l1kformer.rank import rank_file

    rng = np.random.default_rng(1)
    x = np.round(rng.normal(8, 1, (40, N_GENES)), 1).astype(np.float32)
    with h5py.File(tmp_path / "expression.h5", "w") as h5:
        h5.create_dataset("expression", data=x)
    rank_file(tmp_path / "expression.h5", tmp_path / "ranks.h5", log=lambda m: None)
    with h5py.File(tmp_path / "ranks.h5", "r") as h5:
        ranks = h5["ranks"][:].astype(np.int64)
    model = L1kFormer(model_config("rank", rank_view="genes", rank_values=True))
    assert model.task.dataset_for(True) == "expression" and model.task.dataset_for(False) == "ranks"
    mean, sd = x.mean(0).astype(np.float64), x.std(0).astype(np.float64)
    model.task.prepare(model, lambda: (mean, sd))
    inputs = model.task.to_inputs(model, x, "cpu")
    assert (inputs[..., 0].long().numpy() == ranks).all()
    expected = (np.take_along_axis(x, ranks, 1) - mean[ranks]) / sd[ranks]
    np.testing.assert_allclose(inputs[..., 1].numpy(), expected, rtol=1e-5, atol=1e-5)
    index = torch.tensor([[0, 3, 7, 9]]).expand(40, -1)
    assert (model.task.targets(inputs, index).numpy() == np.take_along_axis(ranks, index.numpy(), 1).ravel()).all()


def test_rank_values_only_with_the_rank_genes_view():
    for extra in ({"rank_view": "sequence"}, {"trunk": "dense", "rank_view": "genes"}):
        with pytest.raises(ValueError, match="rank_values needs"):
            model_config("rank", rank_values=True, **extra)
    with pytest.raises(ValueError, match="rank_values needs"):
        model_config("expression", rank_values=True, rank_view="genes")


def test_a_rank_values_model_is_scored_on_the_rank_steps_genes(tiny_data, tmp_path):
    """Rebuilt from its file, a rank_values model is evaluated on expression.h5 ranked as the rank step
    ranks it: the true genes of its predictions are those of ranks.h5 at the test mask."""
    import pandas as pd

    from l1kformer.evaluate import evaluate
    from l1kformer.inference import load_model

    torch.set_num_threads(1)
    d, split, mask = tiny_data
    s = settings("rank", rank_view="genes", rank_values=True, epochs=6)
    model, state = train(s, d / "expression.h5", split, mask["val"], tmp_path / "ckpt.pt", log=lambda m: None,
                         progress=False)
    torch.save(final_model(model, state, s), tmp_path / "model.pt")
    rebuilt, _ = load_model(tmp_path / "model.pt")
    metrics = evaluate(rebuilt, d / "expression.h5", *mask["test"], tmp_path / "pred.parquet")
    rows, positions = mask["test"]
    with h5py.File(d / "ranks.h5", "r") as h5:
        true = np.take_along_axis(h5["ranks"][:][rows], positions.astype(np.int64), 1)
    assert (pd.read_parquet(tmp_path / "pred.parquet")["true_gene"].to_numpy() == true.ravel()).all()
    k = positions.shape[1]
    assert metrics["c_mean_rank_error"] < 0.5 * (k - 1) / 2, metrics  # guessing among the k missing: (k - 1) / 2


@pytest.mark.parametrize("mode", ["rank", "expression"])
def test_the_profile_token_reads_the_visible_profile_only(mode):
    """profile_token: the first register carries an MLP summary of the masked profile; what the hidden
    positions hold never reaches the outputs through it, and it gets gradient."""
    torch.manual_seed(0)
    extra = {"rank_view": "genes"} if mode == "rank" else {}
    model = L1kFormer(model_config(mode, n_registers=1, profile_token=True, **extra))
    gen = torch.Generator().manual_seed(4)
    if mode == "rank":
        x = torch.stack([torch.randperm(N_GENES, generator=gen) for _ in range(5)])
    else:
        x = torch.randn(5, N_GENES, generator=gen)
    index = random_positions(5, N_GENES, 0.25, gen, "cpu")
    masked = positions_mask(x, index)
    out, loss = model(model.task.mask_inputs(model, x, masked), index, x)
    other = x.flip(1) if mode == "rank" else torch.where(masked, 50.0, x)
    other = torch.where(masked, other, x)  # the same visible profile, other things at the hidden positions
    torch.testing.assert_close(model(other, index, x)[0], out)  # hide defaults to the masked positions
    loss.backward()
    assert model.profile[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="profile_token needs"):
        model_config(mode, profile_token=True, **extra)
