"""The layers around the trunk: each mode's input encoders and output heads (model.py chooses them).

Transformer encoders map the inputs to batch x genes x d_model tokens (``token_genes`` says which
gene each token is, for the attention's pair bias); dense inputs map them to 2 x genes features.
Heads map the last states and the masked positions ``index`` (batch x k) to outputs there, in
row-major order of ``index``: logits over genes (rank mode) or standardised values (expression).
Rank heads add the train split's position prior to their logits (``position_prior``) and rule out the
genes the visible positions show (:class:`RankHead`).
"""

import numpy as np
import torch
import torch.nn as nn


def at_positions(h, index):
    """batch x k x d: the states ``h`` (batch x positions x d) at ``index`` (batch x k)."""
    return h.gather(1, index.unsqueeze(-1).expand(-1, -1, h.shape[-1]))


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


def visible_positions(x, hidden, n_genes):
    """From rank sequences ``x`` (batch x positions of gene ids) whose ``hidden`` positions show nothing:
    each gene's rank position scaled to [0, 1] (0 where not shown) and whether it is shown, both
    batch x n_genes."""
    b, t = x.shape
    pos = (torch.arange(t, device=x.device, dtype=torch.float32) / max(1, t - 1)).expand(b, t)
    return to_genes(x, hidden, pos, n_genes), shown_genes(torch.where(hidden, n_genes, x), n_genes)


def rule_out_shown(out, x, index):
    """A gene shown at an unmasked position cannot sit at a masked one: its logit there is set very
    low, so a rank model (either trunk) is trained and scored on the missing genes only, which is what
    the constrained metrics and the assignment ask. ``x`` outside ``index`` holds the true genes in
    training (corruption touches masked positions only) and in evaluation alike."""
    n = out.shape[-1]
    visible = shown_genes(x.scatter(1, index, n), n)
    return out.view(*index.shape, n).masked_fill(visible.unsqueeze(1), -1e4).flatten(0, 1)


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


class GeneLinear(nn.Module):
    """value x (a shared direction + a per-gene direction): the value-gene interaction."""

    def __init__(self, n_genes, d_model):
        super().__init__()
        self.shared = nn.Linear(1, d_model)
        self.per_gene = nn.Embedding(n_genes, d_model)

    def forward(self, v):
        return self.shared(v) + v * self.per_gene.weight


def value_encoder(cfg):
    """The embedding of one scalar per gene token (``value_encoder``): linear, Linear(1, d), or
    gene_linear, value x (shared + per-gene direction)."""
    return GeneLinear(cfg.n_genes, cfg.d_model) if cfg.value_encoder == "gene_linear" else nn.Linear(1, cfg.d_model)


# --- rank mode ---------------------------------------------------------------------------------------

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


class RankHead(nn.Module):
    """What every rank head shares: with ``position_prior`` set, the log of the train split's smoothed
    position-frequency table (position_prior.py; a buffer, positions x genes) is added to the logits at
    each masked position, and the head's last layer starts at zero, so that an untrained model scores
    as the ``position_frequency_smoothed`` baseline does and what it learns is what the visible genes
    add to it (on 978 genes and a few hundred profiles, a head without it learned less than the table:
    docs/model-study.md). Then the shown genes are ruled out (:func:`rule_out_shown`)."""

    def __init__(self, cfg):
        super().__init__()
        self.register_buffer("log_prior", torch.zeros(cfg.n_genes, cfg.n_genes) if cfg.position_prior is not None
                             else None)

    def set_prior(self, table):
        self.log_prior.copy_(torch.from_numpy(table).float())

    def init_weights(self):
        """With a prior, the last layer ``proj`` starts at zero (called after the trunk's init, which would
        draw it): every gene then gets the same logit from it at a position, so the prior alone decides."""
        if self.log_prior is not None:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def finish(self, logits, index, x):
        """(batch x k) x genes logits at the masked positions ``index`` -> with the prior, shown genes out."""
        if self.log_prior is not None:
            logits = logits.float() + self.log_prior[index].flatten(0, 1)
        return rule_out_shown(logits, x, index)


class TokenLogits(RankHead):
    """``rank_view: sequence``: every gene's logit from the state at each masked position."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.proj = nn.Linear(cfg.d_model, cfg.n_genes)

    def forward(self, h, index, x):
        return self.finish(self.proj(at_positions(h, index)).flatten(0, 1), index, x)

    def _load_from_state_dict(self, state_dict, prefix, *args):
        for name in ("weight", "bias"):  # model files from before RankHead: the head was the Linear itself
            if prefix + name in state_dict:
                state_dict[prefix + "proj." + name] = state_dict.pop(prefix + name)
        super()._load_from_state_dict(state_dict, prefix, *args)


class RankGeneView(nn.Module):
    """``rank_view: genes``: one token per gene in fixed order, the rank-mode twin of expression mode: an
    embedding of the gene's visible rank position (centred, about unit variance; ``value_encoder``), or
    a learned [MASK] vector when the gene is missing (it sat at a hidden position), plus a gene
    embedding. Only the unhidden positions show their gene, so BERT's corruption of the hidden ones is
    moot."""

    def __init__(self, cfg):
        super().__init__()
        self.mask_id = cfg.n_genes
        self.value_emb = value_encoder(cfg)
        self.gene_emb = nn.Embedding(cfg.n_genes, cfg.d_model)
        self.mask_emb = nn.Parameter(torch.zeros(cfg.d_model))

    def forward(self, x, hide):
        gene_pos, shown = visible_positions(x, hide, self.mask_id)
        tokens = self.value_emb(((gene_pos - 0.5) * 3.46).unsqueeze(-1).to(self.mask_emb.dtype))
        return torch.where(shown.unsqueeze(-1), tokens, self.mask_emb.to(tokens.dtype)) + self.gene_emb.weight

    def token_genes(self, x):
        return None  # token i is gene i

    def gene_table(self):
        return self.gene_emb.weight


class GenePositionHead(RankHead):
    """``rank_view: genes``: each gene's rank position from its token's last state, scored at the masked
    positions by :func:`position_logits` (as the dense control's head). Starting at zero, every gene is
    predicted at the middle, which adds the same to every gene's logit at a position: the prior alone."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.proj = nn.Linear(cfg.d_model, 1)
        self.log_scale = nn.Parameter(torch.tensor(POSITION_LOG_SCALE))

    def forward(self, h, index, x):
        return self.finish(position_logits(0.5 + self.proj(h).squeeze(-1), index, self.log_scale), index, x)


class DenseRankInput(nn.Module):
    """The dense model's view of a ranking: each gene's visible rank position (scaled to [0, 1]), or a
    learned per-gene fill value when the gene is missing, and the visible indicator (2 x genes)."""

    def __init__(self, cfg):
        super().__init__()
        self.mask_id = cfg.n_genes
        self.fill = nn.Parameter(torch.full((cfg.n_genes,), 0.5))

    def forward(self, x, masked, hide):
        gene_pos, visible = visible_positions(x, masked, self.mask_id)  # only unmasked positions show
        return torch.cat([torch.where(visible, gene_pos, self.fill), visible.float()], dim=1)


class DensePositionHead(RankHead):
    """Predicts each gene's rank position; the logit of gene g at masked position p is
    -(predicted_g - p)^2 x scale (a Gaussian around the prediction, learned width). It starts with every
    gene at the middle (with a prior: the prior alone)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.proj = nn.Linear(cfg.dense_width, cfg.n_genes)
        nn.init.zeros_(self.proj.weight)
        nn.init.constant_(self.proj.bias, 0.5)
        self.log_scale = nn.Parameter(torch.tensor(POSITION_LOG_SCALE))

    def forward(self, h, index, x):
        return self.finish(position_logits(self.proj(h), index, self.log_scale), index, x)


# --- expression mode ---------------------------------------------------------------------------------

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


class ValueHead(nn.Module):
    """One standardised value per masked position."""

    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Linear(cfg.d_model, 1)

    def forward(self, h, index, x):
        return self.proj(at_positions(h, index)).squeeze(-1).flatten(0, 1)


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

    def forward(self, h, index, x):
        return self.proj(h).gather(1, index).reshape(-1)
