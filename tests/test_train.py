"""Training on tiny data on the CPU: learning, masking, schedules, determinism, resume."""

import math

import h5py
import numpy as np
import pytest
import torch

from conftest import defaults
from l1kformer.gene_order import rank_genes
from l1kformer.mask import make_mask
from l1kformer.model import L1kFormer, build_model, positions_mask
from l1kformer.settings import ModelConfig, split_settings
from l1kformer.split import split_rows
from l1kformer.tasks import get_task
from l1kformer.train import final_model, lr_at, mask_ratio_at, random_positions, train

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
    # position_prior 1: the default's smoothing (8 positions of 978) would flatten 16 genes' table
    return defaults("train", **{"mode": mode, "n_genes": N_GENES, "position_prior": 1.0, "position_prior_below": None, "d_model": 32, "n_layers": 2, "n_heads": 2,
                                "d_ff": 64, "epochs": 4, "batch_size": 32, "lr": 3e-3, "warmup_steps": 5,
                                "mask_start": 0.25, "mask_end": 0.25, "patience": 10, "window_rows": 128, **extra})


def train_config(**extra):
    return split_settings(settings("rank", **extra))[1]


def model_config(mode, **extra):
    return ModelConfig(**{"mode": mode, "n_genes": N_GENES, "trunk": "transformer", "value_encoder": "linear",
                          "attn_bias": "none", "rank_view": "sequence", "position_prior": None, "d_model": 16, "n_layers": 1,
                          "n_heads": 2, "d_ff": 32, "dense_width": 32, "dense_depth": 1, "dropout": 0.0, **extra})


def loss_of(model, inputs, index, targets, hide=None):
    """(outputs, the task's loss against ``targets`` at ``index``), as a training step computes them."""
    return get_task(model.cfg.mode).masked_loss(model, inputs, index, targets, hide)


def baseline_on_val(tiny_data, mode):
    """What a model must beat on the same val mask: the constrained top-1 of the train split's position
    prior (rank), or the standardised MSE of the train split's gene means (expression, as val_loss)."""
    from l1kformer.metrics_rank import PositionTable, score_table_block

    d, split, mask = tiny_data
    rows, pos = mask["val"]
    if mode == "rank":
        with h5py.File(d / "ranks.h5", "r") as h5:
            ranks = h5["ranks"][:].astype(np.int64)
        counts = np.stack([np.bincount(ranks[split["train"], p], minlength=N_GENES) for p in range(N_GENES)])
        table = PositionTable(np.log((counts + 1) / (counts + 1).sum(1, keepdims=True)))
        return float(score_table_block(table, pos, np.take_along_axis(ranks[rows], pos, 1))["c_top1"].mean())
    with h5py.File(d / "expression.h5", "r") as h5:
        x = h5["expression"][:].astype(np.float64)
    z = (x[rows] - x[split["train"]].mean(0)) / x[split["train"]].std(0)
    return float((np.take_along_axis(z, pos, 1) ** 2).mean())


LEARN_EPOCHS = {"rank": 16, "expression": 6}  # what a tiny model needs to clear the margin below (rank: 12 before its head started from the prior)


def assert_beats_baseline(h, tiny_data, mode):
    """The last epoch beats the baseline on the same val mask by a margin."""
    ref = baseline_on_val(tiny_data, mode)
    if mode == "rank":
        assert h[-1]["val_top1"] > ref + 0.05, (ref, h[-1])  # the prior: 0.59; with the head starting from it, 12 epochs give 0.63-0.68, 16 clear it
    else:
        assert h[-1]["val_loss"] < 0.5 * ref, (ref, h[-1])  # gene means: 1.33; 6 epochs give 0.51


def run(tiny_data, mode, tmp_path, name="ckpt.pt", **kw):
    d, split, mask = tiny_data
    data = d / ("ranks.h5" if mode == "rank" else "expression.h5")
    kw.setdefault("log", lambda m: None)
    return train(settings(mode, **kw.pop("extra", {})), data, split, mask["val"], tmp_path / name,
                 progress=False, **kw)


@pytest.mark.parametrize("mode", ["rank", "expression"])
def test_training_loss_falls(tiny_data, tmp_path, mode):
    torch.set_num_threads(1)
    _, state = run(tiny_data, mode, tmp_path, extra={"epochs": LEARN_EPOCHS[mode]})
    h = state["history"]
    assert h[-1]["train_loss"] < 0.8 * h[0]["train_loss"], h
    assert_beats_baseline(h, tiny_data, mode)


@pytest.mark.parametrize("mode", ["rank", "expression"])
def test_loss_ignores_unmasked_positions(mode):
    torch.manual_seed(0)
    model = L1kFormer(model_config(mode))
    index = random_positions(4, N_GENES, 0.25, torch.Generator().manual_seed(1), "cpu")
    masked = positions_mask(torch.zeros(4, N_GENES), index)
    if mode == "rank":
        x = torch.stack([torch.randperm(N_GENES) for _ in range(4)])
        inputs = x.masked_fill(masked, N_GENES)
        other = torch.where(masked, x, (x + 1) % N_GENES)
    else:
        x = torch.randn(4, N_GENES)
        inputs = x
        other = torch.where(masked, x, x + 5.0)
    out, loss = loss_of(model, inputs, index, x)
    out2, loss2 = loss_of(model, inputs, index, other)
    assert torch.equal(loss, loss2)
    assert out.shape[0] == int(masked.sum()) == index.numel()  # the head runs at masked positions only
    changed = torch.where(masked, x + 1 if mode == "expression" else (x + 1) % N_GENES, x)
    assert not torch.equal(loss, loss_of(model, inputs, index, changed)[1])



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
    task = get_task("rank")
    corrupted, _ = task.corrupt(x, masked, cfg, N_GENES, gen)
    for inputs in (task.mask_inputs(x, masked, N_GENES), corrupted):
        out, loss = loss_of(model, inputs, index, x)
        assert torch.isfinite(loss)
        out = out.view(5, index.shape[1], N_GENES)
        for b in range(5):
            missing = set(x[b, index[b]].tolist())
            low = {g for g in range(N_GENES) if bool((out[b, :, g] < -1e3).all())}
            assert low == set(range(N_GENES)) - missing
    assert ((corrupted != N_GENES) & masked).any()  # random and kept genes were shown


def test_expression_mask_does_not_leak_the_value():
    torch.manual_seed(0)
    model = L1kFormer(model_config("expression"))
    index = torch.full((2, 1), 3)
    x = torch.randn(2, N_GENES)
    y = x.clone()
    y[:, 3] = 100.0  # the hidden value must not reach the prediction
    assert torch.equal(model(x, index), model(y, index))


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
    assert torch.equal(model(x, masked), rebuilt(x, masked))


def test_old_model_files_load_and_removed_options_are_refused(tiny_data, tmp_path):
    """A model file written before attn_bias, rank_view and position_prior existed, with the removed
    options at their off values, rebuilds to the same model; one that used a removed option is refused,
    naming the file."""
    from l1kformer.errors import InputError
    from l1kformer.inference import load_model

    old_settings = {"epochs": 1, "attn_bias": "none", "rank_view": "sequence", "position_prior": None}
    model, state = run(tiny_data, "rank", tmp_path, extra=old_settings)
    saved = final_model(model, state, settings("rank", **old_settings))
    old = {k: v for k, v in saved["model_config"].items() if k not in old_settings}
    weights = {k.replace("head.proj.", "head."): v for k, v in saved["state_dict"].items()}  # the old head's names
    torch.save({**saved, "state_dict": weights, "model_config": {**old, "n_registers": 0, "profile_token": False,
                                                                 "rank_values": False}}, tmp_path / "old.pt")
    rebuilt, _ = load_model(tmp_path / "old.pt")
    assert rebuilt.cfg == model.cfg
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), model.state_dict().values()))
    for key, value in (("n_registers", 2), ("profile_token", True), ("rank_values", True),
                       ("value_encoder", "soft_bins")):
        torch.save({**saved, "model_config": {**old, key: value}}, tmp_path / "removed.pt")
        with pytest.raises(InputError, match=f"removed.pt: it was trained with {key}.*f0f6d25"):
            load_model(tmp_path / "removed.pt")


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


@pytest.mark.parametrize("mode,extra", [("rank", {"rank_view": "genes"}), ("rank", {"attn_bias": "genes"}),
                                        ("rank", {"rank_view": "genes", "value_encoder": "gene_linear"}),
                                        ("expression", {"attn_bias": "genes"}),
                                        ("expression", {"value_encoder": "gene_linear"})])
def test_model_variants_learn(tiny_data, tmp_path, mode, extra):
    torch.set_num_threads(1)
    _, state = run(tiny_data, mode, tmp_path, extra={"epochs": LEARN_EPOCHS[mode], **extra})
    assert_beats_baseline(state["history"], tiny_data, mode)


def test_rank_gene_view_ignores_what_the_hidden_positions_hold():
    """rank_view genes: a token per gene with its visible rank position; the hidden positions show
    nothing, so BERT's [MASK], random or kept tokens there give the same outputs, visible genes are
    ruled out, and the loss is finite and trains the position head."""
    from l1kformer.layers import shown_genes

    torch.manual_seed(0)
    model = L1kFormer(model_config("rank", rank_view="genes", attn_bias="genes"))
    task = get_task("rank")
    gen = torch.Generator().manual_seed(3)
    x = torch.stack([torch.randperm(N_GENES, generator=gen) for _ in range(5)])
    index = random_positions(5, N_GENES, 0.25, gen, "cpu")
    masked = positions_mask(x, index)
    cfg = type("Cfg", (), {"mask_replace": 0.4, "mask_random": 0.3})()
    corrupted, _ = task.corrupt(x, masked, cfg, N_GENES, gen)
    out, loss = loss_of(model, task.mask_inputs(x, masked, N_GENES), index, x)
    torch.testing.assert_close(out, model(corrupted, index))
    torch.testing.assert_close(out, model(x, index))  # every hidden position keeps its true gene
    assert torch.isfinite(loss)
    shown = shown_genes(x.masked_fill(masked, N_GENES), N_GENES)  # the genes at unmasked positions
    assert shown.sum() == 5 * (N_GENES - index.shape[1])
    assert (out.view(5, -1, N_GENES).masked_select(shown.unsqueeze(1).expand(-1, index.shape[1], -1)) <= -1e3).all()
    loss.backward()
    assert model.head.proj.weight.grad.abs().sum() > 0 and model.encoder.mask_emb.grad.abs().sum() > 0


# --- the position prior of the rank heads -------------------------------------------------------------

@pytest.mark.parametrize("trunk,view", [("transformer", "genes"), ("transformer", "sequence"), ("dense", "genes")])
def test_an_untrained_rank_model_scores_as_its_position_prior(trunk, view):
    """Before training, every rank head's distribution over the missing genes at a masked position is
    the prior's (so a model can only improve on the position_frequency_smoothed baseline by learning);
    after one optimiser step it is not."""
    torch.manual_seed(0)
    model = build_model(model_config("rank", trunk=trunk, rank_view=view, position_prior=1.0))
    prior = np.log(np.random.default_rng(0).dirichlet(np.ones(N_GENES), size=N_GENES))
    model.set_position_prior(prior)
    x = torch.stack([torch.randperm(N_GENES) for _ in range(5)])
    index = random_positions(5, N_GENES, 0.25, torch.Generator().manual_seed(1), "cpu")
    task = get_task("rank")
    inputs = task.mask_inputs(x, positions_mask(x, index), N_GENES)

    allowed = model(inputs, index).detach() > -1e3  # the missing genes (the shown ones are ruled out)
    assert allowed.sum() == 5 * 4 * 4  # 4 masked positions, 4 missing genes

    def excess():  # log-probabilities over the missing genes minus the prior's, at every masked position
        out = model(inputs, index).detach().double()
        p = torch.from_numpy(prior)[index.reshape(-1)]
        logp = torch.where(allowed, out, -torch.inf).log_softmax(-1)
        return (logp - torch.where(allowed, p, -torch.inf).log_softmax(-1))[allowed]

    assert excess().abs().max() < 1e-5
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    out, loss = loss_of(model, inputs, index, x)
    loss.backward()
    opt.step()
    assert excess().abs().max() > 1e-3  # the head learns on top of it


def test_training_stores_the_train_splits_smoothed_position_frequencies(tiny_data, tmp_path):
    from scipy.ndimage import gaussian_filter1d

    model, _ = run(tiny_data, "rank", tmp_path, extra={"epochs": 1, "position_prior": 1.0})
    d, split, _ = tiny_data
    with h5py.File(d / "ranks.h5", "r") as h5:
        ranks = h5["ranks"][:][split["train"]]
    counts = np.array([np.bincount(ranks[:, p], minlength=N_GENES) for p in range(N_GENES)], dtype=np.float64)
    smooth = gaussian_filter1d(counts, 1.0, axis=0, mode="nearest")
    expected = np.log((smooth + 0.5) / (smooth.sum(1, keepdims=True) + 0.5 * N_GENES))
    np.testing.assert_allclose(model.head.log_prior.numpy(), expected, rtol=1e-6)
    assert model.head.log_prior.shape == (N_GENES, N_GENES)  # positions x genes, kept in the model file
    assert "head.log_prior" in model.state_dict()


@pytest.mark.parametrize("below, has_prior", [(10, False), (100, True), (None, True)])
def test_the_prior_is_used_only_while_profiles_per_gene_are_few(tiny_data, tmp_path, below, has_prior):
    """384 train profiles of 16 genes: 24 per gene. position_prior_below 10 drops the prior, and the model
    and its file say so; 100 or null keep it."""
    lines = []
    model, state = run(tiny_data, "rank", tmp_path, extra={"epochs": 1, "position_prior_below": below},
                       log=lines.append)
    assert (model.cfg.position_prior is not None) == has_prior
    assert (final_model(model, state, settings("rank"))["model_config"]["position_prior"] is not None) == has_prior
    assert ("head.log_prior" in model.state_dict()) == has_prior
    assert any(line.startswith("position prior off: 24.0 training profiles per gene") for line in lines) != has_prior
