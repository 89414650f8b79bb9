# Helpers only: config validation, the modes, paths, and the package modules each step imports.
import ast
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


# a run or a downstream task set to null (in a --configfile merged over config.yaml) is dropped
config["runs"] = {name: run for name, run in (config.get("runs") or {}).items() if run is not None}
if isinstance(config.get("downstream"), dict) and isinstance(config["downstream"].get("tasks"), dict):
    config["downstream"]["tasks"] = {k: v for k, v in config["downstream"]["tasks"].items() if v is not None}
_check_config(config, workflow.source_path("../workflow/schemas/config.schema.yaml"))
validate(config, "../workflow/schemas/config.schema.yaml", set_default=True)

# Sweeps become ordinary named runs (the package's logic, imported here at parse time).
sys.path.insert(0, os.path.join(workflow.basedir, "workflow", "scripts"))
from l1kformer.errors import InputError  # noqa: E402
from l1kformer.machine import gpus_visible  # noqa: E402
from l1kformer.modes import MODES as _MODES  # noqa: E402
from l1kformer.settings import split_settings  # noqa: E402
from l1kformer.sweeps import expand_sweeps  # noqa: E402

try:
    config["runs"] = expand_sweeps(config["runs"], config.get("sweeps", {}))
except InputError as exc:
    print(f"l1kformer error: config key {exc}", file=sys.stderr)
    sys.exit(1)
_check_config(config, workflow.source_path("../workflow/schemas/config.schema.yaml"))
if not config["runs"]:
    print("l1kformer error: config key runs: no runs and no sweeps: nothing to train", file=sys.stderr)
    sys.exit(1)


def downstream_tasks_of(config):
    return (config.get("downstream") or {}).get("tasks") or {}


def _config_problems(config):
    """Rules across keys, beyond the schema's types and ranges: (key, problem) pairs. A run's settings
    are checked by building its dataclasses (l1kformer/settings.py), whose checks training repeats."""
    fractions = sum(config["split"][s] for s in ("train", "val", "test"))
    if abs(fractions - 1) > 1e-9:
        yield "split", f"train + val + test must be 1, got {fractions:g}"
    if config["split"]["val"] <= 0:
        yield "split.val", "must be positive: the val set chooses the best epoch and the baselines' shrinkage"
    group_by = config["split"]["group_by"]
    for task, settings in sorted(downstream_tasks_of(config).items()):
        if group_by and settings["field"] == group_by:
            yield (f"downstream.tasks.{task}.field", f"{group_by} is the split's group_by: no {group_by} is in both "
                   f"train and test, so the task cannot be learned; use another field or split.group_by")
    retrieval = (config.get("downstream") or {}).get("retrieval")
    if retrieval and retrieval["by"] and retrieval["by"] not in [*retrieval["fields"], retrieval["within"]]:
        yield "downstream.retrieval.by", f"{retrieval['by']!r} must be one of fields or within"
    for run, settings in sorted(config["runs"].items()):
        try:
            split_settings({**config["train"], **settings, "n_genes": config["data"]["n_genes"] or 2})
        except ValueError as exc:
            yield f"runs.{run}", str(exc)


for _key, _problem in _config_problems(config):
    print(f"l1kformer error: config key {_key}: {_problem}", file=sys.stderr)
    sys.exit(1)

RESULTS = config["results_dir"].rstrip("/")


wildcard_constraints:
    run="[A-Za-z0-9_.-]+",  # a run's name (the schema's pattern): one folder, never a path


def R(path):
    """A path under the results folder (``results_dir``: one folder per experiment)."""
    return f"{RESULTS}/{path}"


# Level 2 fluorescence is ingested as it is and normalised by its own step into expression.h5.
INGESTED = "data/level2.h5" if config["data"]["level"] == 2 else "data/expression.h5"

SIMULATED_GCTX = "resources/simulated/l1000_sim.gctx"
SIMULATED_TRUTH = "resources/simulated/l1000_sim_truth.h5"

# One entry per mode (the package's spec of that name, l1kformer/modes.py): the data file its runs read
# (under the results folder), the baseline files they are compared with, and the figures drawn per run
# (one report caption each: workflow/report/{mode}_{plot}.rst).
MODES = {name: {"data": f"data/{m.dataset}.h5", "baselines": list(m.baselines), "plots": list(m.figures)}
         for name, m in _MODES.items()}


def package_imports(path):
    """The l1kformer modules ``path`` imports (anywhere in it), or starts with ``-m l1kformer.X``."""
    found = set(re.findall(r'"l1kformer\.(\w+)"', open(path).read()))
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("l1kformer"):
            parts = node.module.split(".")
            found.update(parts[1:2] or [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("l1kformer."))
    return found


def step_modules(step):
    """Every l1kformer module the script of ``step`` imports, directly or not, ``__init__`` included."""
    package = os.path.join(workflow.basedir, "workflow", "scripts", "l1kformer")
    todo = list(package_imports(os.path.join(workflow.basedir, "workflow", "scripts", f"{step}.py")))
    seen = {"__init__"}
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(package_imports(os.path.join(package, f"{name}.py")))
    return sorted(seen)


def package_files(step):
    """The package modules of ``step`` as inputs: editing a module reruns exactly the steps using it."""
    return [workflow.source_path(f"../workflow/scripts/l1kformer/{m}.py") for m in step_modules(step)]


def sorted_dict(d):
    """A dict param with its keys sorted at every level (params are compared by repr)."""
    return {k: sorted_dict(d[k]) if isinstance(d[k], dict) else d[k] for k in sorted(d)}


def section(name, keys=None):
    """A config section (or the named keys of it) as one sorted dict param."""
    return sorted_dict({k: v for k, v in config[name].items() if keys is None or k in keys})


def ingest_inputs(wildcards):
    inputs = {"matrices": config["data"]["inputs"]}
    if config["data"]["gene_table"]:
        inputs["gene_table"] = config["data"]["gene_table"]
    if config["data"]["sample_table"]:
        tables = config["data"]["sample_table"]
        inputs["sample_tables"] = [tables] if isinstance(tables, str) else tables
    return inputs


def rank_inputs(wildcards):
    """The split is an input of rank only when gene medians (from train profiles) normalise it."""
    inputs = {"expression": R("data/expression.h5")}
    if config["rank"]["normalize"] != "none":
        inputs["split"] = R("data/split.h5")
    return inputs


def run_settings(run):
    """One run's settings: the train defaults updated with the run's own, keys sorted."""
    return sorted_dict({**config["train"], **config["runs"][run]})


LOCAL_GPUS = gpus_visible()


def run_gpus(run):
    """GPUs a run's jobs hold: none with ``device: cpu``, and none with ``device: auto`` when the jobs run
    on this machine and it has no GPU (they will run on its CPU), so CPU-only runs are not serialised by
    the GPU slot of the default profile. Jobs sent to a cluster keep their GPUs. Scheduling only: the
    job itself still chooses its device as ``device`` says."""
    settings = run_settings(run)
    if settings["device"] == "cpu":
        return 0
    if settings["device"] == "auto" and workflow.local_exec and not LOCAL_GPUS:
        return 0
    return settings["gpus"]


def run_mode(run):
    return config["runs"][run]["mode"]


def runs_of(mode):
    return sorted(r for r in config["runs"] if run_mode(r) == mode)


def one_of(names):
    """A wildcard regex matching exactly these names (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!x)x"


def is_simulated():
    return config["data"]["inputs"] == [SIMULATED_GCTX]


def baseline_files(mode):
    """The baseline files a mode's runs are compared with (the oracle only on simulated data)."""
    return [R(f"baselines/{b}.json") for b in MODES[mode]["baselines"] if b != "oracle" or is_simulated()]


def run_data(wildcards):
    """The file a run reads: its mode's."""
    return R(MODES[run_mode(wildcards.run)]["data"])


def run_baselines(wildcards):
    return baseline_files(run_mode(wildcards.run))


def summary_inputs(wildcards):
    runs = sorted(config["runs"])
    inputs = {"metrics": expand(R("runs/{run}/metrics.json"), run=runs)}
    for mode in MODES:
        if runs_of(mode):
            inputs[f"{mode}_baselines"] = baseline_files(mode)
    return inputs


def section_of(name, part, drop=()):
    """A part of a config section (``downstream.finetune``) as one sorted dict param, less ``drop``."""
    return sorted_dict({k: v for k, v in (config[name][part] or {}).items() if k not in drop})


def downstream_tasks():
    return sorted(downstream_tasks_of(config))


def downstream_task(task):
    return sorted_dict(config["downstream"]["tasks"][task])


def finetune_starts():
    """Fine-tuning starts from the pretrained model, and with ``from_scratch`` also from fresh weights."""
    return ["pretrained"] + (["scratch"] if config["downstream"]["finetune"]["from_scratch"] else [])


def default_gpus():
    """GPUs for jobs that follow the train defaults' device (the downstream baselines)."""
    settings = config["train"]
    if settings["device"] == "cpu" or (settings["device"] == "auto" and workflow.local_exec and not LOCAL_GPUS):
        return 0
    return 1


def readouts():
    """The readouts fine-tuning reads the trunk with (``downstream.finetune.readout``: one or a list)."""
    names = config["downstream"]["finetune"]["readout"]
    return [names] if isinstance(names, str) else list(names)


def run_readouts(run):
    """A run's readouts: the dense trunk has one state per profile, read as ``mean``."""
    return readouts() if run_settings(run)["trunk"] == "transformer" else ["mean"]


def finetune_files(name, starts=None, tasks=None):
    return [R(f"runs/{run}/downstream/{start}/{readout}/{task}/{name}") for run in sorted(config["runs"])
            for start in starts or finetune_starts() for readout in run_readouts(run)
            for task in tasks or downstream_tasks()]


def retrieval_embeddings():
    """{run: its embedding files} of the profiles retrieval scores (``rows``: all of them, or test)."""
    sets = ["train", "val", "test"] if config["downstream"]["retrieval"]["rows"] == "all" else ["test"]
    return {run: expand(R("runs/{run}/embeddings_{set}.parquet"), run=run, set=sets) for run in sorted(config["runs"])}


def retrieval_inputs(wildcards):
    """Fine-tuned models' features are scored only on test profiles (``rows: test``): they saw train's labels."""
    test_only = config["downstream"]["retrieval"]["rows"] == "test"
    return {"samples": R("data/samples.parquet"), "split": R("data/split.h5"),
            "expression": R("data/expression.h5"), "ranks": R("data/ranks.h5"),
            "embeddings": [p for paths in retrieval_embeddings().values() for p in paths],
            "finetuned": finetune_files("features_test.parquet", starts=["pretrained"]) if test_only else []}


def downstream_summary_inputs(wildcards):
    tasks = downstream_tasks()
    oracle = expand(R("downstream/{task}/oracle.json"), task=tasks) if is_simulated() else []
    return {"labels": expand(R("downstream/{task}/labels.parquet"), task=tasks), "oracle": oracle,
            "baselines": expand(R("downstream/{task}/baselines.json"), task=tasks),
            "metrics": finetune_files("metrics.json"), "histories": finetune_files("history.tsv"),
            "predictions": finetune_files("predictions.parquet")}


def get_final_output():
    runs = sorted(config["runs"])
    outputs = [R("summary.tsv"), R("plots/comparison.png")]
    outputs += expand(R("runs/{run}/{name}"), run=runs, name=["metrics.json", "embeddings_val.parquet"])
    for mode, spec in MODES.items():
        outputs += expand(R("runs/{run}/plots/{plot}.png"), run=runs_of(mode), plot=spec["plots"])
    if downstream_tasks():
        outputs.append(R("downstream.tsv"))
    if config["downstream"]["retrieval"]:
        outputs.append(R("downstream/retrieval.tsv"))
    return outputs
