"""The whole l1kformer model in one file: a pre-norm transformer encoder over the landmark genes.

The trunk (blocks of self-attention and MLP, a final norm) is shared by every mode; what goes in and
what comes out belong to the run's task (tasks.py), which the model asks once, in ``__init__``, for
its input encoder and its head:
- rank mode: tokens are gene ids in rank order plus a [MASK] id, with learned position embeddings;
  the head scores every gene at each masked position (or, with ``rank_view: genes``, one token per
  gene carrying its visible rank position, and a head that predicts each missing gene's position);
- expression mode: genes in fixed order, a value embedding plus a gene embedding per token, a learned
  [MASK] vector for hidden values; the head regresses one value per masked position.
The head runs at masked positions only. ``DenseNet`` below is the control without attention (the
``dense`` trunk), with the same task objects, loss and training.
Dropout acts on the embeddings and the residual branches,
never on attention probabilities: that keeps the fused attention kernels (flash / memory-efficient,
on GPU and CPU) in use during training, where attention dropout would force the unfused path that
materialises 978 x 978 scores. Pure torch, no I/O.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from l1kformer.tasks import get_task


@dataclass
class ModelConfig:
    """The model's settings; their defaults live in config.yaml (``train:``). ``trunk`` chooses the
    transformer (d_model, n_layers, n_heads, d_ff) or the dense control (dense_width, dense_depth);
    ``value_encoder`` how a value (expression mode) or a visible rank position (the rank genes view)
    is embedded (tasks.py); ``rank_view`` what a rank-mode
    transformer's tokens are (tasks.py); ``attn_bias`` "genes" adds a learned attention bias for each
    pair of genes, per head and layer (``SelfAttention``); ``n_registers`` learned tokens join the
    genes' in every layer (a place to gather what the whole profile says) and are dropped at the end;
    ``rank_values`` gives the rank genes view's visible tokens their expression values too;
    ``profile_token`` adds to the first register an MLP summary of the whole masked profile (the dense
    control's input features), so every token can read the profile's state from the first layer."""
    mode: str
    n_genes: int
    trunk: str
    value_encoder: str
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    dense_width: int
    dense_depth: int
    dropout: float
    attn_bias: str = "none"  # defaults: model files written before these settings rebuild unchanged
    rank_view: str = "sequence"
    n_registers: int = 0
    rank_values: bool = False
    profile_token: bool = False

    def __post_init__(self):
        get_task(self.mode)  # a clear error for an unknown mode
        if self.attn_bias not in ("none", "genes"):
            raise ValueError(f"attn_bias must be 'none' or 'genes', not {self.attn_bias!r}")
        if self.rank_view not in ("sequence", "genes"):
            raise ValueError(f"rank_view must be 'sequence' or 'genes', not {self.rank_view!r}")
        if self.trunk not in TRUNKS:
            raise ValueError(f"trunk must be one of {sorted(TRUNKS)}, not {self.trunk!r}")
        if self.rank_values and (self.mode, self.trunk, self.rank_view) != ("rank", "transformer", "genes"):
            raise ValueError("rank_values needs mode rank, trunk transformer and rank_view genes")
        if self.profile_token and not (self.n_registers and self.trunk == "transformer"):
            raise ValueError("profile_token needs the transformer trunk and n_registers >= 1")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")


def positions_mask(x, index):
    """batch x genes bool: True at the positions in ``index`` (batch x k)."""
    return torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device).scatter_(1, index, True)


class SelfAttention(nn.Module):
    """Multi-head self-attention. With ``attn_bias: genes`` each head adds a learned number to the
    attention logit from a token of gene a to a token of gene b (a table over genes, with [MASK] as
    gene ``n_genes`` and the register tokens after it; zero at the start): a weight for every gene
    pair from the first step, as the dense control has, besides the content-based attention.
    ``genes`` says which gene each token is: positions (one row for every profile) or batch x
    positions."""

    def __init__(self, cfg):
        super().__init__()
        self.n_heads = cfg.n_heads
        # no bias: a key bias cannot change attention (softmax is shift-invariant), so its gradient is
        # rounding noise that Adam would turn into real steps
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        n = cfg.n_genes + 1 + cfg.n_registers
        self.pair_bias = nn.Parameter(torch.zeros(cfg.n_heads, n, n)) if cfg.attn_bias == "genes" else None

    def forward(self, x, genes=None):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        bias = None
        if self.pair_bias is not None:
            table = self.pair_bias.to(q.dtype)
            bias = table[:, genes.unsqueeze(-1), genes.unsqueeze(-2)]
            bias = bias.unsqueeze(0) if genes.dim() == 1 else bias.transpose(0, 1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, genes=None):
        x = x + self.drop(self.attn(self.norm1(x), genes))
        return x + self.drop(self.mlp(self.norm2(x)))


class Trainable(nn.Module):
    """What training and evaluation ask of any trunk besides ``forward``, ``hidden`` and ``embeddings``."""

    def configure_optimizer(self, lr, weight_decay, betas=(0.9, 0.95), fused=False):
        """AdamW; weight decay on matrices only (not on biases, norms, [MASK] and fill vectors);
        ``fused`` (CUDA): one kernel for the whole update."""
        decay = [p for p in self.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)

    def loss(self, out, targets, index):
        """(outputs, the task's loss against ``targets`` at ``index``, or None without targets)."""
        return out, (None if targets is None else self.task.loss(out, self.task.targets(targets, index)))


class L1kFormer(Trainable):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.task = get_task(cfg.mode)
        self.encoder = self.task.encoder(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        # only when asked for: model files written before registers existed load unchanged
        self.registers = nn.Parameter(torch.randn(cfg.n_registers, cfg.d_model) * 0.02) if cfg.n_registers else None
        if cfg.profile_token:  # the dense control's view of the profile (2 x genes features) -> d_model
            self.profile_input = self.task.dense_encoder(cfg)
            self.profile = nn.Sequential(nn.Linear(2 * cfg.n_genes, cfg.d_model), nn.GELU(),
                                         nn.Linear(cfg.d_model, cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = self.task.head(cfg)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2 style scaled init of residual projections
            if name.endswith(("attn.proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, 0.02)

    def hidden(self, x, hide):
        """Last-layer states, batch x genes x d_model; ``hide`` (bool, batch x genes) marks the
        positions whose input the encoder replaces by its [MASK] vector."""
        h = self.drop(self.encoder(x, hide))
        b, t, _ = h.shape
        genes = self._token_genes(x, t) if self.cfg.attn_bias == "genes" else None
        if self.cfg.n_registers:
            registers = self.registers.to(h.dtype).expand(b, -1, -1)
            if self.cfg.profile_token:  # hidden positions show nothing to the summary either
                summary = self.profile(self.profile_input(x, hide, hide).to(self.profile[0].weight.dtype))
                registers = torch.cat([registers[:, :1] + summary.to(h.dtype).unsqueeze(1), registers[:, 1:]], 1)
            h = torch.cat([h, registers], dim=1)
        for block in self.blocks:
            h = block(h, genes)
        return self.norm(h[:, :t])

    def _token_genes(self, x, t):
        """Which gene (pair-bias table row) each token is: the encoder's answer, or position i is gene i;
        registers after [MASK]."""
        genes = self.encoder.token_genes(x)
        genes = torch.arange(t, device=x.device) if genes is None else genes
        extra = self.cfg.n_genes + 1 + torch.arange(self.cfg.n_registers, device=x.device)
        return torch.cat([genes, extra.expand(*genes.shape[:-1], -1)], dim=-1)

    def forward(self, x, index, targets=None, hide=None):
        """Outputs at the masked positions only: ``index`` (batch x k, long) holds each profile's masked
        positions, the same number for every profile, so every shape is fixed (no boolean indexing:
        the step compiles to one graph). Outputs come in row-major order of ``index``.

        ``hide`` (batch x genes, bool) defaults to the masked positions (training passes BERT's replace
        share). With ``targets`` (same shape as ``x``) also returns the task's loss there.
        """
        h = self.hidden(x, positions_mask(x, index) if hide is None else hide)
        return self.loss(self.task.restrict(self.head(h, index), x, index), targets, index)

    def embeddings(self, x, masked):
        """Per-profile embedding: mean of the last layer over positions (batch x d_model)."""
        return self.hidden(x, masked).mean(dim=1)

    def gene_table(self):
        """genes x d_model: the input embedding of each gene (its token, or its identity)."""
        return self.encoder.gene_table()

    def flops_per_token(self):
        """Training FLOPs per token (forward + backward = 3 x forward), attention included."""
        c, t = self.cfg, self.cfg.n_genes
        per_layer = 2 * (4 * c.d_model**2 + 2 * c.d_model * c.d_ff) + 2 * 2 * t * c.d_model
        return 3 * c.n_layers * per_layer


class DenseBlock(nn.Module):
    def __init__(self, width, dropout):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return x + self.drop(self.mlp(self.norm(x)))


class DenseNet(Trainable):
    """The control without attention: a masked denoising MLP over the whole profile.

    The task's dense input gives 2 x genes features per profile (expression: standardised values with
    hidden genes at a learned per-gene fill value, plus the hidden indicator; rank: each gene's
    visible rank position or a fill value, plus the visible indicator); residual MLP blocks of
    ``dense_width`` map them to one hidden vector, and the task's dense head predicts every gene from
    it (kept at the masked positions). Same loss, masks, optimiser and evaluation as the transformer.
    """

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.task = get_task(cfg.mode)
        self.encoder = self.task.dense_encoder(cfg)
        self.input = nn.Linear(2 * cfg.n_genes, cfg.dense_width)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(DenseBlock(cfg.dense_width, cfg.dropout) for _ in range(cfg.dense_depth))
        self.norm = nn.LayerNorm(cfg.dense_width)
        self.head = self.task.dense_head(cfg)

    def hidden(self, x, masked, hide):
        h = self.drop(self.input(self.encoder(x, masked, hide).to(self.input.weight.dtype)))
        for block in self.blocks:
            h = block(h)
        return self.norm(h)

    def forward(self, x, index, targets=None, hide=None):
        """Outputs at the masked positions ``index`` (batch x k), row-major, and the task's loss."""
        masked = positions_mask(x, index)
        h = self.hidden(x, masked, masked if hide is None else hide)
        return self.loss(self.task.restrict(self.head(h, index), x, index), targets, index)

    def embeddings(self, x, masked):
        """Per-profile embedding: the last hidden layer (batch x dense_width)."""
        return self.hidden(x, masked, masked)

    def gene_table(self):
        """genes x dense_width: the first layer's weights on each gene's value (or position)."""
        return self.input.weight[:, : self.cfg.n_genes].T


TRUNKS = {"transformer": L1kFormer, "dense": DenseNet}


def build_model(model_config):
    """Build a model from its config, or rebuild one from the dict in a model file."""
    cfg = model_config if isinstance(model_config, ModelConfig) else ModelConfig(**model_config)
    return TRUNKS[cfg.trunk](cfg)
