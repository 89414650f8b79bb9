"""What the baselines of both modes share (baselines_rank.py, baselines_expression.py): a statically
masked set read in blocks, and the shrunk conditional Gaussian mean (``linear_shrunk`` in expression
mode, ``gaussian_positions`` on rank positions): the train moments, the shrinkage chosen on the val
mask, and the conditional mean of the masked genes given the visible ones. Split by mode, so that
editing one mode's metrics reruns that mode's baselines only."""

import numpy as np
import torch

from l1kformer.errors import InputError
from l1kformer.loader import RowBatches, in_order, masked_batches
from l1kformer.parallel import ordered_map


SHRINKAGE_GRID = (0.01, 0.03, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def masked_blocks(path, dataset, mask_rows, mask_positions, block=256):
    """(values, positions) of a statically masked set, ``block`` profiles at a time, in row order."""
    return masked_batches(RowBatches(path, dataset, mask_rows, block), mask_rows, mask_positions)


def moments(path, dataset, rows, transform=None):
    """Mean (G) and covariance (G x G, divisor n) of ``rows`` (after ``transform``), in float64."""
    total, cross, n = 0.0, 0.0, 0
    for _, v in in_order(path, dataset, rows):
        v = v.astype(np.float64) if transform is None else transform(v)
        total = total + v.sum(axis=0)
        cross = cross + v.T @ v
        n += len(v)
    mean = total / n
    return mean, cross / n - np.outer(mean, mean), n


def tune_shrinkage(cov, val_error):
    """The shrinkage a of ``SHRINKAGE_GRID`` whose precision inv((1 - a) S + a tr(S)/G I) gives the
    smallest ``val_error(precision)``: (a, that precision, {a: error})."""
    tuning, precisions = {}, {}
    for a in SHRINKAGE_GRID:
        precisions[a] = np.linalg.inv(shrink(cov, a))
        tuning[a] = val_error(precisions[a])
    best = min(tuning, key=tuning.get)
    return best, precisions[best], tuning


def check_variance(cov, path):
    if not np.trace(cov) > 0:
        raise InputError(path, "the training profiles have no variance on any gene (every profile the same): "
                               "there is nothing to learn or predict")


def shrink(cov, a):
    g = len(cov)
    return (1 - a) * cov + a * (np.trace(cov) / g) * np.eye(g)


def conditional_mean(mean, precision, values, positions, block=64):
    """E[x_M | x_O] = mu_M - P_MM^-1 P_MO (x_O - mu_O), with P = Sigma^-1.

    P_MO r_O is (P r~)_M for the residual r~ with its masked entries zeroed, one matrix product per
    block of profiles; what remains is a k x k Cholesky solve per profile, batched; blocks run side by
    side (:func:`l1kformer.parallel.ordered_map`).
    """
    p = torch.from_numpy(np.ascontiguousarray(precision, dtype=np.float64))
    g = p.shape[1]

    def solve(x, m):
        resid = x - mean
        np.put_along_axis(resid, m, 0.0, axis=1)
        rhs = (torch.from_numpy(resid) @ p).gather(1, torch.from_numpy(m))  # P is symmetric
        factor, info = torch.linalg.cholesky_ex(torch.from_numpy(np.take(precision, m[:, :, None] * g + m[:, None, :])))
        if info.any():
            raise np.linalg.LinAlgError("a masked block of the precision matrix is not positive definite")
        return mean[m] - torch.cholesky_solve(rhs.unsqueeze(-1), factor).squeeze(-1).numpy()

    blocks = ((values[s:s + block], positions[s:s + block]) for s in range(0, len(positions), block))
    parts = list(ordered_map(solve, blocks))
    return np.concatenate(parts) if parts else np.empty(positions.shape)
