"""Static checks of the workflow's wiring: declared package modules, envs and pins."""

import ast
import re
from pathlib import Path

import yaml

from conftest import ROOT

SCRIPTS = ROOT / "workflow" / "scripts"
PACKAGE = SCRIPTS / "l1kformer"


def dry_run_inputs(workflow):
    """{(rule, run or None): set of input paths} from a dry run of every job."""
    out = workflow.run("-n", "--forceall").stdout
    jobs = {}
    for block in out.split("\nrule ")[1:]:
        rule = block.split(":")[0]
        inputs = re.search(r"^    input: (.*)$", block, flags=re.M)
        run = re.search(r"^    wildcards: run=(\S+)$", block, flags=re.M)
        if rule != "all":
            jobs[(rule, run and run.group(1))] = set(inputs.group(1).split(", ")) if inputs else set()
    return jobs


def test_package_inputs_are_the_transitive_imports(workflow):
    jobs = dry_run_inputs(workflow)
    module_sets = {job: {Path(p).stem for p in inputs if "/l1kformer/" in p} for job, inputs in jobs.items()}
    assert module_sets[("split", None)] == {"__init__", "errors", "fileio", "split", "step"}
    train = module_sets[("train", "expr_small")]
    assert {"model", "layers", "settings", "modes", "tasks", "counting", "train", "loader", "inference",
            "distributed"} <= train
    # editing a metric, the test scoring, a plot or a baseline retrains nothing
    assert not {"metrics_rank", "metrics_expression", "evaluate", "parallel", "plots", "baselines"} & train
    assert "metrics_rank" in module_sets[("evaluate", "rank_small")]
    # the plots and the summary read the modes' specs, without torch layer code
    for job in (("plot_rank", "rank_small"), ("summary", None)):
        assert "modes" in module_sets[job] and not {"model", "layers", "tasks", "train"} & module_sets[job], job
    assert "model" not in module_sets[("baselines_rank", None)]
    # each mode's baselines import their own metrics only
    assert "metrics_expression" not in module_sets[("baselines_rank", None)]
    assert "metrics_rank" not in module_sets[("baselines_expression", None)]
    # the oracle's mathematics is its own: editing oracle.py reruns the oracle job (and, through its
    # output, the summary), not the simulation and everything downstream of it
    assert {job for job, modules in module_sets.items() if "oracle" in modules} == {("oracle", None)}
    assert "oracle" not in module_sets[("simulate", None)] and "baselines" not in module_sets[("oracle", None)]
    assert "sample_table" in module_sets[("ingest", None)] and "sample_table" not in module_sets[("split", None)]
    for (rule, _), modules in module_sets.items():
        for module in modules:  # every declared module is one the package has
            assert (PACKAGE / f"{module}.py").exists(), (rule, module)


def test_every_script_has_its_rule():
    scripts = {p.stem for p in SCRIPTS.glob("*.py")}
    rules_text = "".join(p.read_text() for p in (ROOT / "rules").glob("*.smk"))
    assert scripts == set(re.findall(r'"\.\./workflow/scripts/(\w+)\.py"', rules_text))
    for step in scripts:
        assert f'package_files("{step}")' in rules_text


def test_modes_agree_across_the_workflow_and_the_package():
    """Every mode has a spec, a task, layers for both trunks and a test scorer; the schema's modes are
    the specs'; each figure has a plotting function and a report caption."""
    from l1kformer import plots
    from l1kformer.evaluate import SCORERS
    from l1kformer.model import LAYERS, TRUNKS
    from l1kformer.modes import MODES
    from l1kformer.tasks import TASKS

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    assert set(schema["$defs"]["settings"]["properties"]["mode"]["enum"]) == set(MODES) == {"rank", "expression"}
    assert set(TASKS) == set(LAYERS) == set(SCORERS) == set(MODES)
    for name, spec in MODES.items():
        assert set(LAYERS[name]) == set(TRUNKS), name
        for plot, function in spec.figures.items():
            assert callable(getattr(plots, function)), function
            assert (ROOT / "workflow/report" / f"{name}_{plot}.rst").exists(), (name, plot)


def test_schema_defaults_are_the_config_defaults():
    """config.yaml is the one home of defaults: where the schema also names one, they agree."""
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for section, spec in schema["properties"].items():
        for key, prop in spec.get("properties", {}).items():
            if "default" in prop:
                assert config[section][key] == prop["default"], f"{section}.{key}"


def test_every_rule_names_an_existing_env_and_a_log():
    for smk in (ROOT / "rules").glob("*.smk"):
        text = smk.read_text()
        rules = re.split(r"^rule ", text, flags=re.M)[1:]
        for rule in rules:
            name = rule.split(":")[0]
            envs = re.findall(r'conda:\s*\n\s*"([^"]+)"', rule)
            assert envs, f"rule {name} has no conda env"
            assert (smk.parent / envs[0]).resolve().exists(), f"rule {name}: {envs[0]} missing"
            assert "log:" in rule, f"rule {name} has no log"


CONDA_ONLY = {"python", "cuda-version"}
OUTSIDE_JOBS = {"snakemake", "snakemake-executor-plugin-slurm", "pygments", "pytest", "transformers"}  # not in jobs


def test_env_files_pin_what_pyproject_pins():
    pyproject = (ROOT / "pyproject.toml").read_text()
    pins = dict(re.findall(r'"([A-Za-z0-9_.-]+)==([^"]+)"', pyproject))
    to_conda = {"torch": "pytorch"}
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert len(envs) == 2
    for env in envs:
        deps = yaml.safe_load(env.read_text())["dependencies"]
        pinned = {d.split("=")[0]: d.split("=")[1] for d in deps if isinstance(d, str) and "=" in d}
        for name, version in pins.items():
            if name not in OUTSIDE_JOBS:
                assert pinned.get(to_conda.get(name, name)) == version, f"{env.name} lacks {name}=={version}"
        assert set(pinned) - CONDA_ONLY == {to_conda.get(n, n) for n in pins} - OUTSIDE_JOBS, env.name
    gpu = yaml.safe_load((ROOT / "envs/l1kformer-gpu.yaml").read_text())["dependencies"]
    assert any(d.startswith("pytorch=") and d.endswith("=cuda*") for d in gpu)


def test_gpu_rules_use_the_cuda_env():
    text = "".join(p.read_text() for p in (ROOT / "rules").glob("*.smk"))
    for rule in re.split(r"^rule ", text, flags=re.M)[1:]:
        name = rule.split(":")[0]
        env = re.findall(r'conda:\s*\n\s*"([^"]+)"', rule)[0]
        assert ("gpu=" in rule) == env.endswith("l1kformer-gpu.yaml"), name


def package_graph():
    """{module: the package modules it imports} over every module of the package."""
    graph = {}
    for path in PACKAGE.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("l1kformer"):
                found.update(node.module.split(".")[1:2] or [a.name for a in node.names])
        graph[path.stem] = found
    return graph


def test_the_package_imports_form_no_loop():
    graph, done, active = package_graph(), set(), []

    def visit(module):
        assert module not in active, " -> ".join(active + [module])
        if module not in done:
            active.append(module)
            for other in sorted(graph[module]):
                visit(other)
            active.pop()
            done.add(module)

    for module in sorted(graph):
        visit(module)


def test_network_layers_live_in_model_and_layers_only():
    """Every nn.Module of the package is defined in model.py or layers.py, and training imports no module
    that defines one besides those (tasks.py holds none)."""
    holders = set()
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                if bases & {"nn.Module", "nn.Linear", "Standardized", "Trainable", "torch.nn.Module"}:
                    holders.add(path.stem)
    assert holders == {"model", "layers"}


def test_no_package_function_over_60_lines_and_no_file_over_450():
    long = []
    for path in sorted(PACKAGE.glob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > 450:
            long.append(f"{path.name} ({len(text.splitlines())} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long
