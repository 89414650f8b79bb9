"""The l1kformer model: a pre-norm transformer encoder over the landmark genes, and the dense control.

The trunk (blocks of self-attention and MLP, a final norm) is the same in every mode; what goes in and
comes out are the mode's layers (layers.py), chosen here from the config (``LAYERS``):
- rank mode: tokens are gene ids in rank order plus a [MASK] id, with learned position embeddings, and
  a head that scores every gene at each masked position (``rank_view: sequence``); or one token per gene
  carrying its visible rank position, and a head that predicts each missing gene's position (``genes``);
- expression mode: genes in fixed order, a value embedding plus a gene embedding per token, a learned
  [MASK] vector for hidden values; the head regresses one value per masked position.
Heads run at masked positions only. ``DenseNet`` is the control without attention (the ``dense``
trunk), trained and scored the same way. A model maps inputs to outputs; the loss is its task's
(tasks.py). Dropout acts on the embeddings and the residual branches, never on attention
probabilities: that keeps the fused attention kernels (flash / memory-efficient, on GPU and CPU) in
use during training, where attention dropout would force the unfused path that materialises
978 x 978 scores. Pure torch, no I/O.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from l1kformer.layers import (DenseExpressionInput, DensePositionHead, DenseRankInput, DenseValueHead,
                              ExpressionEncoder, GenePositionHead, RankEncoder, RankGeneView, Standardized,
                              TokenLogits, ValueHead)
from l1kformer.settings import ModelConfig

# mode -> trunk -> (input encoder, head); a function of the config where a setting chooses between views
LAYERS = {
    "rank": {"transformer": lambda cfg: ((RankGeneView, GenePositionHead) if cfg.rank_view == "genes"
                                         else (RankEncoder, TokenLogits)),
             "dense": lambda cfg: (DenseRankInput, DensePositionHead)},
    "expression": {"transformer": lambda cfg: (ExpressionEncoder, ValueHead),
                   "dense": lambda cfg: (DenseExpressionInput, DenseValueHead)},
}


def positions_mask(x, index):
    """batch x genes bool: True at the positions in ``index`` (batch x k)."""
    return torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device).scatter_(1, index, True)


def decayed_groups(params, weight_decay):
    """AdamW parameter groups: weight decay on matrices only (not on biases, norms, [MASK] and fill
    vectors); parameters without gradients left out."""
    params = [p for p in params if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


class SelfAttention(nn.Module):
    """Multi-head self-attention. With ``attn_bias: genes`` each head adds a learned number to the
    attention logit from a token of gene a to a token of gene b (a table over genes, with [MASK] as
    gene ``n_genes``; zero at the start): a weight for every gene pair from the first step, as the dense
    control has, besides the content-based attention. ``genes`` says which gene each token is:
    positions (one row for every profile) or batch x positions."""

    def __init__(self, cfg):
        super().__init__()
        self.n_heads = cfg.n_heads
        # no bias: a key bias cannot change attention (softmax is shift-invariant), so its gradient is
        # rounding noise that Adam would turn into real steps
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        n = cfg.n_genes + 1
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
    """What training and evaluation ask of either trunk besides ``forward`` and ``hidden``."""

    def configure_optimizer(self, lr, weight_decay, betas=(0.9, 0.95), fused=False):
        """AdamW; weight decay on matrices only (not on biases, norms, [MASK] and fill vectors);
        ``fused`` (CUDA): one kernel for the whole update."""
        return torch.optim.AdamW(decayed_groups(self.parameters(), weight_decay), lr=lr, betas=betas,
                                 fused=fused or None)

    # Expression inputs are standardised by the train split's per-gene mean and sd, which the model keeps
    # (buffers of its encoder), so that its file alone turns predictions back into original units.
    def set_train_stats(self, mean, std):
        self.encoder.set_stats(mean, std)

    def standardize(self, values):
        return self.encoder.standardize(values) if isinstance(self.encoder, Standardized) else values

    def unstandardize(self, values, gene_index):
        return self.encoder.unstandardize(values, gene_index) if isinstance(self.encoder, Standardized) else values

    def set_position_prior(self, table):
        """Store the train split's log P(gene | position) (positions x genes) in a rank head that uses one."""
        self.head.set_prior(table)

    def gene_table(self):
        """genes x width: the model's per-gene input weights."""
        return self.encoder.gene_table()


class L1kFormer(Trainable):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        encoder, head = LAYERS[cfg.mode]["transformer"](cfg)
        self.encoder = encoder(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = head(cfg)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2 style scaled init of residual projections
            if name.endswith(("attn.proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layers))
        if hasattr(self.head, "init_weights"):  # a head that starts where it says (rank heads at their prior)
            self.head.init_weights()

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, 0.02)

    def hidden(self, x, hide, extra=None, all_layers=False):
        """Last-layer states, batch x genes x d_model; ``hide`` (bool, batch x genes) marks the
        positions whose input the encoder replaces by its [MASK] vector. ``extra`` (m x d_model): tokens
        appended after the genes (a readout's [CLS]), seen by the pair bias as [MASK]. ``all_layers``:
        the list of every layer's states, the embeddings first and the normed last layer last."""
        h = self.drop(self.encoder(x, hide))
        genes = None
        if self.cfg.attn_bias == "genes":  # the encoder's tokens' genes, or position i is gene i
            genes = self.encoder.token_genes(x)
            genes = torch.arange(h.shape[1], device=x.device) if genes is None else genes
        if extra is not None:
            h = torch.cat([h, extra.to(h.dtype).expand(h.shape[0], -1, -1)], dim=1)
            if genes is not None:
                pad = torch.full((*genes.shape[:-1], extra.shape[0]), self.cfg.n_genes, device=x.device)
                genes = torch.cat([genes, pad.to(genes.dtype)], dim=-1)
        layers = [h]
        for block in self.blocks:
            h = block(h, genes)
            layers.append(h)
        layers[-1] = self.norm(h)
        return layers if all_layers else layers[-1]

    def forward(self, x, index, hide=None):
        """Outputs at the masked positions only: ``index`` (batch x k, long) holds each profile's masked
        positions, the same number for every profile, so every shape is fixed (no boolean indexing:
        the step compiles to one graph). Outputs come in row-major order of ``index``. ``hide``
        (batch x genes, bool) defaults to the masked positions (training passes BERT's replace share)."""
        h = self.hidden(x, positions_mask(x, index) if hide is None else hide)
        return self.head(h, index, x)

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

    The mode's dense input gives 2 x genes features per profile (expression: standardised values with
    hidden genes at a learned per-gene fill value, plus the hidden indicator; rank: each gene's
    visible rank position or a fill value, plus the visible indicator); residual MLP blocks of
    ``dense_width`` map them to one hidden vector, and the dense head predicts every gene from it
    (kept at the masked positions). Same loss, masks, optimiser and evaluation as the transformer.
    """

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        encoder, head = LAYERS[cfg.mode]["dense"](cfg)
        self.encoder = encoder(cfg)
        self.input = nn.Linear(2 * cfg.n_genes, cfg.dense_width)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(DenseBlock(cfg.dense_width, cfg.dropout) for _ in range(cfg.dense_depth))
        self.norm = nn.LayerNorm(cfg.dense_width)
        self.head = head(cfg)

    def hidden(self, x, masked, hide, all_layers=False):
        h = self.drop(self.input(self.encoder(x, masked, hide).to(self.input.weight.dtype)))
        layers = [h]
        for block in self.blocks:
            h = block(h)
            layers.append(h)
        layers[-1] = self.norm(h)
        return layers if all_layers else layers[-1]

    def forward(self, x, index, hide=None):
        """Outputs at the masked positions ``index`` (batch x k), row-major."""
        masked = positions_mask(x, index)
        return self.head(self.hidden(x, masked, masked if hide is None else hide), index, x)

    def gene_table(self):
        """genes x dense_width: the first layer's weights on each gene's value (or position)."""
        return self.input.weight[:, : self.cfg.n_genes].T


TRUNKS = {"transformer": L1kFormer, "dense": DenseNet}


# Downstream classifiers (finetune.py, downstream_baselines.py). Both have ``features`` (the penultimate
# layer, which retrieval scores) and ``forward`` (logits over the task's classes).

class MLP(nn.Module):
    """The downstream baselines from scratch: ``depth`` hidden layers of ``width`` (GELU, dropout) on the
    profile; ``depth`` 0 is multinomial logistic regression."""

    def __init__(self, n_in, n_classes, width=0, depth=0, dropout=0.0):
        super().__init__()
        layers, d = [], n_in
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.GELU(), nn.Dropout(dropout)]
            d = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(d, n_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.out(self.features(x))


# Readouts: how a classifier reads one vector from a trunk's states (batch x tokens x width). The rank
# genes view's input is a permutation of the same tokens, so at the input the mean over genes is the
# same vector for every profile, and the masked loss, per token, never pushes profile information into
# it: ``mean`` can lose what the token states carry. The other readouts can hold the whole profile.

class Readout(nn.Module):
    """The mean over the gene tokens (``mean``); the base of the others. ``extra_tokens``: tokens the
    readout appends to the trunk's input (its own states come last)."""
    extra_tokens = 0

    def __init__(self, cfg, width):
        super().__init__()
        self.width = width

    def tokens(self):
        """The tokens appended to the input (extra_tokens x width), or None."""
        return None

    def forward(self, h):
        return h[:, : h.shape[1] - self.extra_tokens].mean(1)

    def out_width(self, n_tokens):
        return self.width

    def start_from(self, gram, mean, count):
        """A data-driven start from the train profiles' token states: ``gram`` (width x width, the sum
        over profiles and gene tokens of h h^T), ``mean`` (tokens x width) and ``count`` (profiles)."""


class ClsReadout(Readout):
    """``cls``: a learned token appended to the input; its last-layer state is the readout. It starts
    at zero, where its attention is uniform: close to a mean over the values, but free to move."""
    extra_tokens = 1

    def __init__(self, cfg, width):
        super().__init__(cfg, width)
        self.token = nn.Parameter(torch.zeros(1, width))

    def tokens(self):
        return self.token

    def forward(self, h):
        return h[:, -1]


class AttentionReadout(Readout):
    """``attention``: one learned query per head attending over the gene tokens' states (keys a linear
    map of them, values the states themselves, split by head). The queries start at zero, where it
    is the mean."""

    def __init__(self, cfg, width):
        super().__init__(cfg, width)
        self.n_heads = cfg.n_heads if width % cfg.n_heads == 0 else 1
        self.key = nn.Linear(width, width, bias=False)
        self.query = nn.Parameter(torch.zeros(self.n_heads, width // self.n_heads))

    def forward(self, h):
        b, t, d = h.shape
        hh = h.view(b, t, self.n_heads, d // self.n_heads)
        logits = torch.einsum("bthd,hd->bth", self.key(h).view_as(hh), self.query.to(h.dtype))
        weights = torch.softmax(logits.float() / math.sqrt(d // self.n_heads), dim=1).to(h.dtype)
        return torch.einsum("bth,bthd->bhd", weights, hh).reshape(b, d)


class GenesReadout(Readout):
    """``genes``: each gene token's state mapped to ``readout_width`` numbers by one linear map,
    flattened (genes x readout_width): the head sees every gene. The map starts at the top principal
    directions of the train token states around each gene's own mean (:meth:`start_from`), so the
    frozen features keep the most of what varies between profiles."""

    def __init__(self, cfg, width, readout_width=4):
        super().__init__(cfg, width)
        self.proj = nn.Linear(width, min(readout_width, width), bias=False)

    def forward(self, h):
        return self.proj(h).flatten(1)

    def out_width(self, n_tokens):
        return n_tokens * self.proj.out_features

    @torch.no_grad()
    def start_from(self, gram, mean, count):
        within = gram / max(1, count * len(mean)) - mean.T @ mean / len(mean)  # pooled within-gene covariance
        _, vectors = torch.linalg.eigh(within.double())
        self.proj.weight.copy_(vectors[:, -self.proj.out_features:].flip(1).T.float())


READOUTS = {"mean": Readout, "cls": ClsReadout, "attention": AttentionReadout, "genes": GenesReadout}


def trunk_width(trunk):
    """The width of a trunk's states."""
    return trunk.cfg.d_model if trunk.cfg.trunk == "transformer" else trunk.cfg.dense_width


def make_readout(trunk, name, readout_width=4):
    """A readout of ``trunk``'s states. The dense trunk has one state per profile, its last hidden
    layer: every readout but ``mean`` (which returns it) needs gene tokens."""
    if trunk.cfg.trunk != "transformer" and name != "mean":
        raise ValueError(f"readout {name!r} needs gene tokens; the dense trunk has one state per profile: "
                         "use readout mean")
    args = (readout_width,) if name == "genes" else ()
    return READOUTS[name](trunk.cfg, trunk_width(trunk), *args)


class FineTuned(nn.Module):
    """A trunk, a readout of its states, the readout's features standardised by their train mean and sd
    (fixed when fine-tuning a pretrained trunk starts; identity for a trunk trained from scratch),
    dropout, and a linear layer over the classes, on the trunk's last layer. The trunk's own
    masked-model head is not used (nor trained)."""

    def __init__(self, trunk, n_classes, dropout=0.0, readout="mean", readout_width=4):
        super().__init__()
        self.trunk = trunk
        self.readout = make_readout(trunk, readout, readout_width)
        width = self.readout.out_width(trunk.cfg.n_genes)
        self.register_buffer("feature_mean", torch.zeros(width))
        self.register_buffer("feature_std", torch.ones(width))
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(width, n_classes)

    def states(self, x, all_layers=False):
        """The trunk's states on the whole profile (nothing hidden): batch x tokens x width, the
        readout's own tokens last; with ``all_layers``, one per layer."""
        hide = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
        if self.trunk.cfg.trunk != "transformer":
            layers = [h.unsqueeze(1) for h in self.trunk.hidden(x, hide, hide, all_layers=True)]
        else:
            layers = self.trunk.hidden(x, hide, self.readout.tokens(), all_layers=True)
        return layers if all_layers else layers[-1]

    def pooled(self, x):
        return self.readout(self.states(x))

    def set_feature_stats(self, pooled):
        """Standardise by the mean and sd of ``pooled`` (the train profiles' readout features)."""
        pooled = torch.as_tensor(pooled, dtype=torch.float64)
        self.feature_mean.copy_(pooled.mean(0))
        self.feature_std.copy_(pooled.std(0).clamp_min(1e-6))

    def features(self, x):
        return (self.pooled(x).float() - self.feature_mean) / self.feature_std

    def classify(self, features):
        return self.out(self.drop(features))

    def forward(self, x):
        return self.classify(self.features(x))

    def parameter_groups(self):
        """(trunk parameters, readout and head parameters); the masked-model head, which takes no part
        in classification, in neither."""
        trunk = [p for name, p in self.trunk.named_parameters() if not name.startswith("head.")]
        return trunk, [*self.readout.parameters(), *self.out.parameters()]


def build_model(model_config, path="model file"):
    """Build a model from its config, or rebuild one from the dict stored in a model file (``path``,
    named in errors)."""
    cfg = model_config if isinstance(model_config, ModelConfig) else ModelConfig.from_file(model_config, path)
    return TRUNKS[cfg.trunk](cfg)
