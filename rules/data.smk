rule simulate:
    output:
        gctx=SIMULATED_GCTX,
        truth=SIMULATED_TRUTH,
    input:
        package=package_files("simulate"),
    params:
        settings=section("simulate"),
    log:
        R("logs/simulate.log"),
    benchmark:
        R("benchmarks/simulate.tsv")
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/simulate.py"


rule ingest:
    input:
        unpack(ingest_inputs),
        package=package_files("ingest"),
    output:
        expression=R(INGESTED),
        samples=R("data/samples.parquet"),
        genes=R("data/genes.tsv"),
    params:
        settings=section("data", ["n_genes", "gene_key", "gene_match", "gene_filter", "sample_key",
                                  "orientation", "filters", "level"]),
    log:
        R("logs/ingest.log"),
    benchmark:
        R("benchmarks/ingest.tsv")
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/ingest.py"


if config["data"]["level"] == 2:

    rule normalize:
        input:
            expression=R(INGESTED),
            samples=R("data/samples.parquet"),
            package=package_files("normalize"),
        output:
            expression=R("data/expression.h5"),
        params:
            plate_field=config["data"]["plate_field"],
        threads: 2
        log:
            R("logs/normalize.log"),
        benchmark:
            R("benchmarks/normalize.tsv")
        conda:
            "../envs/l1kformer.yaml"
        script:
            "../workflow/scripts/normalize.py"


rule split:
    input:
        samples=R("data/samples.parquet"),
        package=package_files("split"),
    output:
        split=R("data/split.h5"),
    params:
        settings=section("split"),
    log:
        R("logs/split.log"),
    benchmark:
        R("benchmarks/split.tsv")
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/split.py"


rule rank:
    input:
        unpack(rank_inputs),
        package=package_files("rank"),
    output:
        ranks=R("data/ranks.h5"),
    params:
        normalize=config["rank"]["normalize"],
    threads: 2
    log:
        R("logs/rank.log"),
    benchmark:
        R("benchmarks/rank.tsv")
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/rank.py"


rule mask:
    input:
        split=R("data/split.h5"),
        expression=R("data/expression.h5"),
        package=package_files("mask"),
    output:
        mask=R("data/mask.h5"),
    params:
        settings=section("mask"),
    log:
        R("logs/mask.log"),
    benchmark:
        R("benchmarks/mask.tsv")
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/mask.py"
