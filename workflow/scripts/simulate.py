from l1kformer.simulate import SimulationConfig, simulate
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    p = snakemake.params
    cfg = SimulationConfig(n_genes=p.n_genes, n_cell_lines=p.n_cell_lines, n_compounds=p.n_compounds,
                           n_plates=p.n_plates, wells_per_plate=p.wells_per_plate,
                           n_factors=p.n_factors, seed=p.seed)
    simulate(cfg, snakemake.output.gctx, snakemake.output.truth, log=log)
