"""Named run configurations and the one builder every door uses (CLI, Dagster, scripts).

A run is a preset plus overrides. ``paper`` is the published recipe (each POI paired with its own
description; the paper's encoder, optimiser and 100 epochs). ``default`` is what ``make run``
trains: the configuration the fidelity ablation chose (see docs/results.md). Overrides use flat
operator-facing names (``epochs``, ``lr``, ``device``, ...), mapped by :data:`FIELDS` to the
nested dataclass fields, so the CLI options and the Dagster Launchpad config are the same list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass, replace
from typing import Any

from calliper_pipeline.config import ObjectiveConfig, RunConfig
from calliper_pipeline.errors import ConfigError

PAPER = "paper"
DEFAULT = "default"

# flat name -> (section, field) of RunConfig; every override a door can set
FIELDS: dict[str, tuple[str, str]] = {
    "description_variant": ("description", "variant"),
    "epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "lr": ("train", "lr"),
    "seed": ("train", "seed"),
    "device": ("train", "device"),
    "bf16": ("train", "bf16"),
    "early_stopping_patience": ("train", "early_stopping_patience"),
    "num_threads": ("train", "num_threads"),
    "normalize_text": ("train", "normalize_text"),
    "pe": ("encoder", "pe"),
    "network": ("encoder", "network"),
    "hidden_dim": ("encoder", "hidden_dim"),
    "num_layers": ("encoder", "num_layers"),
    "frequency_num": ("encoder", "frequency_num"),
    "min_lambda_m": ("encoder", "min_lambda_m"),
    "max_lambda_m": ("encoder", "max_lambda_m"),
    "objective": ("objective", "name"),
    "target_radii_m": ("objective", "target_radii_m"),
    "background_fraction": ("objective", "background_fraction"),
    "multi_positive": ("objective", "multi_positive"),
}


def _paper() -> RunConfig:
    """The published recipe: each POI with its own text, 100 epochs, best validation epoch."""
    return RunConfig()


def _default() -> RunConfig:
    """Neighbourhood targets at 200/500/1000/2000 m (one 128-d head each, D = 512), as many
    background points inside the boundary as POIs, every POI source of the city; best epoch by
    validation contrastive loss within 30 epochs (5 without improvement stop early): on a
    2-core CPU an epoch of London's 190k points takes 30-40 s."""
    paper = _paper()
    return replace(
        paper,
        objective=ObjectiveConfig.neighbourhood(),
        train=replace(paper.train, epochs=30, early_stopping_patience=5),
    )


PRESETS = {PAPER: _paper, DEFAULT: _default}


def preset_names() -> list[str]:
    """The presets' names, for help texts and validation."""
    return sorted(PRESETS)


def _section_fields(cfg: Any) -> set[str]:
    return {f.name for f in fields(cfg)}


def run_config(preset: str = DEFAULT, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The RunConfig of ``preset`` with ``overrides`` applied (``None`` values are ignored).

    Args:
        preset: one of :func:`preset_names`.
        overrides: flat names of :data:`FIELDS` (e.g. ``{"epochs": 10, "device": "cuda"}``) or
            dotted ``"section.field"`` names for anything else (e.g. ``"train.val_fraction"``).

    Raises:
        ConfigError: an unknown preset, override name or field.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {preset_names()}")
    cfg = PRESETS[preset]()
    by_section: dict[str, dict[str, Any]] = {}
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name in FIELDS:
            section, field = FIELDS[name]
        elif "." in name:
            section, field = name.split(".", 1)
        else:
            raise ConfigError(f"unknown setting {name!r}; known: {sorted(FIELDS)}")
        part = getattr(cfg, section, None)
        if part is None or not is_dataclass(part) or field not in _section_fields(part):
            raise ConfigError(f"unknown setting {name!r} ({section}.{field})")
        by_section.setdefault(section, {})[field] = value
    for section, values in by_section.items():
        current = getattr(cfg, section)
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        cfg = replace(cfg, **{section: replace(current, **values)})
    return cfg
