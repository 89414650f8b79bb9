"""The modes a run can have, as plain data (no torch): what a mode's runs read, which baselines they are
compared with, which figures they get and which metrics the summary reports and compares.

The workflow (rules/common.smk), the plots and the summary read these specs; what a mode learns is its
task (tasks.py), its layers are model.py's, and its test scoring is evaluate.py's.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    name: str
    dataset: str  # the HDF5 data set its runs read: ranks (data/ranks.h5) or expression (data/expression.h5)
    baselines: tuple  # baseline files its runs are compared with (baselines/{name}.json)
    figures: dict  # plot name -> function in plots.py taking (context, path); captions workflow/report/
    summary_columns: tuple  # its test metrics, in the summary's column order
    headline: dict  # metric -> "min" or "max": how the summary compares a run with the baselines


MODES = {}


def register(mode):
    """Make ``mode`` available as ``mode: mode.name`` (tests register their own)."""
    MODES[mode.name] = mode
    return mode


def get_mode(name):
    if name not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, not {name!r}")
    return MODES[name]


register(Mode(
    name="rank", dataset="ranks", baselines=("rank",),
    figures={"training_curves": "rank_training_curves", "genes": "gene_errors",
             "by_position": "rank_error_by_position", "heatmap": "position_heatmap",
             "baselines": "rank_vs_baselines"},
    summary_columns=("ce", "top1", "top5", "mean_rank_error", "c_ce", "c_top1", "c_top5", "c_mean_rank_error",
                     "assign_top1"),
    headline={"c_top1": "max", "c_mean_rank_error": "min"}))
register(Mode(
    name="expression", dataset="expression", baselines=("expression", "oracle"),
    figures={"training_curves": "expression_training_curves", "scatter": "expression_scatter",
             "worst_genes": "worst_genes", "error_vs_level": "error_vs_level",
             "baselines": "expression_vs_baselines"},
    summary_columns=("mse", "mae", "pearson", "profile_pearson", "profile_spearman", "gene_pearson",
                     "gene_spearman"),
    headline={"mse": "min"}))
