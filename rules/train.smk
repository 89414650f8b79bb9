rule train:
    input:
        data=run_data,
        split=R("data/split.h5"),
        mask=R("data/mask.h5"),
        package=package_files("train"),
    output:
        model=R("runs/{run}/model.pt"),
        history=R("runs/{run}/history.tsv"),
    params:
        settings=lambda wildcards: run_settings(wildcards.run),
    wildcard_constraints:
        run="[A-Za-z0-9_.-]+",
    threads: 8
    resources:
        gpu=lambda wildcards: run_gpus(wildcards.run),
    log:
        R("logs/train_{run}.log"),
    benchmark:
        R("benchmarks/train_{run}.tsv")
    conda:
        "../envs/l1kformer-gpu.yaml"
    script:
        "../workflow/scripts/train.py"
