rule downstream_labels:
    input:
        samples=R("data/samples.parquet"),
        split=R("data/split.h5"),
        package=package_files("downstream_labels"),
    output:
        labels=R("downstream/{task}/labels.parquet"),
    params:
        settings=lambda wildcards: downstream_task(wildcards.task),
        group_by=config["split"]["group_by"],
    wildcard_constraints:
        task=one_of(downstream_tasks()),
    log:
        R("logs/downstream_labels_{task}.log"),
    benchmark:
        R("benchmarks/downstream_labels_{task}.tsv")
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/downstream_labels.py"


rule downstream_baselines:
    input:
        labels=R("downstream/{task}/labels.parquet"),
        rank=R("data/ranks.h5"),
        expression=R("data/expression.h5"),
        package=package_files("downstream_baselines"),
    output:
        metrics=R("downstream/{task}/baselines.json"),
    params:
        settings=section_of("downstream", "baselines"),
        device=config["train"]["device"],
    wildcard_constraints:
        task=one_of(downstream_tasks()),
    threads: 2
    resources:
        gpu=min(1, default_gpus()),
    log:
        R("logs/downstream_baselines_{task}.log"),
    benchmark:
        R("benchmarks/downstream_baselines_{task}.tsv")
    conda:
        "../envs/l1kformer-gpu.yaml"
    script:
        "../workflow/scripts/downstream_baselines.py"


rule downstream_oracle:
    input:
        labels=R("downstream/{task}/labels.parquet"),
        expression=R("data/expression.h5"),
        samples=R("data/samples.parquet"),
        truth=SIMULATED_TRUTH,
        package=package_files("downstream_oracle"),
    output:
        metrics=R("downstream/{task}/oracle.json"),
    wildcard_constraints:
        task=one_of(downstream_tasks()),
    log:
        R("logs/downstream_oracle_{task}.log"),
    benchmark:
        R("benchmarks/downstream_oracle_{task}.tsv")
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/downstream_oracle.py"


rule finetune:
    input:
        model=R("runs/{run}/model.pt"),
        data=run_data,
        labels=R("downstream/{task}/labels.parquet"),
        package=package_files("finetune"),
    output:
        metrics=R("runs/{run}/downstream/{start}/{readout}/{task}/metrics.json"),
        history=R("runs/{run}/downstream/{start}/{readout}/{task}/history.tsv"),
        predictions=R("runs/{run}/downstream/{start}/{readout}/{task}/predictions.parquet"),
        features=R("runs/{run}/downstream/{start}/{readout}/{task}/features_test.parquet"),
    params:
        settings=section_of("downstream", "finetune", drop=["from_scratch", "readout"]),
        device=lambda wildcards: run_settings(wildcards.run)["device"],
    wildcard_constraints:
        task=one_of(downstream_tasks()),
        start="pretrained|scratch",
        readout="mean|cls|attention|genes",
    threads: 8
    resources:
        gpu=lambda wildcards: min(1, run_gpus(wildcards.run)),
    log:
        R("logs/finetune_{run}_{start}_{readout}_{task}.log"),
    benchmark:
        R("benchmarks/finetune_{run}_{start}_{readout}_{task}.tsv")
    conda:
        "../envs/l1kformer-gpu.yaml"
    script:
        "../workflow/scripts/finetune.py"


rule retrieval:
    input:
        unpack(retrieval_inputs),
        package=package_files("retrieval"),
    output:
        table=report(R("downstream/retrieval.tsv"), caption="../workflow/report/retrieval_table.rst",
                     category="Downstream", labels={"figure": "retrieval table"}),
        groups=R("downstream/retrieval_groups.tsv"),
        by=R("downstream/retrieval_by.tsv"),
        figure=report(R("plots/retrieval_map.png"), caption="../workflow/report/retrieval_map.rst",
                      category="Downstream", labels={"figure": "retrieval mAP"}),
    params:
        settings=section_of("downstream", "retrieval"),
        embeddings=lambda wildcards: retrieval_embeddings(),
    threads: 2
    log:
        R("logs/retrieval.log"),
    benchmark:
        R("benchmarks/retrieval.tsv")
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/retrieval.py"


rule downstream_summary:
    input:
        unpack(downstream_summary_inputs),
        package=package_files("downstream_summary"),
    output:
        table=report(R("downstream.tsv"), caption="../workflow/report/downstream_table.rst",
                     category="Downstream", labels={"figure": "downstream table"}),
        accuracy=report(R("plots/downstream_accuracy.png"), caption="../workflow/report/downstream_accuracy.rst",
                        category="Downstream", labels={"figure": "accuracy per task"}),
        confusion=report(R("plots/downstream_confusion.png"), caption="../workflow/report/downstream_confusion.rst",
                         category="Downstream", labels={"figure": "confusion matrices"}),
        curves=report(R("plots/finetune_curves.png"), caption="../workflow/report/finetune_curves.rst",
                      category="Downstream", labels={"figure": "fine-tuning curves"}),
    params:
        tasks=sorted_dict(config["downstream"]["tasks"]),
    log:
        R("logs/downstream_summary.log"),
    benchmark:
        R("benchmarks/downstream_summary.tsv")
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/downstream_summary.py"
