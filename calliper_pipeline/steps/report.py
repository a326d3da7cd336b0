"""The results report of a city's run, built from what the assets stored.

Reads the evaluation rows of each trained version and the cached baselines (both protocols)
from DuckDB and renders the docs/results.md section with the command, commit, machine, wall
time per step and the grep-able lines (``<city>-mlp``, ``<city>-counts-mlp``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.config import RunConfig
from calliper_pipeline.evaluation.baselines import POI_COUNTS, POSITIONAL_ENCODING
from calliper_pipeline.evaluation.report import RunReport, machine_line
from calliper_pipeline.provenance import git_commit, machine_description
from calliper_pipeline.steps.baselines import cached_baselines
from calliper_pipeline.store import metrics

VARIANT_LABELS = {"calliper": "ours: CaLLiPer", "calliper_plus": "ours: CaLLiPer+ (names)"}
VARIANT_KEYS = {"calliper": "mlp", "calliper_plus": "plus-mlp"}


def machine_lines(city_key: str, frame: pd.DataFrame, variants: list[str]) -> list[str]:
    """``<city>-run[-block]-{mlp,plus-mlp,counts-mlp,pe-mlp}: luc_f1=.. sdm_l1=..`` lines: one
    training seed (the ablation's lines, ``<city>-mlp: ... seeds=<n>``, average several)."""
    lines = []
    for protocol, tag in (("random", "-run"), ("blocks", "-run-block")):
        for v in variants:
            label = VARIANT_LABELS.get(v, v)
            lines.append(
                machine_line(f"{city_key}{tag}-{VARIANT_KEYS.get(v, v)}", frame, label, protocol)
            )
        lines.append(machine_line(f"{city_key}{tag}-counts-mlp", frame, POI_COUNTS, protocol))
        lines.append(machine_line(f"{city_key}{tag}-pe-mlp", frame, POSITIONAL_ENCODING, protocol))
    return lines


def city_report(
    con: duckdb.DuckDBPyConnection,
    city: CitySpec,
    data_root: Path,
    versions: Mapping[str, tuple[str, str]],
    run_cfg: RunConfig,
    stage_seconds: Mapping[str, float],
    training_lines: Mapping[str, str],
    command: str,
    repo: Path,
    title: str,
) -> RunReport:
    """The report of one run.

    Args:
        versions: description variant -> (registered model name, version) whose evaluation
            rows are read back.
        run_cfg: the run's configuration (its probe and encoder settings key the baselines).
    """
    frames = []
    for variant, (name, version) in versions.items():
        ours = metrics.read_evaluation(con, city.key, name, version)
        frames.append(ours.assign(encoder=VARIANT_LABELS.get(variant, variant)))
    frames.append(cached_baselines(con, city, data_root, run_cfg).frame)
    frame = pd.concat(frames, ignore_index=True)
    return RunReport(
        title=title,
        command=command,
        commit=git_commit(repo),
        machine=machine_description(),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        stage_seconds=dict(stage_seconds),
        results=frame,
        machine_lines=machine_lines(city.key, frame, list(versions)),
        training=dict(training_lines),
    )
