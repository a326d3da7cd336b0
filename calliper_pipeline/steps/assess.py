"""Assessing one registered model version: the paper's probes and the embedding maps.

Both load exactly the version they are given (``models:/calliper_<city>/<n>``, never an
alias, since aliases move), write their tables and PNGs to a folder, and log them to that
version's MLflow run (metrics, ``evaluation/`` and ``maps/`` artifacts).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.config import ProbeConfig
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.evaluation.data import (
    LabelledPoints,
    has_landuse,
    has_socioeconomic,
    load_landuse,
    load_socioeconomic,
)
from calliper_pipeline.model.calliper import CalliperModel, embed_points
from calliper_pipeline.store.metrics import flat_metrics
from calliper_pipeline.tracking import runs, serving
from calliper_pipeline.tracking.registry import RegisteredVersion
from calliper_pipeline.tracking.runs import TrackingConfig, attach_run


# ------------------------------------------------------------------------------ evaluation
@dataclass
class EvaluationSets:
    """A city's downstream sets (either may be missing)."""

    landuse: LabelledPoints | None
    socioeconomic: LabelledPoints | None

    @property
    def empty(self) -> bool:
        return self.landuse is None and self.socioeconomic is None


def evaluation_sets(city: CitySpec, data_root: Path, metric_epsg: int) -> EvaluationSets:
    """Load the city's land-use and socio-economic sets in its metric CRS."""
    luc = load_landuse(city, data_root, metric_epsg) if has_landuse(city) else None
    sdm = load_socioeconomic(city, data_root, metric_epsg) if has_socioeconomic(city) else None
    return EvaluationSets(luc, sdm)


FeatureFn = Callable[[LabelledPoints], np.ndarray]


def model_features(model: object) -> FeatureFn:
    """Feature function: the trained encoder's embedding of each evaluation point."""
    assert isinstance(model, CalliperModel)

    def features(points: LabelledPoints) -> np.ndarray:
        return embed_points(model, points.x_m, points.y_m, points.lon, points.lat)

    return features


def load_registered_model(tracking: TrackingConfig, model_uri: str) -> CalliperModel:
    """The CalliperModel inside a registered pyfunc (``models:/calliper_<city>/<version>``)."""
    from calliper_pipeline.tracking.pyfunc import CalliperPyfunc

    inner = serving.load_pyfunc(tracking, model_uri).unwrap_python_model()
    if not isinstance(inner, CalliperPyfunc) or inner.model is None:
        raise ConfigError(f"{model_uri} is not a CaLLiPer pyfunc model")
    return inner.model


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
    from calliper_pipeline.evaluation.protocol import evaluate_features
    from calliper_pipeline.maps.charts import evaluation_table_figure

    if not has_evaluation_set(city, task):
        return None
    model = load_registered_model(tracking, version.model_uri)
    points = _load_points(city, data_root, task, model.spec.metric_epsg)
    feats = model_features(model)(points)
    luc = (feats, points) if task == "luc" else (None, None)
    sdm = (feats, points) if task == "sdm" else (None, None)
    name = f"{version.name}/v{version.version}"
    result = evaluate_features(luc[0], luc[1], sdm[0], sdm[1], probe_cfg, name=name)
    frame = result.to_frame()
    metrics = flat_metrics(frame)  # "luc.mlp.f1" (random split), "blocks.luc.mlp.f1", "..._std"
    out_dir.mkdir(parents=True, exist_ok=True)
    table_png = out_dir / f"evaluation_{task}.png"
    shown = frame[["protocol", "task", "probe", "metric", "mean_x100", "std_x100", "n_seeds"]]
    title = f"{city.name}: {task} probes ({name})"
    evaluation_table_figure(shown, title=title, path=table_png).clear()
    if version.run_id:
        handle = attach_run(tracking, version.run_id, city.key)
        runs.log_metrics(handle, metrics)
        runs.log_figure_png(handle, table_png, artifact_dir="evaluation")
        runs.log_table(handle, frame, f"evaluation/{task}.json")
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


#: Retrieval heatmaps drawn when neither the run nor the city file names queries.
DEFAULT_QUERY_COUNT = 3


def city_queries(city: CitySpec, pois: pd.DataFrame, n: int = DEFAULT_QUERY_COUNT) -> list[str]:
    """The city's retrieval queries: its file's ``retrieval_queries``, else the descriptions
    (the city's template, as training describes POIs) of its ``n`` most common categories,
    each with the group most of its POIs have, most common first."""
    from calliper_pipeline.constants import COL_CATEGORY, COL_GROUP
    from calliper_pipeline.ingest.descriptions import describe

    if city.retrieval_queries:
        return list(city.retrieval_queries)
    cats = pois[COL_CATEGORY].value_counts(sort=True)
    queries = []
    for category in cats.index[:n]:
        groups = pois.loc[pois[COL_CATEGORY] == category, COL_GROUP].dropna().value_counts()
        group = groups.index[0] if len(groups) else None
        queries.append(describe(category, group, template=city.description_template))
    return queries


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
    pois: pd.DataFrame | None = None,
) -> MapsOutcome:
    """Cluster map, PCA colour map and one retrieval heatmap per query for exactly ``version``.

    PNGs (and each query's top cells as CSV) go to ``out_dir`` and to the version's MLflow run
    under ``maps/``. ``text_encoder`` must be the encoder the model was trained against.
    ``pois`` (WGS84 ``lon``/``lat``) clips a bounds-only city's cells to the POIs' outline
    (:func:`calliper_pipeline.cities.cells.city_cells`).
    """
    from calliper_pipeline.cities.cells import city_cells
    from calliper_pipeline.evaluation.retrieval import cell_embeddings, retrieve_to_files
    from calliper_pipeline.maps.embedding_maps import cluster_map, pca_colour_map

    model = load_registered_model(tracking, version.model_uri)
    epsg = model.spec.metric_epsg
    cells, layers = city_cells(city, data_root, epsg, pois)
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
            layers=layers, location_embeddings=emb, width_px=width_px,
        )  # fmt: skip
        figures[name] = png
        figures[f"{name}_csv"] = csv
    if version.run_id:
        handle = attach_run(tracking, version.run_id, city.key)
        for path in figures.values():
            runs.log_figure_png(handle, path, artifact_dir="maps")
    return MapsOutcome(figures=figures, top_cells=tops, n_cells=len(cells))


# ------------------------------------------------------------------------------ caching
#: The modules whose source is part of the evaluation's and the maps' cache keys.
EVALUATION_CODE = (
    "calliper_pipeline.evaluation",
    "calliper_pipeline.model",
    "calliper_pipeline.steps.assess",
    "calliper_pipeline.maps.charts",
)
MAPS_CODE = (
    "calliper_pipeline.maps",
    "calliper_pipeline.cities",
    "calliper_pipeline.model",
    "calliper_pipeline.evaluation.retrieval",
    "calliper_pipeline.steps.assess",
)
FRAME_FILE = "evaluation.parquet"


@dataclass(frozen=True)
class Cached:
    """A step's outcome, whether it came from the cache, and its key (with what it covers)."""

    outcome: Any
    hit: bool
    key: str
    covers: tuple[str, ...]


def version_parts(version: RegisteredVersion) -> dict[str, Any]:
    """The cache-key parts naming a model version: its URI and the MLflow run behind it."""
    return {"model_uri": version.model_uri, "run_id": version.run_id or ""}


def layer_hashes(data_root: Path, rel_paths: Sequence[str | None]) -> list[str]:
    """Content hashes of the data layers ``rel_paths`` (relative to ``data_root``; None skipped)."""
    from calliper_pipeline.hashing import layer_hash

    return [layer_hash(data_root / rel) for rel in rel_paths if rel]


def cached_evaluation(
    city: CitySpec,
    data_root: Path,
    task: str,
    version: RegisteredVersion,
    tracking: TrackingConfig,
    probe_cfg: ProbeConfig,
    cache_root: Path,
) -> Cached | None:
    """:func:`evaluate_registered`, cached in ``cache_root/evaluation-<task>/<key>/`` on the
    version (model URI and run), the task's evaluation file, the probe settings and the
    evaluation code. A hit logs nothing to MLflow (the miss that made it logged to the same
    run). None when the city has no set for the task."""
    from dataclasses import asdict

    from calliper_pipeline.hashing import code_fingerprint
    from calliper_pipeline.steps import cache

    if not has_evaluation_set(city, task) or city.evaluation is None:
        return None
    ev = city.evaluation
    rel = ev.landuse_path if task == "luc" else ev.socioeconomic_path
    parts = {
        **version_parts(version),
        "task": task,
        "evaluation_file": layer_hashes(data_root, [rel]),
        "probe": asdict(probe_cfg),
        "code": code_fingerprint(*EVALUATION_CODE),
    }

    def make(folder: Path) -> dict[str, Any]:
        out = evaluate_registered(city, data_root, task, version, tracking, probe_cfg, folder)
        assert out is not None  # has_evaluation_set was checked above
        out.frame.to_parquet(folder / FRAME_FILE, index=False)
        return {
            "files": [FRAME_FILE, out.table_png.name],
            "metrics": out.metrics,
            "n_points": out.n_points,
            "split_sizes": list(out.split_sizes),
            "seconds": out.seconds,
        }

    entry = cache.build(cache_root, f"evaluation-{task}", parts, make)
    p = entry.payload
    outcome = EvaluationOutcome(
        task=task,
        frame=pd.read_parquet(entry.path(FRAME_FILE)),
        metrics={k: float(v) for k, v in p["metrics"].items()},
        n_points=int(p["n_points"]),
        split_sizes=tuple(int(n) for n in p["split_sizes"]),  # type: ignore[arg-type]
        seconds=float(p["seconds"]),
        table_png=entry.path(p["files"][1]),
    )
    return Cached(outcome, entry.hit, entry.key, entry.covers)


def cached_maps(
    city: CitySpec,
    data_root: Path,
    version: RegisteredVersion,
    tracking: TrackingConfig,
    text_encoder: Any,
    cache_root: Path,
    queries: Sequence[str],
    pois: pd.DataFrame | None = None,
    **options: Any,
) -> Cached:
    """:func:`render_maps`, cached in ``cache_root/maps/<key>/`` on the version, the queries,
    the drawing ``options`` (k, seed, top_k, width_px), the text encoder, the city file, its
    snapshot and map layers, and the drawing code. A hit logs nothing to MLflow. ``pois`` (the
    stored POIs, which the snapshot hash and the city file determine) go to
    :func:`render_maps`."""
    from dataclasses import asdict

    from calliper_pipeline.hashing import code_fingerprint
    from calliper_pipeline.ingest.ingest import snapshot_hash
    from calliper_pipeline.steps import cache

    ev = city.evaluation
    layers = [city.boundary_path, ev.hex_grid_path if ev else None, ev.overlay_path if ev else None]
    parts = {
        **version_parts(version),
        "queries": list(queries),
        "options": dict(options),
        "text_encoder": str(getattr(text_encoder, "encoder_id", type(text_encoder).__name__)),
        "city": asdict(city),
        "snapshot": snapshot_hash(city, data_root),
        "layers": layer_hashes(data_root, layers),
        "code": code_fingerprint(*MAPS_CODE),
    }

    def make(folder: Path) -> dict[str, Any]:
        out = render_maps(
            city, data_root, version, tracking, text_encoder, folder, queries, pois=pois,
            **options,
        )  # fmt: skip
        return {
            "files": sorted(p.name for p in out.figures.values()),
            "figures": {name: p.name for name, p in out.figures.items()},
            "n_cells": out.n_cells,
        }

    entry = cache.build(cache_root, "maps", parts, make)
    figures = {name: entry.path(file) for name, file in entry.payload["figures"].items()}
    tops = {}
    for query in queries:
        csv = figures.get(f"retrieval_{slug(query)}_csv")
        if csv is not None:
            tops[query] = pd.read_csv(csv).drop(columns="query", errors="ignore")
    outcome = MapsOutcome(figures=figures, top_cells=tops, n_cells=int(entry.payload["n_cells"]))
    return Cached(outcome, entry.hit, entry.key, entry.covers)
