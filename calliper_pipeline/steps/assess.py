"""Assessing one registered model version: the paper's probes and the embedding maps.

Both load exactly the version they are given (``models:/calliper_<city>/<n>``, never an
alias, since aliases move), write their tables and PNGs to a folder, and log them to that
version's MLflow run (metrics, ``evaluation/`` and ``maps/`` artifacts).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.config import ProbeConfig
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.steps import core as pipeline
from calliper_pipeline.steps.tracked import attach_run, load_registered_model
from calliper_pipeline.store.metrics import metric_key
from calliper_pipeline.tracking import registry
from calliper_pipeline.tracking.registry import RegisteredVersion, TrackingConfig


# ------------------------------------------------------------------------------ evaluation
@dataclass(frozen=True)
class EvaluationOutcome:
    """One task's probes on one registered version."""

    task: str
    frame: pd.DataFrame  # EvaluationResult.to_frame()
    metrics: dict[str, float]  # "<task>.<probe>.<metric>" (and "..._std") -> fraction
    n_points: int
    split_sizes: tuple[int, int, int]  # train, validation, test rows
    seconds: float
    table_png: Path


def has_evaluation_set(city: CitySpec, task: str) -> bool:
    from calliper_pipeline.evaluation import data as eval_data

    if task == eval_data.LANDUSE_TASK:
        return eval_data.has_landuse(city)
    if task == eval_data.SOCIOECONOMIC_TASK:
        return eval_data.has_socioeconomic(city)
    raise ConfigError(f"unknown evaluation task {task!r}")


def _load_points(city: CitySpec, data_root: Path, task: str, metric_epsg: int) -> Any:
    from calliper_pipeline.evaluation import data as eval_data

    if task == eval_data.LANDUSE_TASK:
        return eval_data.load_landuse(city, data_root, metric_epsg)
    return eval_data.load_socioeconomic(city, data_root, metric_epsg)


def evaluate_registered(
    city: CitySpec,
    data_root: Path,
    task: str,
    version: RegisteredVersion,
    tracking: TrackingConfig,
    probe_cfg: ProbeConfig,
    out_dir: Path,
) -> EvaluationOutcome | None:
    """The paper's probes for ``task`` (``"luc"``/``"sdm"``) on exactly ``version``.

    Metrics, the table (JSON) and its figure are logged to the version's MLflow run. Returns
    None, loading nothing, when the city has no set for the task.
    """
    from calliper_pipeline.evaluation.probes import evaluate_features
    from calliper_pipeline.maps.figures import evaluation_table_figure

    if not has_evaluation_set(city, task):
        return None
    model = load_registered_model(tracking, version.model_uri)
    points = _load_points(city, data_root, task, model.spec.metric_epsg)
    feats = pipeline.model_features(model)(points)
    luc = (feats, points) if task == "luc" else (None, None)
    sdm = (feats, points) if task == "sdm" else (None, None)
    name = f"{version.name}/v{version.version}"
    result = evaluate_features(luc[0], luc[1], sdm[0], sdm[1], probe_cfg, name=name)
    frame = result.to_frame()
    metrics: dict[str, float] = {}
    for task_, probe, metric, mean, std in frame[["task", "probe", "metric", "mean", "std"]].values:
        key = metric_key(str(task_), str(probe), str(metric))
        metrics[key] = float(mean)
        metrics[f"{key}_std"] = float(std)
    out_dir.mkdir(parents=True, exist_ok=True)
    table_png = out_dir / f"evaluation_{task}.png"
    shown = frame[["task", "probe", "metric", "mean_x100", "std_x100", "n_seeds"]]
    title = f"{city.name}: {task} probes ({name})"
    evaluation_table_figure(shown, title=title, path=table_png).clear()
    if version.run_id:
        handle = attach_run(tracking, version.run_id, city.key)
        registry.log_metrics(handle, metrics)
        registry.log_figure_png(handle, table_png, artifact_dir="evaluation")
        registry.log_table(handle, frame, f"evaluation/{task}.json")
    return EvaluationOutcome(
        task=task,
        frame=frame,
        metrics=metrics,
        n_points=len(points),
        split_sizes=tuple(result.split_sizes[task]),  # type: ignore[arg-type]
        seconds=result.seconds,
        table_png=table_png,
    )


# ------------------------------------------------------------------------------ maps
@dataclass(frozen=True)
class MapsOutcome:
    """PNG files by name and the top cells of each retrieval query."""

    figures: dict[str, Path]
    top_cells: dict[str, pd.DataFrame]
    n_cells: int


def slug(text: str, max_len: int = 40) -> str:
    """A file-name-safe lower-case slug of ``text``."""
    s = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return s[:max_len].rstrip("_") or "query"


def render_maps(
    city: CitySpec,
    data_root: Path,
    version: RegisteredVersion,
    tracking: TrackingConfig,
    text_encoder: Any,
    out_dir: Path,
    queries: Sequence[str],
    k: int = 4,
    seed: int = 42,
    top_k: int = 20,
    width_px: int = 1600,
) -> MapsOutcome:
    """Cluster map, PCA colour map and one retrieval heatmap per query for exactly ``version``.

    PNGs (and each query's top cells as CSV) go to ``out_dir`` and to the version's MLflow run
    under ``maps/``. ``text_encoder`` must be the encoder the model was trained against.
    """
    from calliper_pipeline.cities.cells import load_cells, load_map_layers
    from calliper_pipeline.evaluation.retrieval import cell_embeddings, retrieve_to_files
    from calliper_pipeline.maps.figures import cluster_map, pca_colour_map

    model = load_registered_model(tracking, version.model_uri)
    epsg = model.spec.metric_epsg
    cells = load_cells(city, data_root, epsg)
    layers = load_map_layers(city, data_root, epsg)
    emb = cell_embeddings(model, cells)
    out_dir.mkdir(parents=True, exist_ok=True)
    label = f"{city.name} ({version.name} v{version.version})"
    figures = {"cluster_map": out_dir / "cluster_map.png", "pca_colour_map": out_dir / "pca.png"}
    kwargs: Mapping[str, Any] = {"width_px": width_px, **layers.as_kwargs()}
    title = f"{label}: k-means clusters of location embeddings"
    cluster_map(cells, emb, k=k, seed=seed, title=title, path=figures["cluster_map"], **kwargs)
    title = f"{label}: embedding principal components as colour"
    pca_colour_map(cells, emb, title=title, path=figures["pca_colour_map"], **kwargs)
    tops: dict[str, pd.DataFrame] = {}
    for query in queries:
        name = f"retrieval_{slug(query)}"
        png, csv = out_dir / f"{name}.png", out_dir / f"{name}.csv"
        _, tops[query] = retrieve_to_files(
            model, text_encoder, query, cells, png, csv, top_k,
            layers=layers, location_embeddings=emb,
        )  # fmt: skip
        figures[name] = png
        figures[f"{name}_csv"] = csv
    if version.run_id:
        handle = attach_run(tracking, version.run_id, city.key)
        for path in figures.values():
            registry.log_figure_png(handle, path, artifact_dir="maps")
    return MapsOutcome(figures=figures, top_cells=tops, n_cells=len(cells))
