rule train:
    input:
        data=run_data,
        split="results/data/split.h5",
        mask="results/data/mask.h5",
        package=package_files("train"),
    output:
        model="results/runs/{run}/model.pt",
        history="results/runs/{run}/history.tsv",
    params:
        settings=lambda wildcards: run_settings(wildcards.run),
    wildcard_constraints:
        run="[A-Za-z0-9_.-]+",
    threads: 8
    resources:
        gpu=lambda wildcards: run_gpus(wildcards.run),
    log:
        "results/logs/train_{run}.log",
    benchmark:
        "results/benchmarks/train_{run}.tsv"
    conda:
        "../envs/l1kformer-gpu.yaml"
    script:
        "../workflow/scripts/train.py"
