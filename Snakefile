# l1kformer: masked transformers on LINCS L1000 expression. Stages live in rules/, logic in the
# l1kformer package (workflow/scripts/l1kformer/), settings in config.yaml.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/downstream.smk"


rule all:
    input:
        get_final_output(),
