"""Draw the workflow's rule graph (``snakemake --rulegraph``) as docs/rulegraph.png, without Graphviz:
rules in layers by their longest path from the inputs, edges as lines.

    .venv/bin/python docs/rulegraph.py
"""

import re
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def rule_graph():
    dot = subprocess.run([sys.executable, "-m", "snakemake", "--rulegraph", "-q"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    names = dict(re.findall(r"^\s*(\d+)\[label = \"(\w+)\"", dot, re.M))
    edges = [(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M)]
    return sorted(names.values()), [(a, b) for a, b in edges if b != "all"]


def layers(nodes, edges):
    depth = {n: 0 for n in nodes}
    for _ in nodes:  # longest path from a source: relax |nodes| times
        for a, b in edges:
            depth[b] = max(depth[b], depth[a] + 1)
    return depth


def main():
    nodes, edges = rule_graph()
    nodes = [n for n in nodes if n != "all"]
    depth = layers(nodes, edges)
    rows = {}
    for n in sorted(nodes, key=lambda n: (depth[n], n)):
        rows.setdefault(depth[n], []).append(n)
    pos = {n: (i - (len(row) - 1) / 2, -d) for d, row in rows.items() for i, n in enumerate(row)}
    fig, ax = plt.subplots(figsize=(max(9, 1.9 * max(map(len, rows.values()))), 0.9 * len(rows) + 0.5))
    for a, b in edges:
        ax.annotate("", xy=pos[b], xytext=pos[a], arrowprops={"arrowstyle": "->", "color": "0.6", "lw": 1,
                                                               "shrinkA": 12, "shrinkB": 12})
    for n, (x, y) in pos.items():
        ax.text(x, y, n, ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "round", "fc": "white", "ec": "tab:blue"})
    ax.set_xlim(min(x for x, _ in pos.values()) - 1, max(x for x, _ in pos.values()) + 1)
    ax.set_ylim(-len(rows) + 0.4, 0.6)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(ROOT / "docs/rulegraph.png", dpi=110)
    print(f"wrote docs/rulegraph.png: {len(nodes)} rules, {len(edges)} edges")


if __name__ == "__main__":
    main()
