"""config.yaml's defaults for the benchmarks: the package's dataclasses have none of their own."""

from pathlib import Path

import yaml

DEFAULTS = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())


def defaults(section, **overrides):
    """A section of config.yaml with some keys overridden."""
    return {**DEFAULTS[section], **overrides}
