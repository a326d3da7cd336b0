"""Run configuration an operator changes in the Launchpad, converted to the library's configs.

Defaults are read from the library's frozen dataclasses (the paper's settings), so they live in
one place. Only what an operator tunes is exposed; everything else keeps the library default.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import dagster as dg
from pydantic import Field

from calliper_pipeline.config import (
    DescriptionConfig,
    EncoderConfig,
    ProbeConfig,
    RunConfig,
    TrainConfig,
)

_T, _E, _P = TrainConfig(), EncoderConfig(), ProbeConfig()
Variant = Literal["calliper", "calliper_plus"]

DEFAULT_QUERIES = (
    "a place of pubs and bars, a type of eating and drinking",
    "a place of railway stations, a type of public transport",
    "a place of primary schools, a type of education",
)


class DescriptionSettings(dg.Config):
    """Which POI texts are embedded (must match the training's ``description_variant``)."""

    description_variant: Variant = Field(
        default="calliper", description="calliper | calliper_plus (adds the POI name)"
    )

    def description(self) -> DescriptionConfig:
        return DescriptionConfig(variant=self.description_variant)


class TrainingConfig(DescriptionSettings):
    """Training of the location encoder (the paper's defaults)."""

    epochs: int = Field(default=_T.epochs, description="training epochs")
    batch_size: int = Field(default=_T.batch_size, description="POIs per contrastive batch")
    lr: float = Field(default=_T.lr, description="AdamW learning rate")
    device: str = Field(default=_T.device, description="cpu | cuda")
    bf16: bool = Field(default=_T.bf16, description="bf16 autocast (CUDA only)")
    seed: int = Field(default=_T.seed, description="seed of split, initialisation, shuffling")
    early_stopping_patience: int | None = Field(
        default=_T.early_stopping_patience, description="epochs without improvement; null = off"
    )
    num_threads: int | None = Field(default=None, description="torch CPU threads; null = torch's")
    pe: str = Field(default=_E.pe, description="positional encoding: grid, theory, spherec, ...")
    network: str = Field(default=_E.network, description="network: fcnet | mlp | siren")
    hidden_dim: int = Field(default=_E.hidden_dim, description="network width")
    num_layers: int = Field(default=_E.num_layers, description="residual blocks / hidden layers")
    frequency_num: int = Field(default=_E.frequency_num, description="scales of grid/theory")
    min_lambda_m: float = Field(default=_E.min_lambda_m, description="smallest wavelength, m")
    max_lambda_m: float = Field(default=_E.max_lambda_m, description="largest wavelength, m")

    def run_config(self) -> RunConfig:
        """The library's RunConfig (probe settings at their defaults)."""
        train = replace(
            _T,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            device=self.device,
            bf16=self.bf16,
            seed=self.seed,
            early_stopping_patience=self.early_stopping_patience,
            num_threads=self.num_threads,
        )
        encoder = replace(
            _E,
            pe=self.pe,
            network=self.network,
            hidden_dim=self.hidden_dim,
            num_layers=self.num_layers,
            frequency_num=self.frequency_num,
            min_lambda_m=self.min_lambda_m,
            max_lambda_m=self.max_lambda_m,
        )
        return RunConfig(description=self.description(), encoder=encoder, train=train)


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
        default="luc.mlp.f1", description="<task>.<probe>.<metric> from the evaluation table"
    )
    tolerance: float = Field(default=0.0, description="candidate may trail the incumbent by this")
    higher_is_better: bool | None = Field(
        default=None, description="null: from the task (luc: higher, sdm: lower)"
    )

    def direction(self) -> bool:
        """True when a higher score is better."""
        if self.higher_is_better is not None:
            return self.higher_is_better
        return not self.metric.startswith("sdm.")


class MapsConfig(dg.Config):
    """Embedding maps and retrieval heatmaps."""

    queries: list[str] = Field(
        default=list(DEFAULT_QUERIES), description="texts for retrieval heatmaps"
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
