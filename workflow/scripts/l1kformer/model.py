"""The whole l1kformer model in one file: a pre-norm transformer encoder over the 978 landmark genes.

Two ends on one trunk:
- rank mode: tokens are gene ids in rank order (highest expression first) plus a [MASK] id; learned
  position embeddings give the rank; the head scores the genes only at masked positions.
- expression mode: genes in fixed order; each token is a linear embedding of the gene's standardised
  value plus a gene-identity embedding; masked genes get a learned [MASK] vector instead of a value
  embedding (no sentinel value: after standardisation every number is a real value); the head
  regresses one value per masked position. Per-gene mean and sd (train split) are buffers of the
  model, so predictions come back in the original units.
Dropout acts on the embeddings and the residual branches only, never on attention probabilities:
that keeps the fused attention kernels (flash / memory-efficient, on GPU and CPU) in use during
training, where attention dropout would force the unfused path that materialises 978 x 978 scores.
Pure torch, no I/O.
"""

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

MODES = ("rank", "expression")


@dataclass
class ModelConfig:
    mode: str = "rank"
    n_genes: int = 978
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 2
    d_ff: int = 256
    dropout: float = 0.0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")

    @property
    def mask_id(self):
        """The [MASK] token id in rank mode (gene ids are 0 .. n_genes - 1)."""
        return self.n_genes


class SelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_heads = cfg.n_heads
        # no bias: a key bias cannot change attention (softmax is shift-invariant), so its gradient is
        # rounding noise that Adam would turn into real steps
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class L1kFormer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        if cfg.mode == "rank":
            self.token_emb = nn.Embedding(cfg.n_genes + 1, d)  # + [MASK]
            self.pos_emb = nn.Embedding(cfg.n_genes, d)
        else:
            self.value_emb = nn.Linear(1, d)
            self.gene_emb = nn.Embedding(cfg.n_genes, d)
            self.mask_emb = nn.Parameter(torch.zeros(d))
        self.register_buffer("value_mean", torch.zeros(cfg.n_genes))
        self.register_buffer("value_std", torch.ones(cfg.n_genes))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.n_genes if cfg.mode == "rank" else 1)
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

    def embed(self, x, masked, visible=None):
        """Token embeddings, batch x genes x d_model.

        rank mode: ``x`` int64 gene ids (masked positions already replaced by ``mask_id`` or a random
        gene, as the caller chose). expression mode: ``x`` standardised values; masked positions get
        the [MASK] vector, except those that ``visible`` (bool, BERT's random/keep share) leaves shown.
        """
        if self.cfg.mode == "rank":
            pos = torch.arange(x.shape[1], device=x.device)
            return self.token_emb(x) + self.pos_emb(pos)
        values = self.value_emb(x.unsqueeze(-1).to(self.value_emb.weight.dtype))
        hide = masked if visible is None else masked & ~visible
        values = torch.where(hide.unsqueeze(-1), self.mask_emb.to(values.dtype), values)
        return values + self.gene_emb.weight

    def hidden(self, x, masked, visible=None):
        h = self.drop(self.embed(x, masked, visible))
        for block in self.blocks:
            h = block(h)
        return self.norm(h)

    def forward(self, x, masked, targets=None, visible=None):
        """Predictions at masked positions only, in row-major order of ``masked`` (batch x genes, bool).

        rank mode: logits (n_masked x n_genes); expression mode: standardised values (n_masked).
        With ``targets`` (same shape as ``x``) also returns the loss over masked positions only:
        cross-entropy on gene ids, or MSE on standardised values.
        """
        h = self.hidden(x, masked, visible)[masked]
        out = self.head(h)
        if self.cfg.mode == "expression":
            out = out.squeeze(-1)
        if targets is None:
            return out, None
        y = targets[masked]
        if self.cfg.mode == "rank":
            loss = F.cross_entropy(out.float(), y.long())
        else:
            loss = F.mse_loss(out.float(), y.float())
        return out, loss

    def embeddings(self, x, masked):
        """Per-profile embedding: mean of the last layer over positions (batch x d_model)."""
        return self.hidden(x, masked).mean(dim=1)

    def standardize(self, values):
        return (values - self.value_mean) / self.value_std

    def unstandardize(self, values, gene_index):
        return values * self.value_std[gene_index] + self.value_mean[gene_index]

    def configure_optimizer(self, lr, weight_decay, betas=(0.9, 0.95)):
        """AdamW; weight decay on matrices only (not on biases, norms, embeddings' mask vector)."""
        decay = [p for p in self.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=betas)

    def flops_per_token(self):
        """Training FLOPs per token (forward + backward = 3 x forward), attention included."""
        c, t = self.cfg, self.cfg.n_genes
        per_layer = 2 * (4 * c.d_model**2 + 2 * c.d_model * c.d_ff) + 2 * 2 * t * c.d_model
        return 3 * c.n_layers * per_layer


def build_model(model_config):
    """Rebuild a model from the dict stored in a checkpoint (``asdict(ModelConfig)``)."""
    return L1kFormer(ModelConfig(**model_config))


def model_dict(model):
    return asdict(model.cfg)
