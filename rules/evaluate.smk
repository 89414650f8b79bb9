rule baselines_rank:
    input:
        ranks="results/data/ranks.h5",
        split="results/data/split.h5",
        mask="results/data/mask.h5",
        package=package_files("baselines_rank"),
    output:
        metrics="results/baselines/rank.json",
    params:
        settings=section("evaluate", ["smoothing_sigma", "tune_profiles"]),
    threads: 2
    log:
        "results/logs/baselines_rank.log",
    benchmark:
        "results/benchmarks/baselines_rank.tsv"
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/baselines_rank.py"


rule baselines_expression:
    input:
        expression="results/data/expression.h5",
        split="results/data/split.h5",
        mask="results/data/mask.h5",
        package=package_files("baselines_expression"),
    output:
        metrics="results/baselines/expression.json",
    params:
        settings=section("evaluate", ["knn_k", "knn_reference", "tune_profiles"]),
    threads: 2
    log:
        "results/logs/baselines_expression.log",
    benchmark:
        "results/benchmarks/baselines_expression.tsv"
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/baselines_expression.py"


rule oracle:
    input:
        expression="results/data/expression.h5",
        samples="results/data/samples.parquet",
        truth=SIMULATED_TRUTH,
        mask="results/data/mask.h5",
        package=package_files("oracle"),
    output:
        metrics="results/baselines/oracle.json",
    log:
        "results/logs/oracle.log",
    benchmark:
        "results/benchmarks/oracle.tsv"
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/oracle.py"


rule embed:
    input:
        model="results/runs/{run}/model.pt",
        data=run_data,
        expression="results/data/expression.h5",
        samples="results/data/samples.parquet",
        genes="results/data/genes.tsv",
        mask="results/data/mask.h5",
        package=package_files("embed"),
    output:
        val="results/runs/{run}/embeddings_val.parquet",
        test="results/runs/{run}/embeddings_test.parquet",
        genes="results/runs/{run}/gene_embeddings.parquet",
        probe="results/runs/{run}/probe.json",
    params:
        fields=config["evaluate"]["probe_fields"],
        max_profiles=config["evaluate"]["probe_max_profiles"],
        device=lambda wildcards: run_settings(wildcards.run)["device"],
    threads: 8
    resources:
        gpu=lambda wildcards: min(1, run_gpus(wildcards.run)),
    log:
        "results/logs/embed_{run}.log",
    benchmark:
        "results/benchmarks/embed_{run}.tsv"
    conda:
        "../envs/l1kformer-gpu.yaml"
    script:
        "../workflow/scripts/embed.py"


rule evaluate:
    input:
        model="results/runs/{run}/model.pt",
        data=run_data,
        mask="results/data/mask.h5",
        package=package_files("evaluate"),
    output:
        metrics="results/runs/{run}/metrics.json",
        predictions="results/runs/{run}/predictions.parquet",
    params:
        device=lambda wildcards: run_settings(wildcards.run)["device"],
    threads: 8
    resources:
        gpu=lambda wildcards: min(1, run_gpus(wildcards.run)),
    log:
        "results/logs/evaluate_{run}.log",
    benchmark:
        "results/benchmarks/evaluate_{run}.tsv"
    conda:
        "../envs/l1kformer-gpu.yaml"
    script:
        "../workflow/scripts/evaluate.py"


for _mode, _spec in MODES.items():

    rule:
        name:
            f"plot_{_mode}"
        input:
            history="results/runs/{run}/history.tsv",
            metrics="results/runs/{run}/metrics.json",
            predictions="results/runs/{run}/predictions.parquet",
            baselines=run_baselines,
            genes="results/data/genes.tsv",
            package=package_files("plot_run"),
        output:
            **{plot: report(f"results/runs/{{run}}/plots/{plot}.png", caption=f"../workflow/report/{_mode}_{plot}.rst",
                            category=f"{_mode.capitalize()} mode", subcategory="{run}",
                            labels={"run": "{run}", "figure": plot.replace("_", " ")})
               for plot in _spec["plots"]},
        wildcard_constraints:
            run=one_of(runs_of(_mode)),
        log:
            f"results/logs/plot_{_mode}_{{run}}.log",
        benchmark:
            f"results/benchmarks/plot_{_mode}_{{run}}.tsv"
        conda:
            "../envs/l1kformer.yaml"
        script:
            "../workflow/scripts/plot_run.py"


rule summary:
    input:
        unpack(summary_inputs),
        package=package_files("summary"),
    output:
        table=report("results/summary.tsv", caption="../workflow/report/summary.rst", category="Summary",
                     labels={"figure": "summary table"}),
        comparison=report("results/plots/comparison.png", caption="../workflow/report/comparison.rst",
                          category="Summary", labels={"figure": "models vs baselines"}),
    params:
        modes=sorted(MODES),
    log:
        "results/logs/summary.log",
    benchmark:
        "results/benchmarks/summary.tsv"
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/summary.py"
