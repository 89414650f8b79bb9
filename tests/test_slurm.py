"""The SLURM profile on a real single-node SLURM cluster with one fake GPU."""

import os
import re
import subprocess

import pytest

import slurm_cluster

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


@pytest.fixture
def cluster(tmp_path):
    reason = slurm_cluster.why_not()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the SLURM test must run in CI: {reason}")
        pytest.skip(reason)
    c = slurm_cluster.Cluster(tmp_path / "slurm").start()
    yield c
    c.stop()


def test_training_through_the_slurm_profile(cluster, workflow):
    proc = workflow.run(
        "--workflow-profile", "profiles/slurm", "--jobs", "4",
        "--default-resources", "slurm_partition=debug", "runtime=5", "mem_mb=400",
        "--set-resources", "train:mem_mb=400", "train:runtime=5",
        "--set-threads", "train=1",
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
        "--latency-wait", "5", "results/runs/rank_small/model.pt", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert (workflow.path / "results/runs/rank_small/model.pt").exists()
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: [^)]*/rule_([A-Za-z_]+)/", out))
    assert sorted(submitted.values()) == sorted(["simulate", "ingest", "split", "rank", "mask", "train"]), out[-3000:]
    for job, rule in submitted.items():
        info = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
        assert "JobState=COMPLETED" in info and f"Comment=rule_{rule}" in info, info
        asks_gpu = re.search(r"TresPerJob=\S*gres[:/]gpu:1", info) is not None
        assert asks_gpu == (rule == "train"), (rule, info)  # --gpus=1 for train only, seen by SLURM
    log = (workflow.path / "results/logs/train_rank_small.log").read_text()
    assert "running on the CPU" in log  # the fake GPU is no CUDA device: the CPU fallback ran
