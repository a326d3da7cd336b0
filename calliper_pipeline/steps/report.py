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
from calliper_pipeline.constants import COL_CATEGORY, COL_GROUP
from calliper_pipeline.evaluation.baselines import POI_COUNTS, POSITIONAL_ENCODING
from calliper_pipeline.evaluation.report import PAPER_CITY, RunReport, machine_line
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


#: (header, key of the ``calliper_model`` metadata, scale, decimals) of the label-free table.
OWN_FIGURES: tuple[tuple[str, str, float, int], ...] = (
    ("held-out POIs", "retrieval_n_pois", 1.0, 0),
    ("held-out val loss", "heldout_val_loss", 1.0, 4),
    ("recall@1% x100", "retrieval_recall_at_1pct", 100.0, 1),
    ("recall@5% x100", "retrieval_recall_at_5pct", 100.0, 1),
    ("recall@10% x100", "retrieval_recall_at_10pct", 100.0, 1),
    ("median rank", "retrieval_median_rank", 1.0, 0),
    ("cells", "retrieval_n_cells", 1.0, 0),
)


def own_figures(
    pois: pd.DataFrame, figures: Mapping[str, Mapping[str, float]], gates: Mapping[str, str]
) -> tuple[pd.DataFrame, list[str]]:
    """The label-free results of a city: one row per variant with its POI, category and group
    counts and the held-out figures training measured (validation loss, text-to-location
    retrieval), and the ``<city>-run-heldout`` lines' values. ``figures``: variant -> the
    ``calliper_model`` metadata; ``gates``: variant -> the champion gate's decision."""
    counts = {
        "POIs": f"{len(pois):,}",
        "categories": f"{pois[COL_CATEGORY].nunique():,}",
        "groups": f"{pois[COL_GROUP].nunique():,}",
    }
    rows, values = [], []
    for variant, meta in figures.items():
        row = {"encoder": VARIANT_LABELS.get(variant, variant), **counts}
        for header, key, scale, decimals in OWN_FIGURES:
            value = meta.get(key)
            row[header] = "–" if value is None else f"{scale * float(value):,.{decimals}f}"
        row["champion gate"] = gates.get(variant, "–")
        rows.append(row)
        values.append(
            f"{VARIANT_KEYS.get(variant, variant)}: "
            f"val_loss={float(meta.get('heldout_val_loss', float('nan'))):.4f} "
            f"recall_at_1pct={100 * float(meta.get('retrieval_recall_at_1pct', float('nan'))):.2f}"
        )
    return pd.DataFrame(rows), values


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
    figures: Mapping[str, Mapping[str, float]] | None = None,
    gates: Mapping[str, str] | None = None,
) -> RunReport:
    """The report of one run.

    A city without evaluation labels gets its own figures instead (:func:`own_figures`: POI
    and category counts, held-out validation loss and retrieval), never the paper's London
    rows or an empty probe table.

    Args:
        versions: description variant -> (registered model name, version) whose evaluation
            rows are read back.
        run_cfg: the run's configuration (its probe and encoder settings key the baselines).
        figures: variant -> the ``calliper_model`` materialisation's metadata (label-free).
        gates: variant -> what the champion gate decided (label-free).
    """
    from calliper_pipeline.steps.assess import has_evaluation_set
    from calliper_pipeline.store.pois import read_city_pois

    if not (has_evaluation_set(city, "luc") or has_evaluation_set(city, "sdm")):
        table, values = own_figures(read_city_pois(con, city.key), figures or {}, gates or {})
        return RunReport(
            title=title,
            command=command,
            commit=git_commit(repo),
            machine=machine_description(),
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            stage_seconds=dict(stage_seconds),
            results=pd.DataFrame(),
            machine_lines=[f"{city.key}-run-heldout-{v}" for v in values],
            training=dict(training_lines),
            notes=[
                f"{city.name} has no evaluation labels: these are its own figures on the "
                "POIs training held out (no probe table, no reference rows from other cities)."
            ],
            own_table=table,
        )
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
        with_paper=city.key == PAPER_CITY,  # the paper's figures are London's
    )
