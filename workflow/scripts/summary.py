from pathlib import Path

from l1kformer import plots
from l1kformer.fileio import atomic_path, read_baselines, read_bounds, read_json
from l1kformer.step import step
from l1kformer.summary import comparison_panels, summary_table, versus_baselines

with step(snakemake.log[0]) as log:
    runs = {Path(p).parent.name: read_json(p) for p in snakemake.input.metrics}
    baselines = {mode: read_baselines(snakemake.input[f"{mode}_baselines"]) for mode in snakemake.params.modes
                 if f"{mode}_baselines" in snakemake.input.keys()}
    bounds = read_bounds([p for mode in baselines for p in snakemake.input[f"{mode}_baselines"]])
    versus = versus_baselines(runs, baselines, bounds)
    table = summary_table(runs, baselines, versus)
    with atomic_path(snakemake.output.table) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.5g")
    plots.comparison(table, comparison_panels(table["mode"].unique()), snakemake.output.comparison)
    log(f"{len(runs)} runs and {sum(len(b) for b in baselines.values())} baselines")
    for run, scores in versus.items():
        for metric, (name, value, ratio) in scores.items():
            log(f"{run}: {metric} {runs[run]['test'][metric]:.4g} against {value:.4g} for the best baseline "
                f"({name}): {ratio:.3f}x")
