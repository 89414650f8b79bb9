"""Top-k and rank error by counting, never by sorting: shared by validation (tasks.py) and the test
metrics (metrics_rank.py), so the epoch is chosen on what the test reports."""

import torch


def counted(scores, target, with_ce=True):
    """Unconstrained metrics of a block by counting: ``scores`` (... x n) torch, ``target`` (...) the
    index of the true entry. Rank error = entries scored above the true one, ties (other than the true
    entry itself) counted half; top-k = the true entry among the first k of a stable descending sort
    (ties broken by index). Returns torch tensors shaped like ``target``."""
    true = scores.gather(-1, target.unsqueeze(-1))
    above = (scores > true).sum(-1, dtype=torch.int32)
    tied = scores == true
    n_tied = tied.sum(-1, dtype=torch.int32)
    place = above.clone()  # the true entry's place in a stable descending sort
    several = (n_tied > 1).nonzero(as_tuple=True)
    if len(several[0]):  # ties: those of lower index come first
        lower = torch.arange(scores.shape[-1], device=scores.device) < target[several].unsqueeze(-1)
        place[several] += (tied[several] & lower).sum(-1, dtype=torch.int32)
    out = {"top1": place == 0, "top5": place < 5,
           "rank_error": above.double() + 0.5 * (n_tied - 1).double(), "pred": scores.argmax(-1)}
    if with_ce:
        out["ce"] = torch.logsumexp(scores, -1) - true.squeeze(-1)
    return out
