from l1kformer.simulate import SimulationConfig, simulate
from l1kformer.step import step

with step(snakemake.log[0]) as log:
    simulate(SimulationConfig(**snakemake.params.settings), snakemake.output.gctx, snakemake.output.truth, log=log)
