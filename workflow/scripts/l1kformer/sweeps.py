"""Sweeps: a grid of settings expanded into named runs.

``sweeps: {size: {base: {mode: rank}, grid: {d_model: [64, 128], mask_schedule: [constant, linear]}}}``
becomes runs ``size.d_model-64.mask_schedule-constant`` ... (grid keys in sorted order). Each run is an
ordinary run: changing one run's settings reruns that run only.
"""

import itertools

from l1kformer.errors import InputError


def _fmt(value):
    return format(value, "g") if isinstance(value, float) else str(value)


def expand_sweeps(runs, sweeps):
    """``runs`` plus one run per grid point of every sweep; names must not clash."""
    out = dict(runs)
    for name, sweep in sorted(sweeps.items()):
        grid = sweep["grid"]
        keys = sorted(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            run = ".".join([name] + [f"{k}-{_fmt(v)}" for k, v in zip(keys, values)])
            if run in out:
                raise InputError(f"sweeps.{name}", f"run name {run!r} is already taken")
            out[run] = {**sweep.get("base", {}), **dict(zip(keys, values))}
            if "mode" not in out[run]:
                raise InputError(f"sweeps.{name}", "needs a mode, in base or in grid")
    return out
