"""Static checks of the workflow's wiring: declared package modules, envs and pins."""

import ast
import re

import yaml

from conftest import ROOT

SCRIPTS = ROOT / "workflow" / "scripts"
PACKAGE = SCRIPTS / "l1kformer"


def step_modules():
    tree = ast.parse((ROOT / "rules" / "common.smk").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "STEP_MODULES":
            return ast.literal_eval(node.value)
    raise AssertionError("STEP_MODULES not found in rules/common.smk")


def l1kformer_imports(path):
    """l1kformer modules imported anywhere in ``path`` (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("l1kformer"):
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("l1kformer."):
                    found.add(alias.name.split(".")[1])
    return found


def transitive(script):
    # modules imported, and modules started as programs ("-m l1kformer.distributed")
    started = set(re.findall(r'"l1kformer\.(\w+)"', script.read_text()))
    todo, seen = list(l1kformer_imports(script) | started), {"__init__"}
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(l1kformer_imports(PACKAGE / f"{module}.py"))
    return seen


def test_each_rule_declares_exactly_the_modules_its_script_imports():
    declared = step_modules()
    for step, modules in declared.items():
        assert set(modules) == transitive(SCRIPTS / f"{step}.py"), step


def test_every_script_has_its_rule_and_its_declaration():
    scripts = {p.stem for p in SCRIPTS.glob("*.py")}
    assert scripts == set(step_modules())
    rules_text = "".join(p.read_text() for p in (ROOT / "rules").glob("*.smk"))
    for step in scripts:
        assert f'"../workflow/scripts/{step}.py"' in rules_text
        assert f'package_files("{step}")' in rules_text


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
OUTSIDE_JOBS = {"snakemake", "snakemake-executor-plugin-slurm", "pytest", "transformers"}  # not in job envs


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
