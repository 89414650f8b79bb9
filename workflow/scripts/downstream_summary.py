import pandas as pd

from l1kformer import downstream_plots
from l1kformer.downstream import finetune_job, read_labels, summary_rows
from l1kformer.fileio import atomic_path, read_json
from l1kformer.step import step


with step(snakemake.log[0]) as log:
    tasks = snakemake.params.tasks
    metrics = {finetune_job(p): read_json(p) for p in snakemake.input.metrics}
    oracles = dict(zip(sorted(tasks), map(read_json, snakemake.input.oracle))) if snakemake.input.oracle else {}
    rows, panels, histories = [], [], []
    confusion_task = next((t for t in sorted(tasks) if tasks[t]["field"] == "cell_id"), sorted(tasks)[0])
    for task, labels_path, baselines_path in zip(sorted(tasks), snakemake.input.labels, snakemake.input.baselines):
        finetuned = {(run, start, readout): m for (run, start, readout, t), m in metrics.items() if t == task}
        rows += summary_rows(task, tasks[task]["field"], read_json(baselines_path)["baselines"], finetuned,
                             oracles.get(task))
        if task in oracles and "reason" in oracles[task]:
            log(f"{task}: no oracle row: {oracles[task]['reason']}")
        if task == confusion_task:
            _, classes = read_labels(labels_path)
    for path in snakemake.input.predictions:
        run, start, readout, task = finetune_job(path)
        if task == confusion_task and start == "pretrained":
            pred = pd.read_parquet(path)
            panels.append((f"{run} {readout} fine-tuned", pred["label"].to_numpy(), pred["finetuned"].to_numpy()))
    for path in snakemake.input.histories:
        run, start, readout, task = finetune_job(path)
        h = pd.read_csv(path, sep="\t")
        h["step_epoch"] = range(1, len(h) + 1)
        if start == "scratch":
            h["phase"] = "from scratch"
        histories.append(h.assign(run=f"{run} {readout}", task=task))
    table = pd.DataFrame(rows)
    with atomic_path(snakemake.output.table) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.5g")
    downstream_plots.accuracy(table, snakemake.output.accuracy)
    downstream_plots.confusion(panels, classes, snakemake.output.confusion)
    downstream_plots.curves(pd.concat(histories, ignore_index=True), snakemake.output.curves)
    for _, r in table.iterrows():
        log(f"{r['task']}: {r['name']} {r['variant']}".rstrip() + f": test accuracy {r['accuracy']:.4f}, "
            f"macro-F1 {r['macro_f1']:.4f}, val accuracy {r['val_accuracy']:.4f}")
