"""A new mode is a task, a spec, its layers and its scoring: a test-only mode (the sign of each masked
standardised value) trains and evaluates through the real train() and evaluation code, registered in
the package's four registries and with no change anywhere else in it."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from l1kformer import evaluate as evaluation
from l1kformer import model as models
from l1kformer import modes, tasks
from l1kformer.evaluate import evaluate
from l1kformer.inference import load_model
from l1kformer.layers import ExpressionEncoder, ValueHead
from l1kformer.train import final_model, train
from test_train import settings, tiny_data  # noqa: F401 (a fixture)


class SignTask(tasks.ExpressionTask):
    """Is the masked gene above its train mean? One logit per masked position, binary cross-entropy."""

    def loss(self, out, target):
        return F.binary_cross_entropy_with_logits(out.float(), (target > 0).float())

    def val_metrics(self, model, batches):
        n = loss = correct = 0.0
        for _, _, out, target in batches:
            n += len(target)
            loss += float(F.binary_cross_entropy_with_logits(out, (target > 0).float(), reduction="sum"))
            correct += float(((out > 0) == (target > 0)).sum())
        return {"val_loss": loss / max(n, 1), "val_accuracy": correct / max(n, 1)}


def score_sign(model, batches, write):
    n = correct = 0
    for values, pos, out in batches:
        above = np.take_along_axis(values, pos, axis=1) > model.unstandardize(torch.zeros(pos.shape), pos).numpy()
        logit = out.cpu().numpy()
        write(pd.DataFrame({"gene": pos.ravel(), "above": above.ravel(), "logit": logit}))
        n, correct = n + above.size, correct + int(((logit > 0) == above.ravel()).sum())
    return {"accuracy": correct / n}


@pytest.fixture
def sign_mode():
    spec = modes.register(modes.Mode(name="sign", dataset="expression", baselines=(), figures={},
                                     summary_columns=("accuracy",), headline={"accuracy": "max"}))
    tasks.TASKS["sign"] = SignTask()
    models.LAYERS["sign"] = {"transformer": lambda cfg: (ExpressionEncoder, ValueHead)}
    evaluation.SCORERS["sign"] = score_sign
    yield spec
    del modes.MODES["sign"], tasks.TASKS["sign"], models.LAYERS["sign"], evaluation.SCORERS["sign"]


def test_a_third_mode_trains_and_evaluates_through_the_real_code(tiny_data, tmp_path, sign_mode):  # noqa: F811
    torch.set_num_threads(1)
    d, split, mask = tiny_data
    s = settings("sign", epochs=6)
    model, state = train(s, d / "expression.h5", split, mask["val"], tmp_path / "ckpt.pt", log=lambda m: None,
                         progress=False)
    h = state["history"]
    assert h[-1]["train_loss"] < h[0]["train_loss"] and h[-1]["val_loss"] < h[0]["val_loss"], h
    assert h[-1]["val_accuracy"] > 0.7  # chance is about 0.5
    torch.save(final_model(model, state, s), tmp_path / "model.pt")
    rebuilt, _ = load_model(tmp_path / "model.pt")  # from the file alone, as the evaluate step does
    assert rebuilt.cfg.mode == "sign"
    metrics = evaluate(rebuilt, d / "expression.h5", *mask["test"], tmp_path / "pred.parquet")
    assert metrics["accuracy"] > 0.6  # 256 masked entries: chance 0.5 +- 0.03
    assert len(pd.read_parquet(tmp_path / "pred.parquet")) == mask["test"][1].size


def test_an_unknown_mode_is_refused():
    from l1kformer.settings import ModelConfig

    with pytest.raises(ValueError, match="mode must be one of"):
        ModelConfig(mode="sign", n_genes=16, trunk="transformer", value_encoder="linear", attn_bias="none",
                    rank_view="genes", position_prior=None, d_model=16, n_layers=1, n_heads=2, d_ff=32, dense_width=16, dense_depth=1,
                    dropout=0.0)
