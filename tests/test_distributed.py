"""DistributedDataParallel: 2 CPU processes under torchrun (gloo) follow the single-process run."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT
from l1kformer.fileio import atomic_path
from l1kformer.train import run_training
from test_train import make_tiny_data, settings

pytestmark = pytest.mark.slow


def write_h5(path, rows_by_set):
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        for name, value in rows_by_set.items():
            if isinstance(value, tuple):
                g = h5.create_group(name)
                g["rows"], g["positions"] = value
            else:
                h5[name] = value


@pytest.mark.parametrize("mode", ["rank", "expression"])
def test_two_gloo_processes_match_one_process(tmp_path, mode):
    d, split, mask = make_tiny_data(tmp_path)
    write_h5(d / "split.h5", split)
    write_h5(d / "mask.h5", mask)
    data = str(d / ("ranks.h5" if mode == "rank" else "expression.h5"))
    # No position prior: a rank head that starts at the prior has small, flat gradients early, which
    # Adam's normalisation turns into steps that differ with the summation order of the two halves
    # (weights then agree to about 1e-4, not 1e-5): not what this test is about.
    s = settings(mode, epochs=2, batch_size=32, device="cpu", position_prior=None)
    common = dict(settings=s, data_path=data, split_path=str(d / "split.h5"), mask_path=str(d / "mask.h5"))

    torch.set_num_threads(1)
    single, single_state = run_training(model_path=str(d / "single.pt"), history_path=str(d / "single.tsv"),
                                        checkpoint_path=str(d / "single_ckpt.pt"), log=lambda m: None, **common)

    spec = d / "job.json"
    spec.write_text(json.dumps({**common, "model_path": str(d / "ddp.pt"), "history_path": str(d / "ddp.tsv"),
                                "checkpoint_path": str(d / "ddp_ckpt.pt"), "log": str(d / "ddp.log"),
                                "threads": 1}))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "workflow" / "scripts"))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "l1kformer.distributed", str(spec)], env=env, capture_output=True, text=True,
                          timeout=300)
    logs = "".join(p.read_text() for p in d.glob("ddp.log.rank*"))
    assert proc.returncode == 0, proc.stderr[-3000:] + logs
    assert "DistributedDataParallel over 2 processes (gloo)" in logs
    ddp = torch.load(d / "ddp.pt", weights_only=False)
    single_file = torch.load(d / "single.pt", weights_only=False)
    for name, value in single_file["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][name], value, rtol=1e-4, atol=1e-5, msg=name)
    h1, h2 = pd.read_csv(d / "single.tsv", sep="\t"), pd.read_csv(d / "ddp.tsv", sep="\t")
    np.testing.assert_allclose(h2["train_loss"], h1["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(h2["val_loss"], h1["val_loss"], rtol=1e-4)
    assert not (d / "ddp_ckpt.pt").exists()


def test_bad_input_in_a_process_reaches_the_job_as_one_line(tmp_path):
    """A non-finite loss under torchrun: launch() raises the same InputError as a one-process run (the
    step turns it into one line), not a CalledProcessError with tracebacks."""
    import h5py

    from l1kformer.distributed import launch
    from l1kformer.errors import InputError

    d, split, mask = make_tiny_data(tmp_path)
    with h5py.File(d / "expression.h5", "r+") as h5:
        x = h5["expression"][()]
        x[mask["val"][0][0], mask["val"][1][0][0]] = 3e38
        h5["expression"][...] = x
    write_h5(d / "split.h5", split)
    write_h5(d / "mask.h5", mask)
    job = dict(settings=settings("expression", epochs=2, device="cpu"), data_path=str(d / "expression.h5"),
               split_path=str(d / "split.h5"), mask_path=str(d / "mask.h5"), model_path=str(d / "m.pt"),
               history_path=str(d / "h.tsv"), checkpoint_path=str(d / "ckpt.pt"), name="expr_ddp")
    sys.path.insert(0, str(ROOT / "workflow" / "scripts"))  # launch() passes sys.path on to torchrun
    with pytest.raises(InputError, match=r"runs.expr_ddp: epoch 1: val_loss not finite"):
        launch(job, 2, 2, str(d / "ddp.log"), str(d / "job.json"), log=lambda m: None)
    assert not (d / "m.pt").exists() and not (d / "ckpt.pt").exists() and not (d / "job.json").exists()
