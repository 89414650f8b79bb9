import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "l1000"
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

WORKFLOW_PARTS = ["Snakefile", "config.yaml", "rules", "workflow", "envs", "profiles"]
# The one home of defaults: config.yaml (the package's dataclasses have none).
DEFAULTS = yaml.safe_load((ROOT / "config.yaml").read_text())


def defaults(section, **overrides):
    """A config section of config.yaml with some keys overridden."""
    return {**DEFAULTS[section], **overrides}


def ingest_settings(**overrides):
    """The keyword settings of l1kformer.ingest.ingest: config.yaml's ``data:`` section less its inputs."""
    data = defaults("data", **overrides)
    return {k: v for k, v in data.items() if k not in ("inputs", "plate_field")}  # plate_field: the normalize step

# A small simulated data set (4 plates x 96 wells, the default config's 128 genes) and tiny models.
TINY = {"simulate": {"n_plates": 4, "wells_per_plate": 96, "n_compounds": 10, "n_cell_lines": 2},
        "train": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "epochs": 2, "batch_size": 64,
                  "warmup_steps": 2},
        # no downstream jobs, except where a test turns them on (DOWNSTREAM): they would lengthen every run
        "downstream": {"tasks": {}, "retrieval": None,
                       "finetune": {"head_epochs": 3, "epochs": 1},
                       "baselines": {"epochs": 3, "grid": {"width": [32], "dropout": [0.0], "lr": [1.0e-3],
                                                           "weight_decay": [1.0e-4]}}}}
# The default's downstream tasks and retrieval, at the tests' tiny size
DOWNSTREAM = {"downstream": {"tasks": DEFAULTS["downstream"]["tasks"],
                             "retrieval": {**DEFAULTS["downstream"]["retrieval"], "null_size": 200}}}
MODES = {"rank_small": "rank", "expr_small": "expression"}


def run_jobs(*runs):
    """The per-run jobs downstream of training, for runs of the default config."""
    return {(rule, run) for run in runs
            for rule in ("train", "embed", "evaluate", f"plot_{MODES[run]}", "finetune")}


def shared_file(name):
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real L1000 test data not available: {path} is absent (see ../shared/data/l1000)")
    return path


def deep_update(base, extra):
    base = base or {}  # a section set to null (downstream.retrieval) can be filled again
    out = dict(base)
    for key, value in extra.items():
        out[key] = deep_update(base.get(key, {}), value) if isinstance(value, dict) and value else value
    return out


class Workflow:
    """A copy of the workflow in a temporary folder, run with snakemake in a subprocess."""

    def __init__(self, path, tiny=True):
        self.path = path
        path.mkdir(parents=True)
        for part in WORKFLOW_PARTS:
            src = ROOT / part
            if src.is_dir():
                shutil.copytree(src, path / part, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, path / part)
        self.config = yaml.safe_load((ROOT / "config.yaml").read_text())
        if tiny:  # else config.yaml as shipped
            self.set_config(TINY)

    def set_config(self, extra):
        self.config = deep_update(self.config, extra)
        (self.path / "config.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))

    def write_config_text(self, text):
        (self.path / "config.yaml").write_text(text)

    def run(self, *args, check=True, env=None):
        cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **(env or {}))
        proc = subprocess.run(cmd, cwd=self.path, capture_output=True, text=True, env=env)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def summary(self):
        """{output file: (rule, status, plan)} from ``snakemake --summary``."""
        out = self.run("--summary").stdout
        rows = {}
        for line in out.splitlines()[1:]:
            fields = line.split("\t")
            if len(fields) >= 6:
                rows[fields[0]] = (fields[2], fields[4], fields[5])
        return rows

    def pending(self):
        return {f for f, (_, _, plan) in self.summary().items() if plan != "no update"}

    def job_counts(self, *args):
        """{rule: count} from the "Job stats" table of a dry run."""
        out = self.run("-n", *args).stdout
        counts = {}
        for line in out.split("Job stats:")[1].splitlines()[3:]:
            if not line.strip():
                break  # the table ends at the first blank line
            rule, count = line.split()[:2]
            counts[rule] = int(count)
        return counts

    def pending_jobs(self):
        """{(rule, run or None)} of the jobs --summary says would run."""
        jobs = set()
        for f, (rule, _, plan) in self.summary().items():
            if plan != "no update":
                parts = f.split("/")
                jobs.add((rule, parts[2] if parts[:2] == ["results", "runs"] else None))
        return jobs


@pytest.fixture
def workflow(tmp_path):
    return Workflow(tmp_path / "wf")
