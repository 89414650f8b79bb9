rule simulate:
    output:
        gctx=SIMULATED_GCTX,
        truth=SIMULATED_TRUTH,
    input:
        package=package_files("simulate"),
    params:
        n_genes=config["simulate"]["n_genes"],
        n_cell_lines=config["simulate"]["n_cell_lines"],
        n_compounds=config["simulate"]["n_compounds"],
        n_plates=config["simulate"]["n_plates"],
        wells_per_plate=config["simulate"]["wells_per_plate"],
        n_factors=config["simulate"]["n_factors"],
        seed=config["simulate"]["seed"],
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
        n_genes=config["data"]["n_genes"],
        gene_key=config["data"]["gene_key"],
        gene_match=config["data"]["gene_match"],
        orientation=config["data"]["orientation"],
        filters=sorted_dict(config["data"]["filters"]),
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
        seed=config["split"]["seed"],
        train=config["split"]["train"],
        val=config["split"]["val"],
        test=config["split"]["test"],
        group_by=config["split"]["group_by"] or "",
    log:
        "results/logs/split.log",
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
        ratio=config["mask"]["ratio"],
        seed=config["mask"]["seed"],
    log:
        "results/logs/mask.log",
    conda:
        "../envs/l1kformer.yaml"
    script:
        "../workflow/scripts/mask.py"
