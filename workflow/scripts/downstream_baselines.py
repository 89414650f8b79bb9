import torch

from l1kformer.downstream import read_labels
from l1kformer.downstream_baselines import all_baselines
from l1kformer.fileio import write_json
from l1kformer.device import pick_device
from l1kformer.step import job_threads, step

with step(snakemake.log[0]) as log:
    torch.set_num_threads(job_threads(snakemake.threads))
    device = pick_device(snakemake.params.device, log)
    frame, classes = read_labels(snakemake.input.labels)
    paths = {"rank": snakemake.input.rank, "expression": snakemake.input.expression}
    write_json(snakemake.output.metrics, {"classes": classes, "baselines": all_baselines(
        paths, frame, len(classes), snakemake.params.settings, device, log)})
