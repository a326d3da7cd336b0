"""Everything that talks to MLflow: runs, metrics, artifacts, the model registry, promotion.

This is the only library module (with the pyfunc wrapper
:mod:`calliper_pipeline.tracking.pyfunc`) that imports ``mlflow``. Nothing here reads
environment variables or sets a tracking URI at import:
every function takes a :class:`TrackingConfig`.

Concurrency. Runs, metrics, tags and aliases go through an :class:`mlflow.MlflowClient` bound to
the config's URIs, with no active-run global state, so several cities can train in the same
process (threads) or in several processes without colliding. Two MLflow operations have no
client form and read MLflow's process-global tracking/registry URI: logging a model
(``log_model``) and loading one from a ``models:/`` or ``runs:/`` URI. Those run inside
:func:`_mlflow_uris`, which sets both URIs under a process-wide lock and restores the previous
values (and the ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` variables MLflow mirrors them to)
afterwards. So they are serialised within a process, and other code that uses MLflow's fluent API
in another thread at the same moment could briefly see this config's URIs.

Registry conventions (ARCHITECTURE.md section 3): registered model ``calliper_<city>``; aliases,
never stages: ``candidate`` set on exactly the version ``log_model`` returned, ``champion`` moved
only by :func:`promote_if_better`, which records its decision as model-version tags
(``score.<metric>``, ``promotion.*``) and on the training run.

Model packaging: the pyfunc carries the torch file (artifact ``model``), a copy of the
``calliper_pipeline`` package (``code_paths``, so the model loads wherever the pinned
:data:`PIP_REQUIREMENTS` are installed, even without this package) and explicit pip requirements
(inferring them costs ~5 s per ``log_model``).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import Model, infer_signature
from mlflow.pyfunc import PyFuncModel
from pyproj import Transformer

import calliper_pipeline
from calliper_pipeline.errors import ConfigError, ModelInputError
from calliper_pipeline.model.calliper import CalliperModel, save_model
from calliper_pipeline.tracking.pyfunc import (
    LAT,
    LON,
    MODEL_ARTIFACT_KEY,
    CalliperPyfunc,
    embedding_columns,
)
from calliper_pipeline.training.loop import EpochStats

#: Pip requirements logged with every model (the pins of pyproject.toml; a test checks they
#: agree). ``calliper_pipeline`` itself travels as code (``code_paths``), not as a requirement.
PIP_REQUIREMENTS: tuple[str, ...] = (
    "mlflow==3.17.2",
    "torch==2.13.0",
    "pyproj==3.7.2",
    "pandas==2.3.3",
    "numpy==2.4.6",
    "cloudpickle>=3,<4",
)
CANDIDATE_ALIAS = "candidate"
CHAMPION_ALIAS = "champion"
MODEL_ARTIFACT_NAME = "model"  # name of the logged model within the run

_MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value
_MAX_PARAM_KEY = 250
_MAX_TAG_VALUE = 5000
_BATCH = 100  # MLflow accepts at most 100 params/tags and 1000 metrics per log_batch
_KEY_OK = re.compile(r"[^\w\-. /:]")
_URI_LOCK = threading.RLock()  # guards MLflow's process-global tracking/registry URIs


# ---------------------------------------------------------------------------------------------
# Configuration and handles
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrackingConfig:
    """Where runs and models go.

    ``registry_uri`` defaults to ``tracking_uri``. ``artifact_location`` is used only when this
    module creates the experiment (for a local SQLite store it must be set, or MLflow puts
    artifacts in ``./mlruns`` of whatever the working directory is); leave it ``None`` for a
    tracking server that serves artifacts (``mlflow server --serve-artifacts``).
    """

    tracking_uri: str
    registry_uri: str | None = None
    experiment: str = "calliper"
    artifact_location: str | None = None

    @property
    def effective_registry_uri(self) -> str:
        return self.registry_uri or self.tracking_uri

    def client(self) -> MlflowClient:
        return MlflowClient(
            tracking_uri=self.tracking_uri, registry_uri=self.effective_registry_uri
        )


def default_tracking(home: Path) -> TrackingConfig:
    """Local store: ``sqlite:///<home>/mlflow.db``, artifacts in ``<home>/mlartifacts``.

    Creates ``home`` (SQLite cannot create the directory of its file).
    """
    home = Path(home).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return TrackingConfig(
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        artifact_location=(home / "mlartifacts").as_uri(),
    )


@dataclass
class RunHandle:
    """An open MLflow run. Use as a context manager, or call :meth:`end` yourself.

    Leaving the ``with`` block through an exception marks the run ``FAILED``.
    """

    tracking: TrackingConfig
    run_id: str
    experiment_id: str
    city: str
    client: MlflowClient = field(repr=False)
    ended: bool = False

    def end(self, status: str = "FINISHED") -> None:
        """Terminate the run (``FINISHED``, ``FAILED`` or ``KILLED``); idempotent."""
        if not self.ended:
            self.client.set_terminated(self.run_id, status=status)
            self.ended = True

    def __enter__(self) -> RunHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.end("FINISHED")
        else:
            self.end("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")


@dataclass(frozen=True)
class RegisteredVersion:
    """One registered model version; ``model_uri`` pins the version (``models:/name/N``)."""

    name: str
    version: str
    model_uri: str
    run_id: str | None


@dataclass(frozen=True)
class PromotionDecision:
    """What :func:`promote_if_better` decided (also written as tags)."""

    promoted: bool
    reason: str
    candidate_score: float
    incumbent_version: str | None
    incumbent_score: float | None


def registered_model_name(city: str) -> str:
    """``calliper_<city>``."""
    return f"calliper_{city}"


# ---------------------------------------------------------------------------------------------
# Process-global MLflow URIs, scoped
# ---------------------------------------------------------------------------------------------
@contextmanager
def _mlflow_uris(tracking: TrackingConfig) -> Iterator[None]:
    """Set MLflow's global tracking and registry URIs for the block, then restore them exactly.

    Needed only for the operations without a client form (``log_model``, loading ``models:/``).
    """
    from mlflow.tracking._model_registry import utils as reg_utils
    from mlflow.tracking._tracking_service import utils as trk_utils

    with _URI_LOCK:
        saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        saved_tracking = getattr(trk_utils, "_tracking_uri", None)
        saved_registry = getattr(reg_utils, "_registry_uri", None)
        try:
            mlflow.set_tracking_uri(tracking.tracking_uri)
            mlflow.set_registry_uri(tracking.effective_registry_uri)
            yield
        finally:
            mlflow.set_tracking_uri(saved_tracking)  # type: ignore[arg-type]
            reg_utils._registry_uri = saved_registry
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


# ---------------------------------------------------------------------------------------------
# Runs, params, metrics, artifacts
# ---------------------------------------------------------------------------------------------
def _ensure_experiment(client: MlflowClient, tracking: TrackingConfig) -> str:
    exp = client.get_experiment_by_name(tracking.experiment)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return str(exp.experiment_id)
    try:
        return str(
            client.create_experiment(
                tracking.experiment, artifact_location=tracking.artifact_location
            )
        )
    except MlflowException:
        exp = client.get_experiment_by_name(tracking.experiment)  # created concurrently
        if exp is None:
            raise
        return str(exp.experiment_id)


def _truncate(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _param_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        text = repr(value)  # keeps "1.0" rather than "1"
    else:
        text = str(value)
    return _truncate(text, _MAX_PARAM_VALUE)


def _param_key(key: str) -> str:
    return _truncate(_KEY_OK.sub("_", str(key)), _MAX_PARAM_KEY)


def start_training_run(
    tracking: TrackingConfig,
    city: str,
    snapshot_hash: str,
    dagster_run_id: str | None,
    code_version: str,
    params: Mapping[str, Any],
) -> RunHandle:
    """Create the experiment if needed and open a run named ``<city>-<hash[:8]>``.

    Tags: ``city``, ``snapshot_hash``, ``dagster_run_id`` (omitted when ``None``),
    ``code_version``, ``mlflow.runName``. ``params`` (e.g. ``config.flatten(run_config)``) are
    logged once: values stringified, keys sanitised to MLflow's alphabet, both truncated to
    MLflow's length limits.
    """
    client = tracking.client()
    experiment_id = _ensure_experiment(client, tracking)
    run_name = f"{city}-{snapshot_hash[:8]}"
    tags = {"city": city, "snapshot_hash": snapshot_hash, "code_version": code_version}
    if dagster_run_id is not None:
        tags["dagster_run_id"] = dagster_run_id
    tags = {k: _truncate(str(v), _MAX_TAG_VALUE) for k, v in tags.items()}
    run = client.create_run(experiment_id, tags=tags, run_name=run_name)
    handle = RunHandle(
        tracking=tracking,
        run_id=run.info.run_id,
        experiment_id=str(experiment_id),
        city=city,
        client=client,
    )
    items = [Param(_param_key(k), _param_value(v)) for k, v in params.items()]
    try:
        for start in range(0, len(items), _BATCH):
            client.log_batch(handle.run_id, params=items[start : start + _BATCH], synchronous=True)
    except BaseException:
        handle.end("FAILED")
        raise
    return handle


def _now_ms() -> int:
    return int(time.time() * 1000)


def epoch_logger(handle: RunHandle) -> Callable[[EpochStats], None]:
    """Callback for training: logs train_loss, val_loss, temperature, epoch_seconds at
    ``step=epoch`` in one ``log_batch`` call per epoch."""

    def log(stats: EpochStats) -> None:
        ts = _now_ms()
        values = {
            "train_loss": stats.train_loss,
            "val_loss": stats.val_loss,
            "temperature": stats.temperature,
            "epoch_seconds": stats.seconds,
        }
        metrics = [Metric(k, float(v), ts, int(stats.epoch)) for k, v in values.items()]
        handle.client.log_batch(handle.run_id, metrics=metrics, synchronous=True)

    return log


def log_metrics(handle: RunHandle, metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log scalar metrics (``step`` defaults to 0), batched."""
    ts = _now_ms()
    items = [Metric(_param_key(k), float(v), ts, int(step or 0)) for k, v in metrics.items()]
    for start in range(0, len(items), 1000):
        handle.client.log_batch(
            handle.run_id, metrics=items[start : start + 1000], synchronous=True
        )


def set_run_tags(handle: RunHandle, tags: Mapping[str, Any]) -> None:
    """Set run tags (values stringified and truncated)."""
    items = [RunTag(_param_key(k), _truncate(str(v), _MAX_TAG_VALUE)) for k, v in tags.items()]
    for start in range(0, len(items), _BATCH):
        handle.client.log_batch(handle.run_id, tags=items[start : start + _BATCH], synchronous=True)


def log_figure_png(handle: RunHandle, path: Path, artifact_dir: str = "figures") -> str:
    """Upload a PNG (or any file) under ``artifact_dir``; returns its artifact path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    handle.client.log_artifact(handle.run_id, str(path), artifact_dir or None)
    return f"{artifact_dir}/{path.name}" if artifact_dir else path.name


def log_table(handle: RunHandle, df: pd.DataFrame, artifact_file: str) -> str:
    """Log a DataFrame as an artifact; the format follows ``artifact_file``'s suffix.

    ``.json`` uses ``MlflowClient.log_table`` (shown in the UI's table views); ``.csv`` and
    ``.parquet`` are written and uploaded as files.
    """
    suffix = Path(artifact_file).suffix.lower()
    if suffix == ".json":
        handle.client.log_table(handle.run_id, df, artifact_file)
        return artifact_file
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"log_table: unsupported suffix {suffix!r} (use .json, .csv, .parquet)")
    parent = str(Path(artifact_file).parent)
    with tempfile.TemporaryDirectory(prefix="calliper-table-") as tmp:
        local = Path(tmp) / Path(artifact_file).name
        if suffix == ".csv":
            df.to_csv(local, index=False)
        else:
            df.to_parquet(local, index=False)
        handle.client.log_artifact(handle.run_id, str(local), None if parent == "." else parent)
    return artifact_file


# ---------------------------------------------------------------------------------------------
# Logging and registering the model
# ---------------------------------------------------------------------------------------------
def default_input_example(model: CalliperModel, n: int = 5) -> pd.DataFrame:
    """A few WGS84 points around the model's centre (inside its bounds), for the signature."""
    spec = model.spec
    cx, cy = spec.centre_m
    if spec.bounds_m is not None:
        min_x, min_y, max_x, max_y = spec.bounds_m
        cx, cy = (min_x + max_x) / 2.0, (min_y + max_y) / 2.0
        dx, dy = (max_x - min_x) / 4.0, (max_y - min_y) / 4.0
    else:
        dx = dy = 1000.0
    offsets = np.array([[0, 0], [-1, -1], [1, -1], [-1, 1], [1, 1]], np.float64)[:n]
    to_wgs84 = Transformer.from_crs(f"EPSG:{spec.metric_epsg}", "EPSG:4326", always_xy=True)
    lon, lat = to_wgs84.transform(cx + offsets[:, 0] * dx, cy + offsets[:, 1] * dy)
    return pd.DataFrame({LON: np.asarray(lon, np.float64), LAT: np.asarray(lat, np.float64)})


def _package_copy(dst: Path) -> Path:
    """Copy the calliper_pipeline package (sources only) for ``code_paths``."""
    src = Path(calliper_pipeline.__file__).resolve().parent
    target = dst / "calliper_pipeline"
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.tmp"))
    return target


def log_and_register_model(
    handle: RunHandle,
    model: CalliperModel,
    city: str,
    input_example: pd.DataFrame | None = None,
) -> RegisteredVersion:
    """Log ``model`` as a pyfunc in the run, register it as ``calliper_<city>`` and put the alias
    ``candidate`` on exactly the version created here.

    The signature (inputs ``lon``, ``lat`` double; outputs ``e000``... float32; param
    ``allow_outside`` boolean) is inferred from a real prediction on ``input_example`` (default:
    :func:`default_input_example`), which must lie inside the model's bounds.
    """
    name = registered_model_name(city)
    if input_example is None:
        input_example = default_input_example(model)
    example = pd.DataFrame(
        {
            LON: np.asarray(input_example[LON], np.float64),
            LAT: np.asarray(input_example[LAT], np.float64),
        }
    )
    output = CalliperPyfunc.from_model(model).predict(None, example)
    signature = infer_signature(example, output, params={"allow_outside": False})

    with tempfile.TemporaryDirectory(prefix="calliper-log-model-") as tmp:
        tmp_path = Path(tmp)
        weights = save_model(tmp_path / "calliper_model.pt", model)
        code = _package_copy(tmp_path / "code")
        # The LoggedModel is created here, in the run's experiment: left to Model.log it would
        # go to MLflow's global "active experiment" (Default, artifacts in ./mlruns).
        client = handle.client
        logged = client.create_logged_model(
            experiment_id=handle.experiment_id,
            name=MODEL_ARTIFACT_NAME,
            source_run_id=handle.run_id,
            params=dict(client.get_run(handle.run_id).data.params),
            tags={"city": city},
        )
        with _mlflow_uris(handle.tracking):
            info = Model.log(
                artifact_path=None,
                name=MODEL_ARTIFACT_NAME,
                flavor=mlflow.pyfunc,
                run_id=handle.run_id,
                python_model=CalliperPyfunc(),
                artifacts={MODEL_ARTIFACT_KEY: str(weights)},
                code_paths=[str(code)],
                pip_requirements=list(PIP_REQUIREMENTS),
                signature=signature,
                input_example=example,
                registered_model_name=name,
                model_id=logged.model_id,
            )
    version = info.registered_model_version
    if version is None:
        raise RuntimeError(f"log_model did not register a version of {name}")
    version = str(version)
    client.set_registered_model_alias(name, CANDIDATE_ALIAS, version)
    run_tags = client.get_run(handle.run_id).data.tags
    for key in ("city", "snapshot_hash", "dagster_run_id", "code_version"):
        if key in run_tags:
            client.set_model_version_tag(name, version, key, run_tags[key])
    set_run_tags(handle, {"registered_model": name, "registered_version": version})
    return RegisteredVersion(
        name=name, version=version, model_uri=f"models:/{name}/{version}", run_id=handle.run_id
    )


# ---------------------------------------------------------------------------------------------
# Promotion
# ---------------------------------------------------------------------------------------------
def _fmt(score: float | None) -> str:
    return "none" if score is None else repr(float(score))


def _tag_float(tags: Mapping[str, str], key: str) -> float | None:
    raw = tags.get(key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def promote_if_better(
    tracking: TrackingConfig,
    city: str,
    version: str | int,
    candidate_score: float,
    metric: str,
    higher_is_better: bool,
    tolerance: float,
    checks_passed: bool,
) -> PromotionDecision:
    """The promotion gate: move ``champion`` to ``version`` if it is at least as good.

    The incumbent is the version holding ``champion``; its score is its tag ``score.<metric>``
    (written by this function for every version it decides on). Promote when ``checks_passed``
    and there is no incumbent, or ``candidate >= incumbent - tolerance`` (higher is better) /
    ``candidate <= incumbent + tolerance`` (lower is better). A NaN candidate score, or an
    incumbent without a recorded score for ``metric``, is not promoted (move the alias by hand
    if that is intended). The decision is written as version tags ``score.<metric>``,
    ``promotion.decision`` (promoted/rejected), ``promotion.reason``, ``promotion.metric``,
    ``promotion.candidate_score``, ``promotion.incumbent_version``,
    ``promotion.incumbent_score`` and the same ``promotion.*`` tags on the version's run.
    Not atomic across concurrent promotions of the same city (one pipeline run per city).
    """
    client = tracking.client()
    name = registered_model_name(city)
    version = str(version)
    mv = client.get_model_version(name, version)
    incumbent_version = client.get_registered_model(name).aliases.get(CHAMPION_ALIAS)
    incumbent_version = None if incumbent_version is None else str(incumbent_version)
    incumbent_score: float | None = None
    if incumbent_version is not None and incumbent_version != version:
        incumbent = client.get_model_version(name, incumbent_version)
        incumbent_score = _tag_float(incumbent.tags, f"score.{metric}")
    score = float(candidate_score)
    cmp = ">=" if higher_is_better else "<="

    if incumbent_version == version:
        promoted, reason = True, f"v{version} already holds '{CHAMPION_ALIAS}'"
        incumbent_score = score
    elif not checks_passed:
        promoted, reason = False, "sanity checks failed"
    elif math.isnan(score):
        promoted, reason = False, f"candidate {metric} is NaN"
    elif incumbent_version is None:
        promoted, reason = True, f"no incumbent '{CHAMPION_ALIAS}'; {metric}={score:.6g}"
    elif incumbent_score is None:
        promoted = False
        reason = (
            f"incumbent v{incumbent_version} has no tag score.{metric}; cannot compare "
            f"(set the tag or move the '{CHAMPION_ALIAS}' alias by hand)"
        )
    else:
        bound = incumbent_score - tolerance if higher_is_better else incumbent_score + tolerance
        promoted = score >= bound if higher_is_better else score <= bound
        verdict = "beats or matches" if promoted else "does not reach"
        reason = (
            f"candidate {metric}={score:.6g} {verdict} incumbent v{incumbent_version} "
            f"{incumbent_score:.6g} (needs {cmp} {bound:.6g}, tolerance {tolerance:g})"
        )

    decision_tags = {
        "promotion.decision": "promoted" if promoted else "rejected",
        "promotion.reason": _truncate(reason, _MAX_TAG_VALUE),
        "promotion.metric": metric,
        "promotion.candidate_score": _fmt(score),
        "promotion.incumbent_version": incumbent_version or "none",
        "promotion.incumbent_score": _fmt(incumbent_score),
    }
    client.set_model_version_tag(name, version, f"score.{metric}", _fmt(score))
    for key, value in decision_tags.items():
        client.set_model_version_tag(name, version, key, value)
    if mv.run_id:
        run_tags = {**decision_tags, "promotion.version": version}
        items = [RunTag(k, v) for k, v in run_tags.items()]
        client.log_batch(mv.run_id, tags=items, synchronous=True)
    if promoted and incumbent_version != version:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    return PromotionDecision(
        promoted=promoted,
        reason=reason,
        candidate_score=score,
        incumbent_version=incumbent_version,
        incumbent_score=incumbent_score,
    )


# ---------------------------------------------------------------------------------------------
# Loading and resolving
# ---------------------------------------------------------------------------------------------
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/]+))/?$")


def resolve_version(tracking: TrackingConfig, uri: str) -> RegisteredVersion:
    """``models:/name/N`` or ``models:/name@alias`` -> the concrete version (aliases move;
    record ``model_uri`` of the result to reload exactly this version later)."""
    match = _MODELS_URI.match(uri)
    if match is None:
        raise ConfigError(
            f"not a registered-model URI (models:/name/N or models:/name@alias): {uri}"
        )
    client = tracking.client()
    name = match["name"]
    if match["alias"] is not None:
        mv = client.get_model_version_by_alias(name, match["alias"])
    else:
        mv = client.get_model_version(name, match["version"])
    return RegisteredVersion(
        name=name,
        version=str(mv.version),
        model_uri=f"models:/{name}/{mv.version}",
        run_id=mv.run_id,
    )


def load_pyfunc(tracking: TrackingConfig | None, model_uri: str) -> PyFuncModel:
    """Load any pyfunc URI; ``models:/``, ``runs:/`` and ``mlflow-artifacts:`` URIs need
    ``tracking``, local paths do not."""
    scheme = urlparse(model_uri).scheme
    if scheme in ("models", "runs", "mlflow-artifacts"):
        if tracking is None:
            raise ConfigError(f"loading {model_uri} needs a TrackingConfig (tracking=...)")
        with _mlflow_uris(tracking):
            return mlflow.pyfunc.load_model(model_uri)
    return mlflow.pyfunc.load_model(model_uri)


def load_champion(tracking: TrackingConfig, city: str, alias: str = CHAMPION_ALIAS) -> PyFuncModel:
    """The pyfunc holding ``alias`` for ``city``. The trained CalliperModel (for text
    retrieval) is ``load_champion(...).unwrap_python_model().model``."""
    return load_pyfunc(tracking, f"models:/{registered_model_name(city)}@{alias}")


def predict_embeddings(
    pyfunc: PyFuncModel, points: pd.DataFrame, allow_outside: bool = False
) -> pd.DataFrame:
    """``pyfunc.predict`` typed for a CaLLiPer model: WGS84 ``lon, lat`` -> ``e000``... frame."""
    out = pyfunc.predict(points, params={"allow_outside": bool(allow_outside)})
    if not isinstance(out, pd.DataFrame):
        raise TypeError(f"expected a DataFrame from the CaLLiPer pyfunc, got {type(out)}")
    return out


def run_url(tracking: TrackingConfig, run_id: str) -> str | None:
    """Where to see a run: the UI URL for http(s) tracking; for a local store, how to open it.

    ``None`` when the run cannot be found.
    """
    try:
        experiment_id = tracking.client().get_run(run_id).info.experiment_id
    except MlflowException:
        return None
    fragment = f"#/experiments/{experiment_id}/runs/{run_id}"
    if urlparse(tracking.tracking_uri).scheme in ("http", "https"):
        return f"{tracking.tracking_uri.rstrip('/')}/{fragment}"
    return (
        f"run {run_id} is in a local store; open it with `mlflow ui --workers 1 "
        f"--backend-store-uri {tracking.tracking_uri} --port 5000`, "
        f"then http://127.0.0.1:5000/{fragment}"
    )


# ---------------------------------------------------------------------------------------------
# Batch embedding of files
# ---------------------------------------------------------------------------------------------
def _read_chunks(path: Path, batch_size: int) -> tuple[int | None, pa.Schema, Iterator[pa.Table]]:
    """(row count if known, schema, chunks as Arrow tables) of a CSV or Parquet file."""
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix.lower() == ".gz" else path.suffix
    suffix = suffix.lower()
    if suffix in (".parquet", ".pq"):
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        batches = (pa.Table.from_batches([b]) for b in pf.iter_batches(batch_size=batch_size))
        return pf.metadata.num_rows, schema, batches
    if suffix in (".csv", ".csv.gz"):
        header = list(pd.read_csv(path, nrows=0).columns)
        # Passthrough columns are kept as text: per-chunk type inference could otherwise
        # disagree between chunks (and would drop the leading zeros of ids).
        dtypes: dict[Hashable, str] = {c: "string" for c in header if c not in (LON, LAT)}
        schema = pa.schema([pa.field(c, pa.string()) for c in header])
        reader = pd.read_csv(path, dtype=dtypes, chunksize=batch_size)
        tables = (pa.Table.from_pandas(df, preserve_index=False) for df in reader)
        return None, schema, tables
    raise ModelInputError(f"{path}: unsupported input format (use .csv, .csv.gz or .parquet)")


def _coords(table: pa.Table, index: pd.RangeIndex) -> pd.DataFrame:
    out = {}
    for col in (LON, LAT):
        values = pd.to_numeric(pd.Series(table.column(col).to_pandas()), errors="coerce")
        out[col] = values.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.DataFrame(out, index=index)


def embed_file(
    model_uri: str,
    input_path: Path,
    output_path: Path,
    batch_size: int = 50_000,
    show_progress: bool = True,
    allow_outside: bool = False,
    tracking: TrackingConfig | None = None,
) -> int:
    """Embed every point of a CSV/Parquet file into a Parquet file; returns the row count.

    Input columns ``lon``, ``lat`` (WGS84 degrees) plus any others, copied through unchanged
    (Parquet) or as strings (CSV) in front of the float32 embedding columns ``e000``...; row
    order is kept; ``lon``/``lat`` are not repeated in the output. ``model_uri`` is a
    ``models:/`` or ``runs:/`` URI (then ``tracking`` is required: the tracking URI is passed
    explicitly, never read from the environment) or a local pyfunc directory. Output is written
    to ``<output>.tmp`` and renamed, so a failure (e.g. points outside the city: a
    ``ModelInputError`` naming 0-based row numbers) leaves no partial file.
    """
    from tqdm.auto import tqdm

    input_path = Path(input_path)
    output_path = Path(output_path)
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    total, schema, chunks = _read_chunks(input_path, batch_size)
    if LON not in schema.names or LAT not in schema.names:
        raise ModelInputError(
            f"{input_path}: needs columns 'lon' and 'lat' (has {schema.names[:10]})"
        )
    passthrough_names = [c for c in schema.names if c not in (LON, LAT)]
    pyfunc = load_pyfunc(tracking, model_uri)
    inner = pyfunc.unwrap_python_model()
    if not isinstance(inner, CalliperPyfunc) or inner.model is None:
        raise ConfigError(f"{model_uri} is not a CaLLiPer pyfunc model")
    emb_names = embedding_columns(inner.model.spec.encoder.embed_dim)
    clash = set(passthrough_names) & set(emb_names)
    if clash:
        raise ModelInputError(
            f"{input_path}: columns clash with the embedding columns: {sorted(clash)[:5]}"
        )
    out_schema = pa.schema(
        [schema.field(c) for c in passthrough_names]
        + [pa.field(c, pa.float32()) for c in emb_names]
    )

    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(output_path.name + ".tmp")
    n = 0
    try:
        with (
            pq.ParquetWriter(tmp, out_schema) as writer,
            tqdm(total=total, unit="pt", unit_scale=True, disable=not show_progress) as bar,
        ):
            for table in chunks:
                index = pd.RangeIndex(n, n + table.num_rows)
                try:
                    emb = predict_embeddings(pyfunc, _coords(table, index), allow_outside)
                except ModelInputError as exc:
                    raise ModelInputError(f"{input_path}: {exc}") from exc
                arrays = [table.column(c).cast(out_schema.field(c).type) for c in passthrough_names]
                arrays += [pa.array(emb[c].to_numpy(np.float32)) for c in emb_names]
                writer.write_table(pa.Table.from_arrays(arrays, schema=out_schema))
                n += table.num_rows
                bar.update(table.num_rows)
        tmp.replace(output_path)
    finally:
        tmp.unlink(missing_ok=True)
    return n
