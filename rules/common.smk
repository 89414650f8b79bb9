# Helpers only: config validation, paths, and the package modules each step imports.
import os
import re
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

# Sweeps become ordinary named runs (the package's logic, imported here at parse time).
sys.path.insert(0, os.path.join(workflow.basedir, "workflow", "scripts"))
from l1kformer.errors import InputError  # noqa: E402
from l1kformer.sweeps import expand_sweeps  # noqa: E402

try:
    config["runs"] = expand_sweeps(config.get("runs", {}), config.get("sweeps", {}))
except InputError as exc:
    print(f"l1kformer error: config key {exc}", file=sys.stderr)
    sys.exit(1)
_check_config(config, workflow.source_path("../workflow/schemas/config.schema.yaml"))
if not config["runs"]:
    print("l1kformer error: config key runs: no runs and no sweeps: nothing to train", file=sys.stderr)
    sys.exit(1)

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
    "train": ["__init__", "distributed", "errors", "fileio", "inference", "loader", "mask", "model", "split",
              "step", "train"],
    "baselines_rank": ["__init__", "baselines", "errors", "fileio", "loader", "mask", "metrics", "split", "step"],
    "baselines_expression": ["__init__", "baselines", "errors", "fileio", "gctx", "loader", "mask", "metrics",
                             "simulate", "split", "step"],
    "embed": ["__init__", "embed", "errors", "evaluate", "fileio", "inference", "loader", "mask", "metrics",
              "model", "step"],
    "evaluate": ["__init__", "errors", "evaluate", "fileio", "inference", "loader", "mask", "metrics", "model",
                 "step"],
    "plot_training": ["__init__", "errors", "fileio", "plots", "step"],
    "plot_rank": ["__init__", "errors", "fileio", "plots", "step"],
    "plot_expression": ["__init__", "errors", "fileio", "plots", "step"],
    "summary": ["__init__", "errors", "fileio", "plots", "step", "summary"],
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


def run_mode(run):
    return config["runs"][run]["mode"]


def runs_of(mode):
    return sorted(r for r in config["runs"] if run_mode(r) == mode)


def one_of(names):
    """A wildcard regex matching exactly these names (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!x)x"


def train_data(wildcards):
    return "results/data/ranks.h5" if run_mode(wildcards.run) == "rank" else "results/data/expression.h5"


def run_baselines(wildcards):
    return f"results/baselines/{run_mode(wildcards.run)}.json"


def is_simulated():
    return config["data"]["inputs"] == [SIMULATED_GCTX]


def expression_baseline_inputs(wildcards):
    inputs = {"expression": "results/data/expression.h5", "samples": "results/data/samples.parquet"}
    if is_simulated():
        inputs["truth"] = SIMULATED_TRUTH
    return inputs


def summary_inputs(wildcards):
    inputs = {"metrics": expand("results/runs/{run}/metrics.json", run=sorted(config["runs"]))}
    for mode in ("rank", "expression"):
        if runs_of(mode):
            inputs[f"{mode}_baselines"] = f"results/baselines/{mode}.json"
    return inputs


RANK_PLOTS = ["genes", "by_position", "heatmap", "baselines"]
EXPRESSION_PLOTS = ["scatter", "worst_genes", "error_vs_level", "baselines"]


def get_final_output():
    runs = sorted(config["runs"])
    outputs = ["results/summary.tsv", "results/plots/comparison.png"]
    outputs += expand("results/runs/{run}/{name}", run=runs,
                      name=["metrics.json", "embeddings_val.parquet", "plots/training_curves.png"])
    outputs += expand("results/runs/{run}/plots/{plot}.png", run=runs_of("rank"), plot=RANK_PLOTS)
    outputs += expand("results/runs/{run}/plots/{plot}.png", run=runs_of("expression"), plot=EXPRESSION_PLOTS)
    return outputs
