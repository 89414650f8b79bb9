"""Downstream tasks: labels on the split, fine-tuning (frozen head, then everything), the baselines from
scratch, retrieval, and the one-line refusals."""

from dataclasses import asdict

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import defaults
from l1kformer.downstream import rank_positions, read_labels, task_labels, write_labels
from l1kformer.errors import InputError
from l1kformer.gene_order import rank_genes
from l1kformer.model import build_model
from l1kformer.settings import split_settings
from l1kformer.split import split_rows

N, GENES, CLASSES = 600, 16, 3
FINETUNE = {**defaults("downstream")["finetune"], "head_epochs": 20, "epochs": 2, "lr": 3e-3, "patience": 10}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """600 profiles x 16 genes in 3 classes whose means differ, as expression and ranks; the labels of
    a task on them, and the split."""
    d = tmp_path_factory.mktemp("downstream")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, CLASSES, N)
    centers = rng.normal(0, 1.5, (CLASSES, GENES))
    x = (8 + centers[labels] + rng.normal(0, 0.5, (N, GENES))).astype(np.float32)
    with h5py.File(d / "expression.h5", "w") as h5:
        h5.create_dataset("expression", data=x, chunks=(64, GENES))
    with h5py.File(d / "ranks.h5", "w") as h5:
        h5.create_dataset("ranks", data=rank_genes(x), chunks=(64, GENES))
    meta = pd.DataFrame({"sample_id": [f"s{i}" for i in range(N)], "cell_id": [f"C{k}" for k in labels],
                         "pert_type": np.where(np.arange(N) % 10 == 0, "ctl_vehicle", "trt_cp"),
                         "det_plate": [f"P{i % 6}" for i in range(N)]})
    split = split_rows(N, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=0)
    frame, classes = task_labels(meta, split, "cell_line", {"field": "cell_id"})
    write_labels(frame, classes, "cell_id", d / "labels.parquet")
    return d, meta, split


def model_file(d, mode, trunk="transformer", name=None, epochs=3):
    """A tiny model trained ``epochs`` epochs on the masked task (0: freshly initialised), written as a
    self-describing model file (cached per data set and settings)."""
    from l1kformer.mask import make_mask
    from l1kformer.train import final_model, train

    path = d / (name or f"{mode}_{trunk}_{epochs}.pt")
    if path.exists():
        return path
    settings = defaults("train", mode=mode, n_genes=GENES, trunk=trunk, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                        dense_width=32, dense_depth=1, position_prior=None, epochs=max(1, epochs), batch_size=32,
                        lr=3e-3, warmup_steps=5, mask_start=0.25, mask_end=0.25, window_rows=128, device="cpu")
    split = split_rows(N, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=0)
    if epochs:
        model, state = train(settings, d / ("expression.h5" if mode == "expression" else "ranks.h5"), split,
                             make_mask(split, GENES, 0.25, seed=0)["val"], d / f"{path.stem}.ckpt", log=lambda m: None)
        torch.save(final_model(model, state, settings), path)
    else:
        model_cfg, _ = split_settings(settings)
        torch.manual_seed(0)
        model = build_model(model_cfg)
        if mode == "expression":
            with h5py.File(d / "expression.h5") as h5:
                x = h5["expression"][()].astype(np.float64)
            model.set_train_stats(x.mean(0), x.std(0))
        torch.save({"model_config": asdict(model_cfg), "state_dict": model.state_dict()}, path)
    return path


def finetune(d, tmp_path, mode, trunk="transformer", start="pretrained", settings=None, readout="mean",
             labels="labels.parquet"):
    from l1kformer.finetune import run_finetune

    outs = tuple(tmp_path / f for f in ("metrics.json", "history.tsv", "predictions.parquet", "features.parquet"))
    data_path = d / ("expression.h5" if mode == "expression" else "ranks.h5")
    return run_finetune(model_file(d, mode, trunk), data_path, d / labels, settings or FINETUNE, start, readout,
                        outs, tmp_path / "checkpoint.pt", torch.device("cpu"), log=lambda m: None), outs


def majority_share(d, name="test"):
    frame, _ = read_labels(d / "labels.parquet")
    y = frame.loc[frame["set"] == name, "label"]
    return y.value_counts().max() / len(y)


@pytest.mark.parametrize("mode,trunk", [("expression", "transformer"), ("rank", "transformer"), ("expression", "dense")])
def test_a_fine_tuned_head_on_a_tiny_model_learns(data, tmp_path, mode, trunk):
    d, _, _ = data
    metrics, outs = finetune(d, tmp_path, mode, trunk)
    floor = majority_share(d)
    for variant, margin in (("embedding", 0.1), ("finetuned", 0.2)):
        assert metrics[variant]["test"]["accuracy"] > floor + margin, (variant, metrics[variant], floor)
    assert metrics["finetuned"]["val"]["accuracy"] >= metrics["embedding"]["val"]["accuracy"]  # phase 1 is its floor
    history = pd.read_csv(outs[1], sep="\t")
    assert set(history["phase"]) == {"frozen", "all"}
    features = pd.read_parquet(outs[3])
    assert features.shape == (metrics["finetuned"]["test"]["n_test"], 1 + 16 if trunk == "transformer" else 1 + 32)
    assert not (tmp_path / "checkpoint.pt").exists()
    assert sorted(metrics["probes"]) == ["0", "1"] if trunk == "transformer" else ["0", "1", "2"]
    assert metrics["probes"][max(metrics["probes"])]["test"] == metrics["embedding"]["test"]  # the last layer's


@pytest.mark.parametrize("readout", ["cls", "attention", "genes"])
def test_each_readout_trains_a_tiny_model_above_majority(data, tmp_path, readout):
    d, _, _ = data
    metrics, outs = finetune(d, tmp_path, "rank", readout=readout)
    floor = majority_share(d)
    assert metrics["readout"] == readout
    assert metrics["finetuned"]["test"]["accuracy"] > floor + 0.2, (metrics["finetuned"], floor)
    width = GENES * FINETUNE["readout_width"] if readout == "genes" else 16
    assert pd.read_parquet(outs[3]).shape[1] == 1 + width


def test_only_a_readout_that_sees_the_genes_separates_classes_that_differ_in_which_gene_is_where(data, tmp_path):
    """Two classes whose rank positions differ only in which genes sit high (class 0: gene 0 high, gene 1
    low; class 1 the reverse): the rank genes view's mean over gene tokens is the same vector for every
    profile at the input (a permutation of the same positions), so ``mean`` on a frozen fresh trunk
    cannot tell them apart, while ``genes`` reads each gene's position."""
    d, meta, split = data
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (N, GENES)).astype(np.float32)
    y = rng.integers(0, 2, N)
    x[:, 0] = np.where(y == 0, 5.0, -5.0)
    x[:, 1] = -x[:, 0]
    toy = d / "toy"
    toy.mkdir(exist_ok=True)
    with h5py.File(toy / "ranks.h5", "w") as h5:
        h5.create_dataset("ranks", data=rank_genes(x), chunks=(64, GENES))
    meta = meta.assign(klass=[f"k{v}" for v in y])
    frame, classes = task_labels(meta, split, "toy", {"field": "klass"})
    write_labels(frame, classes, "klass", toy / "labels.parquet")
    (toy / "rank_transformer_3.pt").write_bytes(model_file(d, "rank", epochs=0).read_bytes())  # a fresh trunk
    settings = {**FINETUNE, "epochs": 1}
    probes = {}
    for readout in ("mean", "genes"):
        (tmp_path / readout).mkdir()
        metrics, _ = finetune(toy, tmp_path / readout, "rank", settings=settings, readout=readout)
        probes[readout] = {k: p["test"]["accuracy"] for k, p in metrics["probes"].items()}
    floor = (frame.loc[frame["set"] == "test", "label"].value_counts().max() / (frame["set"] == "test").sum())
    assert min(probes["genes"].values()) > 0.95, probes
    assert probes["mean"]["0"] < floor + 0.1, (probes, floor)  # the input's mean: the same for every profile


def test_phase_one_leaves_the_trunk_unchanged_and_phase_two_moves_it(data):
    from l1kformer.classify import LabelledRows, fit
    from l1kformer.downstream import set_labels
    from l1kformer.finetune import frozen_phase
    from l1kformer.inference import load_model
    from l1kformer.model import FineTuned
    from l1kformer.tasks import get_task

    d, _, _ = data
    model, _ = load_model(model_file(d, "expression", name="frozen.pt"))
    net = FineTuned(model, CLASSES, 0.1, "genes")
    frame, _ = read_labels(d / "labels.parquet")
    sets = {s: LabelledRows(d / "expression.h5", "expression", *set_labels(frame, s), 32) for s in ("train", "val", "test")}
    to_inputs = lambda v: get_task("expression").to_inputs(model, v, "cpu")  # noqa: E731
    trunk0 = {k: v.clone() for k, v in model.state_dict().items()}
    head0 = net.out.weight.detach().clone()
    nullcontext = __import__("contextlib").nullcontext
    frozen_phase(net, sets, to_inputs, {**FINETUNE, "head_epochs": 3}, "cpu", nullcontext, log=lambda m: None)
    assert all(torch.equal(trunk0[k], v) for k, v in model.state_dict().items())
    assert not torch.equal(head0, net.out.weight)
    fit(net, net, list(zip(net.parameter_groups(), (1e-3, 1e-2))), sets["train"], sets["val"], to_inputs, {**FINETUNE, "epochs": 1}, "cpu",
        nullcontext, lambda m: None, "all")
    moved = [k for k, v in model.state_dict().items() if not torch.equal(trunk0[k], v)]
    assert any(k.startswith("blocks.") for k in moved) and not any(k.startswith("head.") for k in moved), moved


def test_from_scratch_starts_from_fresh_weights_and_keeps_the_buffers(data, tmp_path):
    from l1kformer.finetune import fresh_copy
    from l1kformer.inference import load_model

    d, _, _ = data
    model, _ = load_model(model_file(d, "expression", name="fresh.pt"))
    fresh = fresh_copy(model, seed=5)
    buffers = dict(model.named_buffers())
    assert buffers and all(torch.equal(buffers[k], v) for k, v in fresh.named_buffers())
    assert not torch.equal(model.blocks[0].attn.qkv.weight, fresh.blocks[0].attn.qkv.weight)
    metrics, _ = finetune(d, tmp_path, "expression", start="scratch")
    assert "embedding" not in metrics and metrics["finetuned"]["test"]["accuracy"] > majority_share(d)
    assert metrics["finetuned"]["best_epoch"] >= 1  # no phase 1 to keep


def test_a_killed_fine_tuning_job_resumes_to_the_same_result(data, tmp_path, monkeypatch):
    import l1kformer.finetune as ft

    d, _, _ = data
    settings = {**FINETUNE, "head_epochs": 4, "epochs": 3, "patience": 10}
    for name in ("whole", "killed"):
        (tmp_path / name).mkdir()
    whole, _ = finetune(d, tmp_path / "whole", "expression", settings=settings)
    real_fit = ft.fit

    def dying_fit(*args, **kwargs):  # the job dies once phase 2's first epoch is saved
        if args[10] == "all":
            save = args[12]

            def save_then_die(state):
                save(state)
                raise KeyboardInterrupt

            args = (*args[:12], save_then_die, *args[13:])
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(ft, "fit", dying_fit)
    with pytest.raises(KeyboardInterrupt):
        finetune(d, tmp_path / "killed", "expression", settings=settings)
    assert (tmp_path / "killed" / "checkpoint.pt").exists()
    monkeypatch.setattr(ft, "fit", real_fit)
    resumed, _ = finetune(d, tmp_path / "killed", "expression", settings=settings)
    assert resumed == whole


def test_baselines_from_scratch_beat_the_majority_class(data):
    from l1kformer.downstream_baselines import all_baselines

    d, _, _ = data
    frame, classes = read_labels(d / "labels.parquet")
    settings = {**defaults("downstream")["baselines"], "epochs": 15,
                "grid": {"width": [32], "dropout": [0.0], "lr": [3e-3], "weight_decay": [0.0, 1e-3]}}
    out = all_baselines({"rank": d / "ranks.h5", "expression": d / "expression.h5"}, frame, len(classes), settings,
                        "cpu", log=lambda m: None)
    assert set(out) == {"majority", "rank_logistic", "rank_mlp", "expression_logistic", "expression_mlp"}
    floor = out["majority"]["test"]["accuracy"]
    assert abs(floor - majority_share(d)) < 0.1
    for name in ("rank_logistic", "rank_mlp", "expression_logistic", "expression_mlp"):
        assert out[name]["test"]["accuracy"] > floor + 0.3, (name, out[name])
    assert out["expression_mlp"]["grid_point"]["weight_decay"] in (0.0, 1e-3)


def test_rank_positions_invert_the_ranking():
    x = np.random.default_rng(1).normal(size=(5, 9)).astype(np.float32)
    pos = rank_positions(rank_genes(x))
    order = np.argsort(-x, axis=1, kind="stable")
    for i in range(5):
        assert (np.argsort(pos[i]) == order[i]).all()
    assert abs(pos.mean()) < 1e-6 and abs(pos.std() - 1) < 0.15


def test_task_labels_count_classes_on_train_and_apply_the_filter(data):
    _, meta, split = data
    frame, classes = task_labels(meta, split, "t", {"field": "cell_id", "filter": {"pert_type": ["trt_cp"]}})
    assert classes == ["C0", "C1", "C2"]
    assert (meta["pert_type"].iloc[frame["row"]] == "trt_cp").all()
    train = frame[frame["set"] == "train"]
    assert set(train["row"]) <= set(split["train"])
    counts = frame[frame["set"] == "train"].assign(label=lambda f: meta["cell_id"].iloc[f["row"]].to_numpy())[
        "label"].value_counts()
    assert counts.nunique() == 3
    keep = int(counts.sort_values().iloc[1])  # drops the smallest class, from every set
    frame2, classes2 = task_labels(meta, split, "t", {"field": "cell_id", "filter": {"pert_type": ["trt_cp"]},
                                                      "min_count": keep})
    assert classes2 == sorted(counts[counts >= keep].index)
    assert set(meta["cell_id"].iloc[frame2["row"]]) == set(classes2)


@pytest.mark.parametrize("settings,group_by,problem", [
    ({"field": "plate_name"}, None, "downstream.tasks.t: no sample field 'plate_name'"),
    ({"field": "cell_id", "filter": {"qc_pass": ["1"]}}, None, "no sample field 'qc_pass'"),
    ({"field": "cell_id", "min_count": 10_000}, None, "0 class(es) of cell_id left"),
    ({"field": "cell_id", "filter": {"pert_type": ["ctl_vehicle"]}, "max_count": 1}, None, "a classification needs"),
    ({"field": "det_plate"}, "det_plate", "downstream.tasks.t.field: det_plate is the split's group_by"),
], ids=["unknown_field", "unknown_filter_field", "too_few_classes", "max_count", "group_by"])
def test_an_unusable_task_gives_one_line(data, settings, group_by, problem):
    _, meta, split = data
    with pytest.raises(InputError) as err:
        task_labels(meta, split, "t", settings, group_by)
    assert problem in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_retrieval_finds_what_separates_the_groups_and_not_noise():
    from l1kformer.retrieval import profiles, retrieval

    rng = np.random.default_rng(0)
    n = 240
    meta = pd.DataFrame({"pert_id": [f"p{i % 12}" for i in range(n)], "cell_id": [f"c{i // 12 % 2}" for i in range(n)],
                         "pert_dose": [f"{(i // 24) % 2}" for i in range(n)], "pert_time": "24", "pert_type": "trt_cp"})
    signal = rng.normal(size=(12, 2, 2, 20))[np.arange(n) % 12, np.arange(n) // 12 % 2, np.arange(n) // 24 % 2]
    settings = {**defaults("downstream")["retrieval"], "null_size": 500, "negatives": "compounds"}
    rows = profiles(meta, np.arange(n), settings)
    assert len(rows) == n
    groups, summary, by = retrieval(meta.iloc[rows], {"signal": signal + rng.normal(0, 0.5, (n, 20)),
                                                      "noise": rng.normal(size=(n, 20))}, settings)
    s = summary.set_index("representation")
    assert s.loc["signal", "mAP"] > 0.8 and s.loc["signal", "fraction_retrieved"] == 1.0
    assert s.loc["noise", "mAP"] < 0.3 and s.loc["noise", "fraction_retrieved"] < 0.2
    assert s.loc["signal", "n_groups"] == 48 and set(groups["representation"]) == {"signal", "noise"}
    assert set(by["pert_dose"]) == {"0", "1"} and (by.groupby("representation")["n_groups"].sum() == 48).all()


def test_replicates_stand_out_from_the_controls_as_their_dose_rises():
    """``negatives: controls`` (phenotypic activity): replicate groups are scored against the vehicle
    wells of their cell line, controls are no group of their own, and the share retrieved rises with
    the effect's size (the dose)."""
    from l1kformer.retrieval import profiles, retrieval

    rng = np.random.default_rng(1)
    n_groups, reps, n_ctl = 30, 4, 40
    dose = np.repeat(np.arange(n_groups) % 3, reps)
    treated = pd.DataFrame({"pert_id": np.repeat([f"p{g // 3}" for g in range(n_groups)], reps),
                            "pert_dose": dose.astype(str), "pert_time": "24", "cell_id": "c0", "pert_type": "trt_cp"})
    controls = pd.DataFrame({"pert_id": "DMSO", "pert_dose": "0", "pert_time": "24", "cell_id": "c0",
                             "pert_type": "ctl_vehicle"}, index=range(n_ctl))
    meta = pd.concat([treated, controls], ignore_index=True)
    direction = rng.normal(size=(n_groups, 30))[np.repeat(np.arange(n_groups), reps)]
    x = np.concatenate([direction * np.array([0.0, 0.3, 3.0])[dose][:, None], np.zeros((n_ctl, 30))])
    x = x + rng.normal(size=x.shape)
    settings = {**defaults("downstream")["retrieval"], "null_size": 500, "by": "pert_dose"}
    rows = profiles(meta, np.arange(len(meta)), settings)
    assert len(rows) == len(meta)  # every group, and the controls as negatives
    groups, summary, by = retrieval(meta.iloc[rows], {"x": x}, settings)
    assert summary.loc[0, "n_groups"] == n_groups and summary.loc[0, "n_controls"] == n_ctl
    assert "DMSO" not in set(groups["pert_id"])
    share = by.set_index("pert_dose")["fraction_retrieved"]
    assert share["0"] < 0.3 and share["2"] == 1.0 and share["0"] <= share["1"] <= share["2"], share


@pytest.mark.parametrize("centre", ["plate", "vehicle"])
def test_centring_by_plate_removes_a_plate_offset_exactly(centre):
    from l1kformer.retrieval import centred

    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 6))
    meta = pd.DataFrame({"det_plate": [f"P{i % 4}" for i in range(40)],
                         "pert_type": np.where(np.arange(40) < 8, "ctl_vehicle", "trt_cp")})
    offset = rng.normal(0, 5, (4, 6))[np.arange(40) % 4]
    settings = {"centre": centre, "plate_field": "det_plate"}
    np.testing.assert_allclose(centred(base + offset, meta, settings), centred(base, meta, settings), atol=1e-12)
    assert np.allclose(centred(base, meta, {**settings, "centre": "none"}), base)
    with pytest.raises(ValueError, match="no ctl_vehicle well"):
        centred(base, meta.assign(pert_type="trt_cp"), {**settings, "centre": "vehicle"})


def test_whitening_spherizes_and_keeps_the_profiles_apart():
    from l1kformer.retrieval import whitened

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 5)) @ np.diag([3.0, 2.0, 1.5, 1.0, 0.8]) @ np.linalg.qr(rng.normal(size=(5, 5)))[0]
    w = whitened(x - x.mean(0), {"whiten": True})
    assert np.allclose(np.cov(w, rowvar=False), np.eye(5), atol=0.1)  # shrunk by 1% of the mean variance
    assert whitened(x, {"whiten": False}) is x


def simulated(scale, n_compounds=8, seed=0):
    """A small simulated data set with the compound signatures scaled by ``scale`` (above 1: dense
    signatures at full response from the lowest dose): (truth, meta, values)."""
    from l1kformer.simulate import SimulationConfig, make_layout, make_truth, simulate_block, with_names

    cfg = SimulationConfig(n_genes=32, n_cell_lines=2, n_compounds=n_compounds, n_plates=6, wells_per_plate=96,
                           n_factors=4, n_states=2, seed=seed, n_replicates=3)
    meta, codes = make_layout(cfg)
    truth = make_truth(cfg)
    if scale > 1:
        truth["signature"] = np.random.default_rng(1).normal(0, 1, truth["signature"].shape)
        truth["ec50"] = np.full(n_compounds, 1e-4)
    truth["signature"] = truth["signature"] * scale
    return with_names(cfg, truth, meta), meta, simulate_block(truth, codes, 0, len(meta), seed)


@pytest.mark.parametrize("scale,low,high", [(5.0, 0.98, 1.0), (0.0, 0.0, 0.2)], ids=["huge_effects", "no_effect"])
def test_the_oracle_classifies_compounds_perfectly_with_huge_effects_and_at_chance_without(scale, low, high):
    from l1kformer.oracle import plate_prior, task_oracle

    truth, meta, x = simulated(scale)
    treated = np.flatnonzero(meta["pert_type"].to_numpy() == "trt_cp")
    classes = sorted(set(meta["pert_id"]))
    predicted = np.array(classes)[task_oracle(truth, plate_prior(truth, meta), x[treated], "pert_id", classes)]
    accuracy = (predicted == meta["pert_id"].to_numpy()[treated]).mean()
    assert low <= accuracy <= high, accuracy
    cells = sorted(set(meta["cell_id"]))
    cell = np.array(cells)[task_oracle(truth, plate_prior(truth, meta), x, "cell_id", cells)]
    assert (cell == meta["cell_id"].to_numpy()).mean() > 0.95
    assert task_oracle(truth, plate_prior(truth, meta), x, "pert_iname", classes) is None


def test_replicate_plates_share_their_plate_map_and_cell_line():
    _, meta, _ = simulated(1.0)
    plate = meta["det_plate"].str.rsplit("_", n=1)
    assert sorted(plate.str[1].unique()) == ["X1", "X2", "X3"]
    for _, part in meta.groupby(plate.str[0]):
        layout = part.groupby("det_plate")[["pert_id", "pert_dose", "cell_id"]].apply(
            lambda p: tuple(map(tuple, p.to_numpy())))
        assert layout.nunique() == 1 and len(layout) == 3
