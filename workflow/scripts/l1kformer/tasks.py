"""What a model learns: one task object per mode, chosen from the run's ``mode``.

A task owns what differs between modes in training and inference, and nothing of the network:
- ``to_inputs`` (loader values -> model inputs, which are also the targets at masked positions) and
  ``targets``;
- ``corrupt`` (BERT's replace / random / keep split of the masked positions in training) and
  ``mask_inputs`` (the static mask of evaluation);
- the loss, and the validation metrics that choose the best epoch.
What a mode reads and reports is its spec (modes.py), its layers are model.py's, and its test scoring
is evaluate.py's. A new mode is a Task subclass entered in ``TASKS`` here, a spec, its layers and its
scoring.
"""

import numpy as np
import torch
import torch.nn.functional as F

from l1kformer.counting import counted
from l1kformer.loader import column_stats
from l1kformer.modes import get_mode
from l1kformer.position_prior import log_frequencies, position_counts

class Task:

    def prepare(self, model, data_path, train_rows, window_rows):
        """Store in the model what it needs from the training profiles (rows of ``data_path``, the mode's
        data set, read ``window_rows`` at a time)."""

    def to_inputs(self, model, values, device):
        raise NotImplementedError

    def targets(self, x, index):
        """What the model predicts at ``index`` (batch x k), flattened row-major, from the inputs ``x``."""
        return x.gather(1, index).reshape(-1)

    def corrupt(self, x, masked, cfg, n_genes, generator):
        """(inputs, hide) for training: ``hide`` marks the positions whose input the encoder replaces
        by its [MASK] vector (``None``: the inputs carry the masking themselves)."""
        raise NotImplementedError

    def mask_inputs(self, x, masked, n_genes):
        """Inputs with the static mask applied (evaluation)."""
        return x

    def loss(self, out, target):
        raise NotImplementedError

    def masked_loss(self, net, inputs, index, targets, hide=None):
        """(outputs, loss) of ``net`` (a model, or a wrapper of one: DDP, compiled) on ``inputs`` at the
        masked positions ``index`` against the clean ``targets``: the training step's loss, which the
        tests and the GPU check compute through this one method."""
        out = net(inputs, index, hide)
        return out, self.loss(out, self.targets(targets, index))

    def val_metrics(self, model, batches):
        """Metrics of batches of (values, positions, outputs, targets); ``val_loss`` chooses the epoch."""
        raise NotImplementedError


def bert_split(masked, cfg, generator):
    """Of the masked positions: (replace by [MASK], replace by a random token); the rest keep theirs."""
    u = torch.rand(masked.shape, generator=generator, device=masked.device)
    replace = masked & (u < cfg.mask_replace)
    randomise = masked & (u >= cfg.mask_replace) & (u < cfg.mask_replace + cfg.mask_random)
    return replace, randomise


class RankTask(Task):
    """Which gene sits at each masked rank position: inputs are gene ids in rank order ([MASK] = n_genes)."""

    def prepare(self, model, data_path, train_rows, window_rows):
        sigma = model.cfg.position_prior
        if sigma is not None:  # the head's starting point: the train split's smoothed position frequencies
            counts, _ = position_counts(data_path, train_rows, model.cfg.n_genes, window_rows)
            model.set_position_prior(log_frequencies(counts, sigma))

    def to_inputs(self, model, values, device):
        return torch.from_numpy(values.astype(np.int64)).to(device, non_blocking=True)

    def corrupt(self, x, masked, cfg, n_genes, generator):
        replace, randomise = bert_split(masked, cfg, generator)
        noise = torch.randint(0, n_genes, x.shape, generator=generator, device=x.device)
        return torch.where(randomise, noise, x).masked_fill(replace, n_genes), None

    def mask_inputs(self, x, masked, n_genes):
        return x.masked_fill(masked, n_genes)

    def loss(self, out, target):
        return F.cross_entropy(out.float(), target.long())

    def val_metrics(self, model, batches):
        """Cross-entropy, top-1 and mean rank error (as the test metrics count them); the model scores
        only the missing genes (its head rules out the shown ones), so these are the constrained metrics."""
        n = loss = top1 = rank_error = 0.0
        for _, _, out, target in batches:
            n += len(target)
            loss += float(F.cross_entropy(out, target, reduction="sum"))
            c = counted(out, target, with_ce=False)
            top1 += float(c["top1"].sum())
            rank_error += float(c["rank_error"].sum())
        n = max(1, n)
        return {"val_loss": loss / n, "val_top1": top1 / n, "val_mean_rank_error": rank_error / n}


class ExpressionTask(Task):
    """The masked values themselves, standardised by the train split's per-gene mean and sd."""

    def prepare(self, model, data_path, train_rows, window_rows):
        model.set_train_stats(*column_stats(data_path, "expression", train_rows, window_rows))

    def to_inputs(self, model, values, device):
        return model.standardize(torch.from_numpy(values).to(device, non_blocking=True).float())

    def corrupt(self, x, masked, cfg, n_genes, generator):
        replace, randomise = bert_split(masked, cfg, generator)
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        return torch.where(randomise, noise, x), replace

    def loss(self, out, target):
        return F.mse_loss(out.float(), target.float())

    def val_metrics(self, model, batches):
        """MSE of standardised values (the loss), and MSE and Pearson r in original units."""
        n = loss = sq_err = 0.0
        preds, trues = [], []
        for _, pos, out, target in batches:
            n += len(target)
            loss += float(((out - target) ** 2).sum())
            gene = torch.from_numpy(pos.reshape(-1)).to(out.device)
            p, t = model.unstandardize(out, gene), model.unstandardize(target, gene)
            sq_err += float(((p - t) ** 2).sum())
            preds.append(p.cpu().numpy())
            trues.append(t.cpu().numpy())
        n = max(1, n)
        p, t = np.concatenate(preds), np.concatenate(trues)
        return {"val_loss": loss / n, "val_mse": sq_err / n, "val_pearson": float(np.corrcoef(p, t)[0, 1])}


TASKS = {"rank": RankTask(), "expression": ExpressionTask()}  # mode -> its task (tests add their own)


def get_task(name):
    get_mode(name)  # a clear error for an unknown mode
    return TASKS[name]
