rule baselines_rank:
    input:
        ranks=R("data/ranks.h5"),
        split=R("data/split.h5"),
        mask=R("data/mask.h5"),
        package=package_files("baselines_rank"),
    output:
        metrics=R("baselines/rank.json"),
    params:
        settings=section("evaluate", ["smoothing_sigma", "tune_profiles"]),
    threads: 2
    log:
        R("logs/baselines_rank.log"),
    benchmark:
        R("benchmarks/baselines_rank.tsv")
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/baselines_rank.py"


rule baselines_expression:
    input:
        expression=R("data/expression.h5"),
        split=R("data/split.h5"),
        mask=R("data/mask.h5"),
        package=package_files("baselines_expression"),
    output:
        metrics=R("baselines/expression.json"),
    params:
        settings=section("evaluate", ["knn_k", "knn_reference", "tune_profiles"]),
    threads: 2
    log:
        R("logs/baselines_expression.log"),
    benchmark:
        R("benchmarks/baselines_expression.tsv")
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/baselines_expression.py"


rule oracle:
    input:
        expression=R("data/expression.h5"),
        samples=R("data/samples.parquet"),
        truth=SIMULATED_TRUTH,
        mask=R("data/mask.h5"),
        package=package_files("oracle"),
    output:
        metrics=R("baselines/oracle.json"),
    threads: 4
    log:
        R("logs/oracle.log"),
    benchmark:
        R("benchmarks/oracle.tsv")
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/oracle.py"


rule embed:
    input:
        model=R("runs/{run}/model.pt"),
        data=run_data,
        samples=R("data/samples.parquet"),
        genes=R("data/genes.tsv"),
        split=R("data/split.h5"),
        package=package_files("embed"),
    output:
        train=R("runs/{run}/embeddings_train.parquet"),
        val=R("runs/{run}/embeddings_val.parquet"),
        test=R("runs/{run}/embeddings_test.parquet"),
        genes=R("runs/{run}/gene_embeddings.parquet"),
    params:
        device=lambda wildcards: run_settings(wildcards.run)["device"],
        readout=lambda wildcards: run_readouts(wildcards.run)[0],
        readout_width=config["downstream"]["finetune"]["readout_width"],
    threads: 8
    resources:
        gpu=lambda wildcards: min(1, run_gpus(wildcards.run)),
    log:
        R("logs/embed_{run}.log"),
    benchmark:
        R("benchmarks/embed_{run}.tsv")
    conda:
        "../envs/l1kformer-gpu.yaml"
    script:
        "../workflow/scripts/embed.py"


rule evaluate:
    input:
        model=R("runs/{run}/model.pt"),
        data=run_data,
        mask=R("data/mask.h5"),
        package=package_files("evaluate"),
    output:
        metrics=R("runs/{run}/metrics.json"),
        predictions=R("runs/{run}/predictions.parquet"),
    params:
        device=lambda wildcards: run_settings(wildcards.run)["device"],
    threads: 8
    resources:
        gpu=lambda wildcards: min(1, run_gpus(wildcards.run)),
    log:
        R("logs/evaluate_{run}.log"),
    benchmark:
        R("benchmarks/evaluate_{run}.tsv")
    conda:
        "../envs/l1kformer-gpu.yaml"
    script:
        "../workflow/scripts/evaluate.py"


for _mode, _spec in MODES.items():

    rule:
        name:
            f"plot_{_mode}"
        input:
            history=R("runs/{run}/history.tsv"),
            metrics=R("runs/{run}/metrics.json"),
            predictions=R("runs/{run}/predictions.parquet"),
            baselines=run_baselines,
            genes=R("data/genes.tsv"),
            package=package_files("plot_run"),
        output:
            **{plot: report(R(f"runs/{{run}}/plots/{plot}.png"), caption=f"../workflow/report/{_mode}_{plot}.rst",
                            category=f"{_mode.capitalize()} mode", subcategory="{run}",
                            labels={"run": "{run}", "figure": plot.replace("_", " ")})
               for plot in _spec["plots"]},
        wildcard_constraints:
            run=one_of(runs_of(_mode)),
        log:
            R(f"logs/plot_{_mode}_{{run}}.log"),
        benchmark:
            R(f"benchmarks/plot_{_mode}_{{run}}.tsv")
        conda:
            "../envs/l1kformer.yaml"
        script:
            "../workflow/scripts/plot_run.py"


rule summary:
    input:
        unpack(summary_inputs),
        package=package_files("summary"),
    output:
        table=report(R("summary.tsv"), caption="../workflow/report/summary.rst", category="Summary",
                     labels={"figure": "summary table"}),
        comparison=report(R("plots/comparison.png"), caption="../workflow/report/comparison.rst",
                          category="Summary", labels={"figure": "models vs baselines"}),
    params:
        modes=sorted(MODES),
    log:
        R("logs/summary.log"),
    benchmark:
        R("benchmarks/summary.tsv")
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/summary.py"
