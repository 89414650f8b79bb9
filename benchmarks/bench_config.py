"""What the benchmarks share: config.yaml's defaults (the package's dataclasses have none of their own),
and running a piece of code in a fresh process, measured."""

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"

DEFAULTS = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())


def defaults(section, **overrides):
    """A section of config.yaml with some keys overridden."""
    return {**DEFAULTS[section], **overrides}


def run_measured(code):
    """Wall seconds and peak RSS (MiB) of ``python -c code`` in a fresh process (with the package on its
    path). The caller should stay small: Linux keeps a process's peak RSS across exec."""
    env = dict(os.environ, PYTHONPATH=str(SCRIPTS))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {code}")
    return wall, usage.ru_maxrss / 1024
