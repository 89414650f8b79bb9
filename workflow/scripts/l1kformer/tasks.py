"""What a model learns: one task object per mode, chosen once from the run's ``mode``.

A task owns everything that differs between modes; the trunk (model.py), the training loop
(train.py) and the evaluation code call it and never compare mode strings:
- the data set it reads (``ranks`` in ranks.h5 or ``expression`` in expression.h5; rank runs with
  ``rank_values`` read expression.h5 and rank it themselves, so their tokens can carry the values);
- the input encoder (tokens -> batch x genes x d_model; its ``token_genes`` says which gene each
  token is) and the head (hidden states and masked positions -> outputs there), built by the model in
  its ``__init__``, and their counterparts for the dense (non-attention) control model;
- ``to_inputs`` (loader values -> model input, which is also the target at masked positions),
  ``corrupt`` (BERT's replace / random / keep split of the masked positions), ``mask_inputs`` (the
  static mask of evaluation), the loss;
- the validation metrics and the evaluation of the static test mask;
- its figures (plot name -> function of plots.py) and its summary columns and headline metrics.

A new mode is a new Task subclass registered here (``register``), plus its figures.
"""

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from l1kformer.metrics import ExpressionTally, PositionBins, RankTally, missing_genes, score_rank_block
from l1kformer.parallel import ordered_map
from l1kformer.ranking import rank_genes

TASKS = {}


def register(task):
    """Make ``task`` available as ``mode: task.name`` (tests register their own)."""
    TASKS[task.name] = task
    return task


def get_task(name):
    if name not in TASKS:
        raise ValueError(f"mode must be one of {sorted(TASKS)}, not {name!r}")
    return TASKS[name]


class Task:
    name = ""
    dataset = ""
    figures = {}  # plot name -> function in plots.py taking (context, path)
    summary_columns = ()
    headline = {}  # metric -> "min" or "max": how the summary compares a run with the baselines

    def encoder(self, cfg):
        raise NotImplementedError

    def head(self, cfg):
        raise NotImplementedError

    def dataset_for(self, rank_values=False):
        """The HDF5 data set a run reads (``rank_values``: the run's setting of that name)."""
        return self.dataset

    def targets(self, x, index):
        """What the model predicts at ``index`` (batch x k), flattened row-major, from the inputs ``x``."""
        return x.gather(1, index).reshape(-1)

    def prepare(self, model, train_stats):
        """Store what the model needs from the training profiles (``train_stats()`` gives mean, sd)."""

    def to_inputs(self, model, values, device):
        raise NotImplementedError

    def corrupt(self, x, masked, cfg, n_genes, generator):
        """(inputs, hide) for training: ``hide`` marks the positions whose input the encoder replaces
        by its [MASK] vector (``None``: the inputs carry the masking themselves)."""
        raise NotImplementedError

    def mask_inputs(self, model, x, masked):
        """Inputs with the static mask applied (evaluation)."""
        return x

    def restrict(self, out, x, index):
        """A model's outputs at ``index`` given what the inputs ``x`` show elsewhere (both trunks)."""
        return out

    def loss(self, out, target):
        raise NotImplementedError

    def val_metrics(self, model, batches):
        raise NotImplementedError

    def evaluate(self, model, batches, write):
        """Test metrics over ``batches`` of (values, positions, outputs); prediction tables to ``write``."""
        raise NotImplementedError

    def dense_encoder(self, cfg):
        """The dense trunk's input: features from (inputs, masked, hide)."""
        raise NotImplementedError

    def dense_head(self, cfg):
        """The dense trunk's output: outputs at the masked positions from (hidden, index)."""
        raise NotImplementedError


def bert_split(masked, cfg, generator):
    """Of the masked positions: (replace by [MASK], replace by a random token); the rest keep theirs."""
    u = torch.rand(masked.shape, generator=generator, device=masked.device)
    replace = masked & (u < cfg.mask_replace)
    randomise = masked & (u >= cfg.mask_replace) & (u < cfg.mask_replace + cfg.mask_random)
    return replace, randomise


# --- rank mode: which gene sits at each masked rank position ----------------------------------------

def at_positions(h, index):
    """batch x k x d: the states ``h`` (batch x positions x d) at ``index`` (batch x k)."""
    return h.gather(1, index.unsqueeze(-1).expand(-1, -1, h.shape[-1]))


def rank_ids(x):
    """The gene ids (batch x positions) of rank inputs ``x``: ``x`` itself, or channel 0 of the
    ``rank_values`` inputs (batch x positions x (gene id, standardised value at that position))."""
    return x[..., 0].long() if x.dim() == 3 else x


def with_ids(x, ids):
    """Rank inputs ``x`` with their gene ids replaced by ``ids`` (the values channel, if any, kept)."""
    return ids if x.dim() == 2 else torch.stack([ids.to(x.dtype), x[..., 1]], dim=-1)


def shown_genes(tokens, n_genes):
    """batch x n_genes bool: the genes that ``tokens`` (batch x positions of gene ids, ``n_genes`` at the
    hidden positions) show."""
    shown = torch.zeros(tokens.shape[0], n_genes + 1, dtype=torch.bool, device=tokens.device)
    return shown.scatter_(1, tokens, True)[:, :n_genes]


def to_genes(x, hidden, per_position, n_genes):
    """batch x n_genes: ``per_position`` (batch x positions) moved from each rank position of ``x`` (gene
    ids) to the gene there; 0 for the genes at the ``hidden`` positions, which show nothing."""
    out = torch.zeros(x.shape[0], n_genes + 1, device=x.device, dtype=per_position.dtype)
    return out.scatter(1, torch.where(hidden, n_genes, x), per_position)[:, :-1]


def gene_positions(x, hidden, n_genes):
    """From rank sequences ``x`` (batch x positions of gene ids) whose ``hidden`` positions show nothing:
    each gene's rank position scaled to [0, 1] (0 where not shown) and whether it is shown, both
    batch x n_genes."""
    b, t = x.shape
    pos = (torch.arange(t, device=x.device, dtype=torch.float32) / max(1, t - 1)).expand(b, t)
    return to_genes(x, hidden, pos, n_genes), shown_genes(torch.where(hidden, n_genes, x), n_genes)


# The position heads' starting log scale: a Gaussian of sd 0.125 of the ranking (16 of 128 positions).
# Trained heads end near it (log scale 3.4-3.65 on the CPU proxy); starting at log(n_genes) instead
# (sd 0.06 of the ranking at 128 genes, 0.02 at 978) cost the first 5-6 epochs, while Adam moved the
# scalar by about lr per step (docs/model-study.md).
POSITION_LOG_SCALE = float(np.log(32.0))


def position_logits(pred, index, log_scale):
    """Logit of gene g at masked position p: -(pred_g - p)^2 x exp(log_scale), positions scaled to [0, 1]
    (a Gaussian around each gene's predicted position, of learned width); (batch x k) x genes."""
    target = index.float().unsqueeze(-1) / max(1, pred.shape[-1] - 1)  # batch x k x 1
    return (-((pred.float().unsqueeze(1) - target) ** 2) * log_scale.float().exp()).flatten(0, 1)


class RankEncoder(nn.Module):
    """``rank_view: sequence``: gene id (or [MASK] = n_genes) at each rank position, plus a learned
    position embedding."""

    def __init__(self, cfg):
        super().__init__()
        self.token_emb = nn.Embedding(cfg.n_genes + 1, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.n_genes, cfg.d_model)
        self.mask_id = cfg.n_genes

    def forward(self, x, hide):
        pos = torch.arange(x.shape[1], device=x.device)
        return self.token_emb(x) + self.pos_emb(pos)

    def token_genes(self, x):
        return x  # the token is the gene id, [MASK] (n_genes) where hidden

    def gene_table(self):
        return self.token_emb.weight[: self.mask_id]


class TokenLogits(nn.Linear):
    """``rank_view: sequence``: every gene's logit from the state at each masked position."""

    def forward(self, h, index):
        return super().forward(at_positions(h, index)).flatten(0, 1)


class RankGeneView(nn.Module):
    """``rank_view: genes``: one token per gene in fixed order, the rank-mode twin of expression mode: an
    embedding of the gene's visible rank position (centred, about unit variance; ``value_encoder``), or
    a learned [MASK] vector when the gene is missing (it sat at a hidden position), plus a gene
    embedding.
    Only the unhidden positions show their gene, so BERT's corruption of the hidden ones is moot.
    With ``rank_values`` a visible gene's token also carries its standardised expression value
    (``RankValues``); a missing gene's stays [MASK]: the hidden positions show neither gene nor value."""

    def __init__(self, cfg):
        super().__init__()
        self.mask_id = cfg.n_genes
        self.value_emb = value_encoder(cfg)
        self.gene_emb = nn.Embedding(cfg.n_genes, cfg.d_model)
        self.mask_emb = nn.Parameter(torch.zeros(cfg.d_model))
        self.values = RankValues(cfg) if cfg.rank_values else None

    def forward(self, x, hide):
        ids = rank_ids(x)
        gene_pos, shown = gene_positions(ids, hide, self.mask_id)
        tokens = self.value_emb(((gene_pos - 0.5) * 3.46).unsqueeze(-1).to(self.mask_emb.dtype))
        if self.values is not None:
            tokens = tokens + self.values(x[..., 1], ids, hide).to(tokens.dtype)
        return torch.where(shown.unsqueeze(-1), tokens, self.mask_emb.to(tokens.dtype)) + self.gene_emb.weight

    def token_genes(self, x):
        return None  # token i is gene i

    def gene_table(self):
        return self.gene_emb.weight


class RankValues(nn.Module):
    """``rank_values``: the train split's per-gene mean and sd (buffers), and an embedding
    (``value_encoder``) of each visible gene's standardised value."""

    def __init__(self, cfg):
        super().__init__()
        self.scale = Standardized(cfg)
        self.value_emb = value_encoder(cfg)

    def inputs(self, values, device):
        """Loader values (profiles x genes, expression in gene order) -> rank inputs: batch x positions
        x (gene id, standardised value of the gene at that position), ranked as the rank step ranks."""
        ids = torch.from_numpy(rank_genes(values).astype(np.int64)).to(device, non_blocking=True)
        v = self.scale.standardize(torch.from_numpy(values).to(device, non_blocking=True).float())
        return torch.stack([ids.float(), v.gather(1, ids)], dim=-1)

    def forward(self, v, ids, hide):
        """batch x genes x d_model: the embedding of each gene's value (``v``, batch x positions, in rank
        order); zero for the genes at hidden positions, which the encoder replaces by [MASK]."""
        return self.value_emb(to_genes(ids, hide, v, ids.shape[1]).unsqueeze(-1))


class GenePositionHead(nn.Module):
    """``rank_view: genes``: each gene's rank position from its token's last state, scored at the masked
    positions by ``position_logits`` (as the dense control's head)."""

    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Linear(cfg.d_model, 1)
        self.log_scale = nn.Parameter(torch.tensor(POSITION_LOG_SCALE))

    def forward(self, h, index):
        return position_logits(0.5 + self.proj(h).squeeze(-1), index, self.log_scale)


class DenseRankInput(nn.Module):
    """The dense model's view of a ranking: each gene's visible rank position (scaled to [0, 1]), or a
    learned per-gene fill value when the gene is missing, and the visible indicator (2 x genes)."""

    def __init__(self, cfg):
        super().__init__()
        self.mask_id = cfg.n_genes
        self.fill = nn.Parameter(torch.full((cfg.n_genes,), 0.5))

    def forward(self, x, masked, hide):
        gene_pos, visible = gene_positions(rank_ids(x), masked, self.mask_id)  # only unmasked positions show
        return torch.cat([torch.where(visible, gene_pos, self.fill), visible.float()], dim=1)


class DensePositionHead(nn.Module):
    """Predicts each gene's rank position; the logit of gene g at masked position p is
    -(predicted_g - p)^2 x scale (a Gaussian around the prediction, learned width); the task's
    ``restrict`` then rules out the visible genes, as for the transformer."""

    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Linear(cfg.dense_width, cfg.n_genes)
        nn.init.zeros_(self.proj.weight)
        nn.init.constant_(self.proj.bias, 0.5)
        self.log_scale = nn.Parameter(torch.tensor(POSITION_LOG_SCALE))

    def forward(self, h, index):
        return position_logits(self.proj(h), index, self.log_scale)


class RankTask(Task):
    name = "rank"
    dataset = "ranks"
    figures = {"training_curves": "rank_training_curves", "genes": "gene_errors",
               "by_position": "rank_error_by_position", "heatmap": "position_heatmap",
               "baselines": "rank_vs_baselines"}
    summary_columns = ("ce", "top1", "top5", "mean_rank_error", "c_ce", "c_top1", "c_top5",
                       "c_mean_rank_error", "assign_top1")
    headline = {"c_top1": "max", "c_mean_rank_error": "min"}

    def encoder(self, cfg):
        return RankGeneView(cfg) if cfg.rank_view == "genes" else RankEncoder(cfg)

    def head(self, cfg):
        return GenePositionHead(cfg) if cfg.rank_view == "genes" else TokenLogits(cfg.d_model, cfg.n_genes)

    def dense_encoder(self, cfg):
        return DenseRankInput(cfg)

    def dense_head(self, cfg):
        return DensePositionHead(cfg)

    def dataset_for(self, rank_values=False):
        return "expression" if rank_values else self.dataset

    def prepare(self, model, train_stats):
        if model.cfg.rank_values:
            model.encoder.values.scale.set_stats(*train_stats())

    def to_inputs(self, model, values, device):
        if model.cfg.rank_values:
            return model.encoder.values.inputs(values, device)
        return torch.from_numpy(values.astype(np.int64)).to(device, non_blocking=True)

    def targets(self, x, index):
        return rank_ids(x).gather(1, index).reshape(-1)

    def corrupt(self, x, masked, cfg, n_genes, generator):
        replace, randomise = bert_split(masked, cfg, generator)
        ids = rank_ids(x)
        noise = torch.randint(0, n_genes, ids.shape, generator=generator, device=x.device)
        return with_ids(x, torch.where(randomise, noise, ids).masked_fill(replace, n_genes)), None

    def mask_inputs(self, model, x, masked):
        return with_ids(x, rank_ids(x).masked_fill(masked, model.encoder.mask_id))

    def restrict(self, out, x, index):
        """A gene shown at an unmasked position cannot sit at a masked one: its logit there is set very
        low, so the model (either trunk) is trained and scored on the missing genes only, which is what
        the constrained metrics and the assignment ask. ``x`` outside ``index`` holds the true genes in
        training (corruption touches masked positions only) and in evaluation alike."""
        n = out.shape[-1]
        visible = shown_genes(rank_ids(x).scatter(1, index, n), n)
        return out.view(*index.shape, n).masked_fill(visible.unsqueeze(1), -1e4).flatten(0, 1)

    def loss(self, out, target):
        return F.cross_entropy(out.float(), target.long())

    def val_metrics(self, model, batches):
        """Cross-entropy, top-1 and mean rank error (genes scored above the true one, ties half); the model
        scores only the missing genes (``restrict``), so these are the constrained metrics."""
        n = loss = top1 = rank_error = 0.0
        for _, _, out, target in batches:
            n += len(target)
            loss += float(F.cross_entropy(out, target, reduction="sum"))
            true_logit = out.gather(1, target.view(-1, 1))
            top1 += float((out.argmax(1) == target).sum())
            rank_error += float((out > true_logit).sum() + 0.5 * ((out == true_logit).sum() - len(target)))
        n = max(1, n)
        return {"val_loss": loss / n, "val_top1": top1 / n, "val_mean_rank_error": rank_error / n}

    def evaluate(self, model, batches, write):
        """Metrics (as the baselines') over blocks of profiles; one prediction row per masked position
        goes to ``write`` (a table per block)."""
        tally, bins, offset = RankTally(), PositionBins(model.cfg.n_genes), 0

        def score(values, pos, out):
            ids = rank_genes(values) if model.cfg.rank_values else values  # rank_values: expression
            true = np.take_along_axis(ids, pos, axis=1).astype(np.int64)
            return pos, true, score_rank_block(out.view(len(pos), pos.shape[1], -1), true)

        # batches are scored on worker threads (on the device of the outputs; the assignment on the CPU)
        # while the main thread runs the forward pass of the next ones
        for pos, true, res in ordered_map(score, batches):
            tally.add(res)
            bins.add(pos, {"top1": res["top1"], "c_top1": res["c_top1"],
                           "mean_rank_error": res["rank_error"], "c_mean_rank_error": res["c_rank_error"]})
            write(_rank_records(offset, pos, true, res))
            offset += len(pos)
        return {**tally.summary(), "by_position": bins.result()}


def _rank_records(offset, positions, true, res):
    """One row per masked position; ``assigned_position``: where the assignment put the true gene."""
    _, local = missing_genes(true)
    by_gene = np.argsort(res["assign_gene"], axis=1)  # the assignment's genes, sorted, are the missing genes
    assigned = np.take_along_axis(positions, np.take_along_axis(by_gene, local, axis=1), axis=1)
    return pd.DataFrame({
        "profile": np.repeat(np.arange(offset, offset + len(positions)), positions.shape[1]),
        "position": positions.ravel(), "true_gene": true.ravel(), "pred_gene": res["pred_gene"].ravel(),
        "c_pred_gene": res["c_pred_gene"].ravel(), "assign_gene": res["assign_gene"].ravel(),
        "assigned_position": assigned.ravel(), "rank_error": res["rank_error"].ravel(),
        "c_rank_error": res["c_rank_error"].ravel()})


# --- expression mode: the masked values themselves ------------------------------------------------

class Standardized(nn.Module):
    """The train split's per-gene mean and sd as buffers, so predictions come back in original units."""

    def __init__(self, cfg):
        super().__init__()
        self.register_buffer("value_mean", torch.zeros(cfg.n_genes))
        self.register_buffer("value_std", torch.ones(cfg.n_genes))

    def set_stats(self, mean, std):
        """Store the train split's per-gene mean and sd (numpy; sd floored at 1e-6)."""
        self.value_mean.copy_(torch.from_numpy(mean).float())
        self.value_std.copy_(torch.from_numpy(np.maximum(std, 1e-6)).float())

    def standardize(self, values):
        return (values - self.value_mean) / self.value_std

    def unstandardize(self, values, gene_index):
        return values * self.value_std[gene_index] + self.value_mean[gene_index]


class SoftBins(nn.Module):
    """A value as a soft one-hot over fixed bins of the standardised scale (Gaussian kernels of one bin
    width), times a table of bin embeddings: a learned, smooth, nonlinear value embedding."""

    def __init__(self, d_model, n_bins=16, lo=-3.0, hi=3.0):
        super().__init__()
        self.register_buffer("centres", torch.linspace(lo, hi, n_bins))
        self.width = (hi - lo) / (n_bins - 1)
        self.table = nn.Linear(n_bins, d_model, bias=False)

    def forward(self, v):
        weights = torch.softmax(-0.5 * ((v - self.centres) / self.width) ** 2, dim=-1)
        return self.table(weights.to(self.table.weight.dtype))


class GeneLinear(nn.Module):
    """value x (a shared direction + a per-gene direction): the value-gene interaction."""

    def __init__(self, n_genes, d_model):
        super().__init__()
        self.shared = nn.Linear(1, d_model)
        self.per_gene = nn.Embedding(n_genes, d_model)

    def forward(self, v):
        return self.shared(v) + v * self.per_gene.weight


def value_encoder(cfg):
    """``value_encoder``: linear (Linear(1, d)), mlp (scGPT's continuous encoder), soft_bins,
    gene_linear (value x per-gene direction)."""
    d = cfg.d_model
    if cfg.value_encoder == "mlp":
        return nn.Sequential(nn.Linear(1, d), nn.GELU(), nn.Linear(d, d), nn.LayerNorm(d))
    if cfg.value_encoder == "soft_bins":
        return SoftBins(d)
    if cfg.value_encoder == "gene_linear":
        return GeneLinear(cfg.n_genes, d)
    return nn.Linear(1, d)


class ExpressionEncoder(Standardized):
    """An embedding of each gene's standardised value (``value_encoder``) plus a gene-identity
    embedding; hidden genes get a learned [MASK] vector instead of a value embedding (no sentinel
    value: after standardisation every number is a real value)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.value_emb = value_encoder(cfg)
        self.gene_emb = nn.Embedding(cfg.n_genes, cfg.d_model)
        self.mask_emb = nn.Parameter(torch.zeros(cfg.d_model))

    def forward(self, x, hide):
        values = self.value_emb(x.unsqueeze(-1).to(self.mask_emb.dtype))
        values = torch.where(hide.unsqueeze(-1), self.mask_emb.to(values.dtype), values)
        return values + self.gene_emb.weight

    def token_genes(self, x):
        return None  # token i is gene i

    def gene_table(self):
        return self.gene_emb.weight


class DenseExpressionInput(Standardized):
    """The dense model's view of a profile: standardised values with hidden genes set to a learned
    per-gene fill value, and the hidden indicator (2 x genes)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.fill = nn.Parameter(torch.zeros(cfg.n_genes))

    def forward(self, x, masked, hide):
        return torch.cat([torch.where(hide, self.fill.to(x.dtype), x), hide.to(x.dtype)], dim=1)


class DenseValueHead(nn.Module):
    """Every gene's standardised value from the last hidden layer; kept at the masked genes."""

    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Linear(cfg.dense_width, cfg.n_genes)

    def forward(self, h, index):
        return self.proj(h).gather(1, index).reshape(-1)


class ValueHead(nn.Module):
    """One standardised value per masked position."""

    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Linear(cfg.d_model, 1)

    def forward(self, h, index):
        return self.proj(at_positions(h, index)).squeeze(-1).flatten(0, 1)


class ExpressionTask(Task):
    name = "expression"
    dataset = "expression"
    figures = {"training_curves": "expression_training_curves", "scatter": "expression_scatter",
               "worst_genes": "worst_genes", "error_vs_level": "error_vs_level",
               "baselines": "expression_vs_baselines"}
    summary_columns = ("mse", "mae", "pearson", "profile_pearson", "profile_spearman", "gene_pearson",
                       "gene_spearman")
    headline = {"mse": "min"}

    def encoder(self, cfg):
        return ExpressionEncoder(cfg)

    def head(self, cfg):
        return ValueHead(cfg)

    def dense_encoder(self, cfg):
        return DenseExpressionInput(cfg)

    def dense_head(self, cfg):
        return DenseValueHead(cfg)

    def prepare(self, model, train_stats):
        model.encoder.set_stats(*train_stats())

    def to_inputs(self, model, values, device):
        return model.encoder.standardize(torch.from_numpy(values).to(device, non_blocking=True).float())

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
            p, t = model.encoder.unstandardize(out, gene), model.encoder.unstandardize(target, gene)
            sq_err += float(((p - t) ** 2).sum())
            preds.append(p.cpu().numpy())
            trues.append(t.cpu().numpy())
        n = max(1, n)
        p, t = np.concatenate(preds), np.concatenate(trues)
        return {"val_loss": loss / n, "val_mse": sq_err / n, "val_pearson": float(np.corrcoef(p, t)[0, 1])}

    def evaluate(self, model, batches, write):
        """Metrics in original units over blocks of profiles; one prediction row per masked entry goes
        to ``write`` (a table per block)."""
        offset = 0
        with ExpressionTally() as tally:
            for values, pos, out in batches:
                pred = model.encoder.unstandardize(out, torch.from_numpy(pos.reshape(-1)).to(out.device))
                pred = pred.double().cpu().numpy().reshape(pos.shape)
                true = np.take_along_axis(values, pos, axis=1)
                tally.add(pred, true, pos)
                write(pd.DataFrame({"profile": np.repeat(np.arange(offset, offset + len(pos)), pos.shape[1]),
                                    "gene": pos.ravel(), "true": true.ravel(), "pred": pred.ravel()}))
                offset += len(pos)
            return tally.result()


register(RankTask())
register(ExpressionTask())
