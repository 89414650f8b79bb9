"""A run's settings as two dataclasses, the model's and the optimiser's, without torch.

Their values come from config.yaml's ``train:`` section (the one home of every default), updated by
the run's own; the schema checks each key's type and range, and the dataclasses' ``__post_init__``
the rules that tie keys together. The workflow builds them once at parse time (rules/common.smk), so
a run that breaks a rule stops before any job starts, with the same message training would give.
"""

from dataclasses import dataclass, fields

from l1kformer.errors import InputError
from l1kformer.modes import get_mode

# Options that an earlier model study rejected and that were removed (the last commit with them:
# f0f6d25): a model file that used one cannot be rebuilt; one written with the value that meant "off"
# loads as before.
REMOVED = {"n_registers": 0, "profile_token": False, "rank_values": False}
REMOVED_VALUE_ENCODERS = ("mlp", "soft_bins")
# Settings added after the first model files were written, with the value those files were built with.
ADDED = {"attn_bias": "none", "rank_view": "sequence", "position_prior": None}


@dataclass
class ModelConfig:
    """What a model is; stored in its file, so that the file alone rebuilds it (model.py).
    ``trunk`` chooses the transformer (d_model, n_layers, n_heads, d_ff) or the dense control
    (dense_width, dense_depth); ``value_encoder`` embeds a scalar per gene token: the expression value
    (expression mode) or the visible rank position (the rank genes view); ``rank_view`` what a
    rank-mode transformer's tokens are; ``attn_bias`` genes: a learned attention bias per gene pair;
    ``position_prior`` (rank heads): the Gaussian smoothing, in positions, of the train split's
    position-frequency table that the head adds to its logits (None: no prior)."""
    mode: str
    n_genes: int
    trunk: str
    value_encoder: str
    attn_bias: str
    rank_view: str
    position_prior: object  # float >= 0, or None
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    dense_width: int
    dense_depth: int
    dropout: float

    def __post_init__(self):
        get_mode(self.mode)  # a clear error for an unknown mode
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")

    @classmethod
    def from_file(cls, stored, path="model file"):
        """The config stored in a model file, upgraded: settings added since it was written get the
        value it was built with; a removed option it used is refused, naming the file."""
        stored = {**ADDED, **stored}
        for key, off in REMOVED.items():
            if stored.pop(key, off) != off:
                raise InputError(path, f"it was trained with {key}, an option removed after commit f0f6d25; "
                                       f"rebuild it with that commit")
        if stored["value_encoder"] in REMOVED_VALUE_ENCODERS:
            raise InputError(path, f"it was trained with value_encoder {stored['value_encoder']}, removed after "
                                   f"commit f0f6d25; rebuild it with that commit")
        return cls(**stored)


MASK_SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class TrainConfig:
    """How a model is trained."""
    epochs: int
    batch_size: int
    lr: float
    min_lr_ratio: float
    warmup_steps: int
    weight_decay: float
    grad_clip: float
    mask_schedule: str
    mask_start: float
    mask_end: float
    mask_replace: float
    mask_random: float
    patience: int
    seed: int
    device: str
    window_rows: int
    gpus: int
    max_steps_per_epoch: int  # 0: the whole training set each epoch
    compile: object  # "auto" (CUDA only), True or False: torch.compile the training step's model
    position_prior_below: object  # float > 0 or None: a rank head's prior only below this many train profiles per gene

    def __post_init__(self):
        if self.mask_replace + self.mask_random > 1:
            raise ValueError(f"mask_replace + mask_random = {self.mask_replace + self.mask_random:g} exceeds 1")


def split_settings(settings):
    """A run's flat settings (config.yaml's ``train:`` keys, ``mode`` and ``n_genes``) ->
    (ModelConfig, TrainConfig)."""
    model_keys = {f.name for f in fields(ModelConfig)}
    train_keys = {f.name for f in fields(TrainConfig)}
    unknown = set(settings) - model_keys - train_keys
    if unknown:
        raise ValueError(f"unknown run settings: {sorted(unknown)}")
    return (ModelConfig(**{k: v for k, v in settings.items() if k in model_keys}),
            TrainConfig(**{k: v for k, v in settings.items() if k in train_keys}))
