rule baselines_rank:
    input:
        ranks="results/data/ranks.h5",
        split="results/data/split.h5",
        mask="results/data/mask.h5",
        package=package_files("baselines_rank"),
    output:
        metrics="results/baselines/rank.json",
    params:
        smoothing_sigma=config["evaluate"]["smoothing_sigma"],
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
        unpack(expression_baseline_inputs),
        split="results/data/split.h5",
        mask="results/data/mask.h5",
        package=package_files("baselines_expression"),
    output:
        metrics="results/baselines/expression.json",
    params:
        knn_k=config["evaluate"]["knn_k"],
        knn_reference=config["evaluate"]["knn_reference"],
        tune_profiles=config["evaluate"]["tune_profiles"],
    log:
        "results/logs/baselines_expression.log",
    benchmark:
        "results/benchmarks/baselines_expression.tsv"
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/baselines_expression.py"


rule embed:
    input:
        model="results/runs/{run}/model.pt",
        data=train_data,
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
    threads: 8
    resources:
        gpu=1,
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
        data=train_data,
        mask="results/data/mask.h5",
        baselines=run_baselines,
        probe="results/runs/{run}/probe.json",
        package=package_files("evaluate"),
    output:
        metrics="results/runs/{run}/metrics.json",
        predictions="results/runs/{run}/predictions.parquet",
    threads: 8
    resources:
        gpu=1,
    log:
        "results/logs/evaluate_{run}.log",
    benchmark:
        "results/benchmarks/evaluate_{run}.tsv"
    conda:
        "../envs/l1kformer-gpu.yaml"
    script:
        "../workflow/scripts/evaluate.py"


rule plot_training:
    input:
        history="results/runs/{run}/history.tsv",
        metrics="results/runs/{run}/metrics.json",
        package=package_files("plot_training"),
    output:
        curves=report("results/runs/{run}/plots/training_curves.png",
                      caption="../workflow/report/training_curves.rst", category="Training",
                      subcategory="{run}", labels={"run": "{run}", "figure": "training curves"}),
    log:
        "results/logs/plot_training_{run}.log",
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/plot_training.py"


rule plot_rank:
    input:
        metrics="results/runs/{run}/metrics.json",
        predictions="results/runs/{run}/predictions.parquet",
        package=package_files("plot_rank"),
    output:
        genes=report("results/runs/{run}/plots/genes.png", caption="../workflow/report/rank_genes.rst",
                     category="Rank mode", subcategory="{run}", labels={"run": "{run}", "figure": "genes"}),
        by_position=report("results/runs/{run}/plots/by_position.png",
                           caption="../workflow/report/rank_by_position.rst", category="Rank mode",
                           subcategory="{run}", labels={"run": "{run}", "figure": "error by position"}),
        heatmap=report("results/runs/{run}/plots/heatmap.png", caption="../workflow/report/rank_heatmap.rst",
                       category="Rank mode", subcategory="{run}", labels={"run": "{run}", "figure": "positions"}),
        baselines=report("results/runs/{run}/plots/baselines.png",
                         caption="../workflow/report/rank_baselines.rst", category="Rank mode",
                         subcategory="{run}", labels={"run": "{run}", "figure": "vs baselines"}),
    wildcard_constraints:
        run=one_of(runs_of("rank")),
    log:
        "results/logs/plot_rank_{run}.log",
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/plot_rank.py"


rule plot_expression:
    input:
        metrics="results/runs/{run}/metrics.json",
        predictions="results/runs/{run}/predictions.parquet",
        genes="results/data/genes.tsv",
        package=package_files("plot_expression"),
    output:
        scatter=report("results/runs/{run}/plots/scatter.png", caption="../workflow/report/expr_scatter.rst",
                       category="Expression mode", subcategory="{run}",
                       labels={"run": "{run}", "figure": "predicted vs true"}),
        worst_genes=report("results/runs/{run}/plots/worst_genes.png",
                           caption="../workflow/report/expr_worst_genes.rst", category="Expression mode",
                           subcategory="{run}", labels={"run": "{run}", "figure": "worst genes"}),
        error_vs_level=report("results/runs/{run}/plots/error_vs_level.png",
                              caption="../workflow/report/expr_error_vs_level.rst", category="Expression mode",
                              subcategory="{run}", labels={"run": "{run}", "figure": "error vs level"}),
        baselines=report("results/runs/{run}/plots/baselines.png",
                         caption="../workflow/report/expr_baselines.rst", category="Expression mode",
                         subcategory="{run}", labels={"run": "{run}", "figure": "vs baselines"}),
    wildcard_constraints:
        run=one_of(runs_of("expression")),
    log:
        "results/logs/plot_expression_{run}.log",
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/plot_expression.py"


rule summary:
    input:
        unpack(summary_inputs),
        package=package_files("summary"),
    output:
        table=report("results/summary.tsv", caption="../workflow/report/summary.rst", category="Summary",
                     labels={"figure": "summary table"}),
        comparison=report("results/plots/comparison.png", caption="../workflow/report/comparison.rst",
                          category="Summary", labels={"figure": "models vs baselines"}),
    log:
        "results/logs/summary.log",
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/summary.py"
