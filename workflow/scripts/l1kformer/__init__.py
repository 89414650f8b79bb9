"""l1kformer: masked transformers on LINCS L1000 landmark-gene expression.

The package holds the logic of every pipeline step (ingest, rank, split, mask, ...); the scripts in
``workflow/scripts/`` only read Snakemake's inputs and call it. Nothing here imports snakemake.
"""

__version__ = "0.1.0"
