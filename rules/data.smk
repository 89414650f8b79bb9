rule simulate:
    output:
        gctx=SIMULATED_GCTX,
        truth=SIMULATED_TRUTH,
    input:
        package=package_files("simulate"),
    params:
        settings=section("simulate"),
    log:
        "results/logs/simulate.log",
    benchmark:
        "results/benchmarks/simulate.tsv"
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/simulate.py"


rule ingest:
    input:
        unpack(ingest_inputs),
        package=package_files("ingest"),
    output:
        expression="results/data/expression.h5",
        samples="results/data/samples.parquet",
        genes="results/data/genes.tsv",
    params:
        settings=section("data", ["n_genes", "gene_key", "gene_match", "orientation", "filters", "level"]),
    log:
        "results/logs/ingest.log",
    benchmark:
        "results/benchmarks/ingest.tsv"
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/ingest.py"


rule split:
    input:
        samples="results/data/samples.parquet",
        package=package_files("split"),
    output:
        split="results/data/split.h5",
    params:
        settings=section("split"),
    log:
        "results/logs/split.log",
    benchmark:
        "results/benchmarks/split.tsv"
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/split.py"


rule rank:
    input:
        unpack(rank_inputs),
        package=package_files("rank"),
    output:
        ranks="results/data/ranks.h5",
    params:
        normalize=config["rank"]["normalize"],
    threads: 2
    log:
        "results/logs/rank.log",
    benchmark:
        "results/benchmarks/rank.tsv"
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/rank.py"


rule mask:
    input:
        split="results/data/split.h5",
        expression="results/data/expression.h5",
        package=package_files("mask"),
    output:
        mask="results/data/mask.h5",
    params:
        settings=section("mask"),
    log:
        "results/logs/mask.log",
    benchmark:
        "results/benchmarks/mask.tsv"
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/mask.py"
