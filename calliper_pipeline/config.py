"""Frozen configuration dataclasses. Defaults are the paper's (see docs in PAPER.md).

Each field says its unit or why. The Dagster layer exposes the operator-facing subset as run
config and converts it to these; MLflow logs them as params via :func:`flatten`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Literal

from calliper_pipeline.constants import PAPER_EMBED_DIM, PAPER_SEEDS

DescriptionVariant = Literal["calliper", "calliper_plus"]
ObjectiveName = Literal["poi", "neighbourhood"]

#: Text paired with a point that has no POI within a target radius (and with background points
#: on the own-text head). It must be embedded with the run's text encoder like the POI texts.
EMPTY_TEXT = "a place with no points of interest"


@dataclass(frozen=True)
class DescriptionConfig:
    """How POI texts are built."""

    variant: DescriptionVariant = "calliper"  # calliper_plus adds the POI name where present
    lowercase: bool = True  # the paper lower-cases class and group names


@dataclass(frozen=True)
class EncoderConfig:
    """Location encoder = positional encoding (``pe``) + network (``network``)."""

    # grid | theory | spherec | spherec+ | spherem | spherem+ | sphericalharmonics | wrap | direct
    pe: str = "grid"
    network: str = "fcnet"  # fcnet | mlp | siren
    min_lambda_m: float = 100.0  # smallest wavelength of grid/theory, metres
    max_lambda_m: float = 10_000.0  # largest wavelength of grid/theory, metres
    frequency_num: int = 32  # number of scales S (grid: 4*S features)
    min_radius_deg: float = 0.001  # smallest scale of the sphere* encodings, degrees
    legendre_polys: int = 10  # spherical harmonics degree L (L*L features)
    hidden_dim: int = 256
    num_layers: int = 4  # FCNet residual blocks / MLP or SIREN hidden layers
    dropout: float = 0.5
    embed_dim: int = PAPER_EMBED_DIM  # output dimension (128 in the paper)
    # what predict returns: "raw" network outputs (the paper's), or "unit_heads": each
    # embed_dim-wide head L2-normalised (the cosine space the contrastive loss works in);
    # training is the same either way
    representation: str = "raw"


@dataclass(frozen=True)
class TrainConfig:
    """Contrastive training of the location encoder against frozen text embeddings."""

    epochs: int = 100
    batch_size: int = 1024  # the paper's run most likely used 1024 (val loss 6.42 < ln 1024)
    lr: float = 1e-3
    weight_decay: float = 0.01  # not applied to biases, 1-D params and logit_scale
    val_fraction: float = 0.1
    seed: int = 42
    init_temperature: float = 0.07  # logit_scale starts at log(1/0.07)
    normalize_text: bool = False  # paper: only the location side is L2-normalised; True = CLIP
    device: str = "cpu"  # "cpu" or "cuda"
    bf16: bool = False  # bf16 autocast (CUDA only)
    early_stopping_patience: int | None = None  # epochs without val improvement; None = off
    num_threads: int | None = None  # torch intra-op threads on CPU; None = torch's default
    drop_last: bool = True  # a tiny last batch makes InfoNCE noisy; the paper's loader drops none


@dataclass(frozen=True)
class ObjectiveConfig:
    """What each training point is paired with (one 128-d head per target; loss = their mean).

    The default is the paper's objective: every POI with its own text, one head, one-hot
    InfoNCE, no background points. :meth:`neighbourhood` is the measured fidelity preset
    (docs FIDELITY-LEADS.md): one head per radius whose target is the L2-normalised mean text
    embedding of the POIs within that radius.
    """

    name: ObjectiveName = "poi"  # poi: own text (paper) | neighbourhood: one head per radius
    target_radii_m: tuple[float, ...] = (200.0, 500.0, 1000.0, 2000.0)  # neighbourhood heads, m
    background_fraction: float = 0.0  # uniform points inside the city boundary, x number of POIs
    empty_text: str = EMPTY_TEXT  # target when no POI lies within a radius / background own text
    multi_positive: bool = False  # batch items with the same target are all positives
    include_own_text_head: bool = False  # neighbourhood: add a head whose target is the own text
    sources: tuple[str, ...] | None = None  # keep only POIs of these ``source`` values; None: all
    background_seed: int = 0  # seed of the background draw (deterministic, cacheable)
    # neighbourhood: pseudo-count of the empty text within every radius, as a multiple of the
    # mean POI count within that radius over the training points; 0: the empty text only where
    # nothing is counted. > 0 makes the target density-aware (sparse places lean to "empty").
    empty_prior: float = 0.0

    @property
    def own_text_head(self) -> bool:
        """Whether the model has a head whose target is the point's own text."""
        return self.name == "poi" or self.include_own_text_head

    @property
    def heads(self) -> int:
        """Number of 128-d heads (the representation has ``embed_dim * heads`` columns)."""
        radii = len(self.target_radii_m) if self.name == "neighbourhood" else 0
        return radii + int(self.own_text_head)

    @classmethod
    def paper(cls) -> ObjectiveConfig:
        """The paper's objective (the default)."""
        return cls()

    @classmethod
    def neighbourhood(cls, **overrides: Any) -> ObjectiveConfig:
        """Neighbourhood targets at 200/500/1000/2000 m plus as many background points as POIs."""
        return cls(**{"name": "neighbourhood", "background_fraction": 1.0, **overrides})


@dataclass(frozen=True)
class ProbeConfig:
    """Downstream probes, exactly as the authors' notebooks, plus the spatial-block protocol."""

    seeds: tuple[int, ...] = PAPER_SEEDS
    split_seed: int = 42  # train_test_split random_state for both splits
    test_fraction: float = 0.2
    val_fraction: float = 0.1  # of the remaining 80 %
    lr: float = 1e-3
    batch_size: int = 128
    max_epochs: int = 300
    patience: int = 10
    mlp_hidden: int = 64
    probes: tuple[str, ...] = ("linear", "mlp")
    count_radii_m: tuple[float, ...] = (200.0, 500.0, 1000.0, 2000.0)
    # split protocols: "random" (the paper's split, the same for every seed) and "blocks"
    # (whole spatial blocks to test/validation, a fresh draw per seed; evaluation/splits.py)
    protocols: tuple[str, ...] = ("random", "blocks")
    block_grid: int = 10  # blocks per axis over the points' extent (metric CRS, metres)
    block_test_fraction: float = 0.2  # target share of rows in test blocks


@dataclass(frozen=True)
class RunConfig:
    """One full run: descriptions, encoder, training, evaluation."""

    description: DescriptionConfig = field(default_factory=DescriptionConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested config dataclasses to ``{"train.lr": 0.001, ...}`` (for MLflow params)."""
    out: dict[str, Any] = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if is_dataclass(value):
            out.update(flatten(value, prefix=f"{key}."))
        else:
            out[key] = value
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain dict of a config dataclass (JSON-serialisable)."""
    return asdict(cfg)
