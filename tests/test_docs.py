"""The README and docs say what the code does: every config key they name exists, the configuration
table covers every key, every file they name is there, their commands name real files, and the
options the model study rejected are gone from the README, the config and the schema."""

import re

import pytest
import yaml

from conftest import ROOT

DOCS = [ROOT / "README.md", *(ROOT / "docs" / f for f in ("configuration.md", "inputs.md", "outputs.md",
                                                          "models.md")), ROOT / "benchmarks/README.md"]
CONFIG = yaml.safe_load((ROOT / "config.yaml").read_text())
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
SETTINGS = set(SCHEMA["$defs"]["settings"]["properties"])


def known(section, key):
    if section in ("train", "runs", "sweeps"):
        return key in SETTINGS or section != "train" and key in ("base", "grid", "mode")
    return isinstance(CONFIG.get(section), dict) and key in CONFIG[section]


def code_spans(path):
    return re.findall(r"`([^`\n]+)`", path.read_text())


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_key_the_docs_name_exists(doc):
    for span in code_spans(doc):
        if re.search(r"\.(py|smk|yaml|md|sh|png|tsv|json|parquet)$", span):  # a file, not a key
            continue
        for section, key in re.findall(r"^(simulate|data|rank|split|mask|train|evaluate|downstream)\.(\w+)", span):
            assert known(section, key), f"{doc.name}: {span}"


def test_the_configuration_table_covers_every_key_and_names_only_real_ones():
    rows = [line.split("|")[1] for line in (ROOT / "docs/configuration.md").read_text().splitlines()
            if line.startswith("| `")]
    named = set()
    for cell in rows:
        keys = re.findall(r"`([\w.]+)`", cell)
        section = keys[0].split(".")[0] if "." in keys[0] else None
        for key in keys:
            full = key if "." in key or section is None else f"{section}.{key}"
            named.add(full)
            if "." in full:
                assert known(*full.split(".", 1)), full
    expected = {f"{s}.{k}" for s, v in CONFIG.items() if isinstance(v, dict) and s not in ("runs",)
                for k in v} | {k for k, v in CONFIG.items() if not isinstance(v, dict) or k == "runs"}
    assert expected <= named, sorted(expected - named)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_the_docs_name_is_there(doc):
    for span in code_spans(doc):
        for path in re.findall(r"^((?:workflow|rules|resources/examples|docs|benchmarks|tests|envs|profiles|\.ci)"
                               r"/[\w./-]*\w|l1kformer/\w+\.py)$", span):
            where = ROOT / "workflow/scripts" / path if path.startswith("l1kformer/") else ROOT / path
            assert where.exists() or "{" in path, f"{doc.name}: {path}"


def test_every_relative_link_and_path_in_the_readme_exists():
    text = (ROOT / "README.md").read_text()
    links = [t for t in re.findall(r"\]\(([^)#\s]+)", text) if "://" not in t]
    assert links, "the README links to docs"
    for target in links:
        assert (ROOT / target).exists(), target
    for span in code_spans(ROOT / "README.md"):
        for path in re.findall(r"^((?:[\w.-]+/)+[\w.-]*\w|[\w-]+\.(?:py|smk|yaml|md|toml))$", span):
            if "{" in path or path.startswith(("results", "runs/", "data/", "downstream/", "baselines/", "plots/",
                                                "../", "/", "resources/simulated/")) or path == "my.yaml":
                continue  # outputs (the simulated set too), a user's own files and the shared data
            assert (ROOT / path).exists() or (ROOT / "workflow/scripts" / path).exists() or \
                any((ROOT / d / path).exists() for d in ("rules", "workflow/scripts/l1kformer")), path


def test_the_readme_commands_name_real_files():
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    spans = code_spans(ROOT / "README.md")
    for command in blocks + [s for s in spans if s.startswith("snakemake")]:
        for flag, value in re.findall(r"--(configfile|workflow-profile) (\S+)", command):
            assert (ROOT / value).exists() or value == "my.yaml", command
    command = 'pytest -m "not study" -ra'  # .ci/run runs the README's test command
    assert any(command in b for b in blocks) and command in (ROOT / ".ci/run").read_text()


def test_the_rejected_options_are_gone():
    for path in (ROOT / "README.md", ROOT / "config.yaml", ROOT / "workflow/schemas/config.schema.yaml",
                 *(ROOT / "workflow/scripts").rglob("*.py")):
        if path.name == "settings.py":  # the upgrade of old model files names them, to refuse them
            continue
        text = path.read_text()
        for option in ("n_registers", "profile_token", "rank_values", "soft_bins"):
            assert option not in text, (path, option)
