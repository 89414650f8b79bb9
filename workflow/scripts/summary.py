from pathlib import Path

from l1kformer import plots
from l1kformer.fileio import atomic_path, read_json
from l1kformer.step import step
from l1kformer.summary import summary_table

with step(snakemake.log[0]) as log:
    runs = {Path(p).parent.name: read_json(p) for p in snakemake.input.metrics}
    baselines = {mode: read_json(p)["baselines"] for mode, p in
                 (("rank", snakemake.input.get("rank_baselines")),
                  ("expression", snakemake.input.get("expression_baselines"))) if p}
    table = summary_table(runs, baselines)
    with atomic_path(snakemake.output.table) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.5g")
    plots.comparison(table, snakemake.output.comparison)
    log(f"{len(runs)} runs and {sum(len(b) for b in baselines.values())} baselines")
