# Helpers only: config validation, paths, and the package modules each step imports.
import sys

import jsonschema
import yaml
from snakemake.utils import validate


def _check_config(config, schema_path):
    """Stop before any job runs with one line naming the config key and the problem."""
    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "config"
        print(f"l1kformer error: config key {key}: {err.message}", file=sys.stderr)
        sys.exit(1)


_check_config(config, workflow.source_path("../workflow/schemas/config.schema.yaml"))
validate(config, "../workflow/schemas/config.schema.yaml", set_default=True)

SIMULATED_GCTX = "resources/simulated/l1000_sim.gctx"
SIMULATED_TRUTH = "resources/simulated/l1000_sim_truth.h5"

# The l1kformer modules each script imports, directly or not (tests/test_workflow_static.py checks
# this against the scripts): declared as inputs so that editing a module reruns exactly its steps.
STEP_MODULES = {
    "simulate": ["__init__", "errors", "fileio", "gctx", "simulate", "step"],
    "ingest": ["__init__", "errors", "fileio", "gctx", "genes", "ingest", "readers", "step"],
    "split": ["__init__", "errors", "fileio", "split", "step"],
    "rank": ["__init__", "errors", "fileio", "rank", "split", "step"],
    "mask": ["__init__", "errors", "fileio", "mask", "split", "step"],
    "train": ["__init__", "errors", "fileio", "loader", "mask", "model", "split", "step", "train"],
}


def package_files(step):
    return [workflow.source_path(f"../workflow/scripts/l1kformer/{m}.py") for m in STEP_MODULES[step]]


def sorted_dict(d):
    """A dict param with sorted keys (params are compared by repr) and sorted value lists."""
    return {k: d[k] for k in sorted(d)}


def ingest_inputs(wildcards):
    inputs = {"matrices": config["data"]["inputs"]}
    if config["data"]["gene_table"]:
        inputs["gene_table"] = config["data"]["gene_table"]
    return inputs


def rank_inputs(wildcards):
    """The split is an input of rank only when gene medians (from train profiles) normalise it."""
    inputs = {"expression": "results/data/expression.h5"}
    if config["rank"]["normalize"] != "none":
        inputs["split"] = "results/data/split.h5"
    return inputs


def run_settings(run):
    """One run's settings: the train defaults updated with the run's own, keys sorted."""
    return sorted_dict({**config["train"], **config["runs"][run]})


def train_data(wildcards):
    mode = config["runs"][wildcards.run]["mode"]
    return "results/data/ranks.h5" if mode == "rank" else "results/data/expression.h5"


def get_final_output():
    outputs = ["results/data/ranks.h5", "results/data/mask.h5"]
    outputs += expand("results/runs/{run}/model.pt", run=sorted(config["runs"]))
    return outputs
