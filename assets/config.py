"""Run configuration an operator changes in the Launchpad, converted to the library's configs.

Defaults are read from the library's frozen dataclasses (the paper's settings), so they live in
one place. Only what an operator tunes is exposed; everything else keeps the library default.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from calliper_pipeline import presets
from calliper_pipeline.config import DescriptionConfig, ProbeConfig, RunConfig
from calliper_pipeline.constants import HELDOUT_LOSS_TOLERANCE, HELDOUT_RECALL_TOLERANCE
from calliper_pipeline.store.metrics import higher_is_better

_P = ProbeConfig()
Variant = Literal["calliper", "calliper_plus"]


class DescriptionSettings(dg.Config):
    """Which POI texts are embedded (must match the training's ``description_variant``)."""

    description_variant: Variant = Field(
        default="calliper", description="calliper | calliper_plus (adds the POI name)"
    )

    def description(self) -> DescriptionConfig:
        return DescriptionConfig(variant=self.description_variant)


class TrainingConfig(DescriptionSettings):
    """Training of the location encoder: a preset plus what the operator overrides.

    ``preset`` names a library preset (``default``: what ``make run`` trains; ``paper``: the
    published recipe). Every other field left at null keeps the preset's value; the library's
    :func:`calliper_pipeline.presets.run_config` is the one builder, shared with the CLI.
    """

    preset: str = Field(default=presets.DEFAULT, description="default | paper")
    epochs: int | None = Field(default=None, description="training epochs")
    batch_size: int | None = Field(default=None, description="points per contrastive batch")
    lr: float | None = Field(default=None, description="AdamW learning rate")
    device: str | None = Field(default=None, description="cpu | cuda")
    bf16: bool | None = Field(default=None, description="bf16 autocast (CUDA only)")
    seed: int | None = Field(default=None, description="seed of split, initialisation, shuffling")
    early_stopping_patience: int | None = Field(
        default=None, description="epochs without validation improvement before stopping"
    )
    num_threads: int | None = Field(default=None, description="torch CPU threads; null = auto")
    normalize_text: bool | None = Field(
        default=None, description="normalise the projected text too (CLIP); the paper does not"
    )
    pe: str | None = Field(default=None, description="positional encoding: grid, theory, ...")
    network: str | None = Field(default=None, description="network: fcnet | mlp | siren")
    hidden_dim: int | None = Field(default=None, description="network width")
    num_layers: int | None = Field(default=None, description="residual blocks / hidden layers")
    frequency_num: int | None = Field(default=None, description="scales of grid/theory")
    min_lambda_m: float | None = Field(default=None, description="smallest wavelength, metres")
    max_lambda_m: float | None = Field(default=None, description="largest wavelength, metres")
    reuse: bool = Field(
        default=True,
        description="reuse the registered version trained from the same snapshot, settings, "
        "text encoder and commit instead of training again (false: always train)",
    )

    def overrides(self) -> dict[str, Any]:
        """The fields the operator set (non-null), by their flat names."""
        return {
            k: v
            for k, v in self.model_dump().items()
            if k in presets.FIELDS and v is not None and k != "description_variant"
        }

    def run_config(self) -> RunConfig:
        """The library's RunConfig (probe settings at their defaults)."""
        cfg = presets.run_config(self.preset, self.overrides())
        return replace(cfg, description=self.description())


class EvaluationConfig(dg.Config):
    """The downstream probes (the paper's protocol by default)."""

    seeds: list[int] = Field(default=list(_P.seeds), description="one probe run per seed")
    max_epochs: int = Field(default=_P.max_epochs, description="probe epochs at most")
    patience: int = Field(default=_P.patience, description="early-stopping patience, epochs")
    probes: list[str] = Field(default=list(_P.probes), description="linear and/or mlp")

    def probe_config(self) -> ProbeConfig:
        return replace(
            _P,
            seeds=tuple(self.seeds),
            max_epochs=self.max_epochs,
            patience=self.patience,
            probes=tuple(self.probes),
        )


class PromotionConfig(dg.Config):
    """The gate that moves the ``champion`` alias."""

    metric: str = Field(
        default="luc.mlp.f1", description="task.probe.metric from the evaluation table"
    )
    tolerance: float = Field(default=0.0, description="candidate may trail the incumbent by this")
    higher_is_better: bool | None = Field(
        default=None, description="null: from the task (luc: higher, sdm: lower)"
    )
    heldout_loss_tolerance: float = Field(
        default=HELDOUT_LOSS_TOLERANCE,
        description="cities without the metric's labels: candidate held-out validation loss "
        "may exceed the champion's by this (nats)",
    )
    heldout_recall_tolerance: float = Field(
        default=HELDOUT_RECALL_TOLERANCE,
        description="cities without the metric's labels: candidate held-out recall@1% may "
        "trail the champion's by this (fraction of POIs)",
    )

    def direction(self) -> bool:
        """True when a higher score is better."""
        if self.higher_is_better is not None:
            return self.higher_is_better
        return higher_is_better(self.metric)


class MapsConfig(dg.Config):
    """Embedding maps and retrieval heatmaps."""

    queries: list[str] | None = Field(
        default=None,
        description="texts for retrieval heatmaps; null: the city file's retrieval_queries, "
        "else its three most common categories' descriptions",
    )
    k: int = Field(default=4, description="k-means clusters of the cluster map")
    seed: int = Field(default=42, description="k-means seed")
    top_k: int = Field(default=20, description="best cells ringed on each heatmap")
    width_px: int = Field(default=1600, description="PNG width in pixels")


class DriftCheckConfig(dg.Config):
    """The warning on category-mix drift between two snapshots."""

    max_tvd: float = Field(
        default=0.1, description="warn above this total variation distance (0..1)"
    )
