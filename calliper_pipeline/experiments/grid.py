"""Named configurations of the fidelity ablation: levers one at a time, then the combination.

Each :class:`Variant` is a preset plus overrides in the flat or dotted names of
:func:`calliper_pipeline.presets.run_config`, so an experiment row and ``make run`` build their
configuration with the same function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from calliper_pipeline import presets
from calliper_pipeline.config import RunConfig
from calliper_pipeline.errors import ConfigError

PRIMARY_SOURCE = "london-pois-merged"  # the open POI snapshot without the FSA premises


@dataclass(frozen=True)
class Variant:
    """One row of an ablation: ``preset`` with ``overrides``, and what it tests."""

    name: str
    preset: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    lever: str = ""

    def run_config(self, seed: int, extra: Mapping[str, Any] | None = None) -> RunConfig:
        """The configuration of this row for training seed ``seed`` (``extra`` overrides last,
        e.g. fewer epochs for a smoke run)."""
        return presets.run_config(self.preset, {**self.overrides, "seed": seed, **(extra or {})})


_NO_FSA = {"objective.sources": (PRIMARY_SOURCE,)}
# the paper's 100 epochs keep the best validation epoch (10-17 on this data); stopping after 10
# epochs without improvement picks the same epoch in a fifth of the time (docs/benchmarks.md)
_PAPER = {**_NO_FSA, "early_stopping_patience": 10}
_QUICK = {"epochs": 15}  # levers measured at half the default's epochs, one seed

FIDELITY: tuple[Variant, ...] = (
    Variant("paper", presets.PAPER, _PAPER, "the published recipe on the open snapshot"),
    Variant(
        "paper+multi-positive",
        presets.PAPER,
        {**_PAPER, "objective.multi_positive": True},
        "3: same-text items of a batch are positives",
    ),
    Variant(
        "paper+names",
        presets.PAPER,
        {**_PAPER, "description_variant": "calliper_plus"},
        "5: CaLLiPer+ names in the texts",
    ),
    Variant(
        "paper+fsa",
        presets.PAPER,
        {"early_stopping_patience": 10},
        "4: FSA food premises as a second POI source",
    ),
    Variant(
        "4 heads",
        presets.DEFAULT,
        {**_NO_FSA, **_QUICK, "objective.background_fraction": 0.0},
        "1: neighbourhood targets at 200/500/1000/2000 m, one head each (15 epochs)",
    ),
    Variant(
        "4 heads+background",
        presets.DEFAULT,
        {**_NO_FSA, **_QUICK},
        "2: + background points inside the boundary, as many as POIs (15 epochs)",
    ),
    Variant(
        "4 heads+background+fsa",
        presets.DEFAULT,
        _QUICK,
        "4: + the FSA premises (15 epochs): the default's recipe at half its epochs",
    ),
    Variant(
        "4 heads+background+fsa+own text",
        presets.DEFAULT,
        {**_QUICK, "objective.include_own_text_head": True},
        "a fifth head whose target is the POI's own text (15 epochs)",
    ),
    Variant(
        "4 heads+background+fsa+multi-positive",
        presets.DEFAULT,
        {**_QUICK, "objective.multi_positive": True},
        "3 with neighbourhood targets: items with the same target are positives (15 epochs)",
    ),
    Variant("default", presets.DEFAULT, {}, "1+2+4 at 30 epochs: what make run trains"),
    Variant(
        "default+60 epochs",
        presets.DEFAULT,
        {"epochs": 60},
        "1: longer training: the default with up to 60 epochs (5 without improvement stop)",
    ),
    Variant(
        "default+own text",
        presets.DEFAULT,
        {"objective.include_own_text_head": True},
        "the default with a fifth head on the POI's own text, at 30 epochs",
    ),
    Variant(
        "default+30% background",
        presets.DEFAULT,
        {"objective.background_fraction": 0.3},
        "2: background points as 30 % of the POIs instead of as many as the POIs, 30 epochs",
    ),
    Variant(
        "default+2x background",
        presets.DEFAULT,
        {"objective.background_fraction": 2.0},
        "2: twice as many background points as POIs instead of as many, 30 epochs",
    ),
)

FIDELITY += (
    Variant(
        "default+empty prior 0.25",
        presets.DEFAULT,
        {"objective.empty_prior": 0.25},
        "2: density-aware targets: the empty text counted 0.25 x the mean POI count per radius",
    ),
    Variant(
        "default+empty prior 1",
        presets.DEFAULT,
        {"objective.empty_prior": 1.0},
        "2: density-aware targets: the empty text counted 1 x the mean POI count per radius",
    ),
)

FIDELITY += (
    Variant(
        "default+own text+2x background",
        presets.DEFAULT,
        {"objective.include_own_text_head": True, "objective.background_fraction": 2.0},
        "the two levers that each lifted the random split a little, together (640-d)",
    ),
    Variant(
        "default+unit heads",
        presets.DEFAULT,
        {"encoder.representation": "unit_heads"},
        "the default's training; predict returns each 128-d head L2-normalised",
    ),
)

GRIDS: dict[str, tuple[Variant, ...]] = {"fidelity": FIDELITY}


def select(grid: str, names: str | None = None) -> tuple[Variant, ...]:
    """The variants of ``grid``, optionally only the comma-separated ``names``."""
    if grid not in GRIDS:
        raise ConfigError(f"unknown grid {grid!r}; known: {sorted(GRIDS)}")
    variants = GRIDS[grid]
    if not names:
        return variants
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    by_name = {v.name: v for v in variants}
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise ConfigError(f"unknown variants {missing} in grid {grid!r}; known: {list(by_name)}")
    return tuple(by_name[n] for n in wanted)
