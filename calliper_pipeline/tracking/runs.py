"""MLflow runs: where they go (:class:`TrackingConfig`), opening and attaching to runs, and
logging params, metrics, tags, figures and tables.

Nothing here reads environment variables or sets a tracking URI at import: every function takes
a :class:`TrackingConfig`.

Concurrency. Runs, metrics and tags go through an :class:`mlflow.MlflowClient` bound to the
config's URIs, with no active-run global state, so several cities can train in the same process
(threads) or in several processes without colliding. Two MLflow operations have no client form
and read MLflow's process-global tracking/registry URI: logging a model (``log_model``) and
loading one from a ``models:/`` or ``runs:/`` URI. Those run inside :func:`mlflow_uris`, which
sets both URIs under a process-wide lock and restores the previous values (and the
``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` variables MLflow mirrors them to) afterwards. So
they are serialised within a process, and other code that uses MLflow's fluent API in another
thread at the same moment could briefly see this config's URIs.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlparse

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from calliper_pipeline.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from calliper_pipeline.training.checkpoints import EpochStats

_MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value
_MAX_PARAM_KEY = 250
_MAX_TAG_VALUE = 5000
_BATCH = 100  # MLflow accepts at most 100 params/tags and 1000 metrics per log_batch
_METRIC_BATCH = 1000
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
    tracking server that serves artifacts (``mlflow server --serve-artifacts``). ``ui_url``:
    the MLflow UI that shows this store, for links (default: the tracking URI when it is
    http(s); for a local store, where ``mlflow ui`` serves it, e.g. ``http://127.0.0.1:5000``).
    """

    tracking_uri: str
    registry_uri: str | None = None
    experiment: str = "calliper"
    artifact_location: str | None = None
    ui_url: str | None = None

    @property
    def ui_base(self) -> str | None:
        """The MLflow UI's base URL (no trailing slash), or None when none is known."""
        if urlparse(self.tracking_uri).scheme in ("http", "https"):
            return self.ui_url.rstrip("/") if self.ui_url else self.tracking_uri.rstrip("/")
        return self.ui_url.rstrip("/") if self.ui_url else None

    @property
    def effective_registry_uri(self) -> str:
        return self.registry_uri or self.tracking_uri

    def client(self) -> MlflowClient:
        with _store_initialised(self.tracking_uri):
            return MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.effective_registry_uri
            )


_INITIALISED: set[str] = set()


@contextmanager
def _store_initialised(uri: str) -> Iterator[None]:
    """Run the block (which creates an MLflow client, and with it the store) under an exclusive
    file lock beside a SQLite store, the first time per process and URI.

    MLflow creates and migrates its tables when a client first opens the store; two processes
    doing so at once on a fresh store (two cities trained side by side) both migrate and one
    fails ("Online migration expected to match one row"). The lock file makes them take turns;
    later clients of the same URI skip the lock.
    """
    if not uri.startswith("sqlite:///") or uri in _INITIALISED:
        yield
        return
    db = Path(uri[len("sqlite:///") :])
    db.parent.mkdir(parents=True, exist_ok=True)
    with _URI_LOCK, open(db.with_name(db.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    _INITIALISED.add(uri)


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


_SQLITE = "sqlite:///"


def local_store_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` tracking URI (relative to the working directory when the
    URI is), None for other stores."""
    if not uri.startswith(_SQLITE) or uri.endswith(":memory:"):
        return None
    return Path(uri[len(_SQLITE) :].split("?", 1)[0])


def absolute_tracking_uri(uri: str) -> str:
    """``uri`` with a relative SQLite path made absolute (``sqlite:////abs/path/mlflow.db``),
    so that it means the same store from any directory; other URIs unchanged."""
    path = local_store_path(uri)
    if path is None or path.is_absolute():
        return uri
    query = uri.partition("?")[2]
    return f"{_SQLITE}{path.resolve()}" + (f"?{query}" if query else "")


def require_existing_store(tracking: TrackingConfig) -> None:
    """ConfigError when ``tracking`` names a local SQLite store whose file does not exist (MLflow
    would silently create an empty one; reading a model from it can only fail)."""
    for uri in {tracking.tracking_uri, tracking.effective_registry_uri}:
        path = local_store_path(uri)
        if path is not None and not path.is_file():
            raise ConfigError(
                f"no MLflow store at {path.resolve()} ({uri}): train a model first "
                "(make run / calliper train) or point --home, CALLIPER_HOME or --tracking-uri "
                "at an existing store"
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


# ---------------------------------------------------------------------------------------------
# Process-global MLflow URIs, scoped
# ---------------------------------------------------------------------------------------------
@contextmanager
def mlflow_uris(tracking: TrackingConfig) -> Iterator[None]:
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
# Keys and values within MLflow's limits
# ---------------------------------------------------------------------------------------------
def _truncate(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _param_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        text = repr(value)  # keeps "1.0" rather than "1"
    else:
        text = str(value)
    return _truncate(text, _MAX_PARAM_VALUE)


def safe_key(key: str) -> str:
    """``key`` with characters outside MLflow's alphabet replaced by ``_``, truncated."""
    return _truncate(_KEY_OK.sub("_", str(key)), _MAX_PARAM_KEY)


def tag_value(value: Any) -> str:
    """``str(value)`` truncated to MLflow's tag-value limit."""
    return _truncate(str(value), _MAX_TAG_VALUE)


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------------------------------------
# Starting and attaching to runs
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
    tags = {"city": city, "snapshot_hash": snapshot_hash, "code_version": code_version}
    if dagster_run_id is not None:
        tags["dagster_run_id"] = dagster_run_id
    run = client.create_run(
        experiment_id,
        tags={k: tag_value(v) for k, v in tags.items()},
        run_name=f"{city}-{snapshot_hash[:8]}",
    )
    handle = RunHandle(tracking, run.info.run_id, str(experiment_id), city, client)
    items = [Param(safe_key(k), _param_value(v)) for k, v in params.items()]
    try:
        for start in range(0, len(items), _BATCH):
            client.log_batch(handle.run_id, params=items[start : start + _BATCH], synchronous=True)
    except BaseException:
        handle.end("FAILED")
        raise
    return handle


def attach_run(tracking: TrackingConfig, run_id: str, city: str) -> RunHandle:
    """A handle on an existing (possibly finished) run, to log more metrics and artifacts."""
    client = tracking.client()
    run = client.get_run(run_id)
    return RunHandle(
        tracking=tracking,
        run_id=run_id,
        experiment_id=str(run.info.experiment_id),
        city=city,
        client=client,
        ended=True,
    )


def run_url(tracking: TrackingConfig, run_id: str) -> str | None:
    """Where to see a run: the UI URL (:attr:`TrackingConfig.ui_base`); for a local store
    without a UI URL, how to open it.

    ``None`` when the run cannot be found.
    """
    try:
        experiment_id = tracking.client().get_run(run_id).info.experiment_id
    except MlflowException:
        return None
    fragment = f"#/experiments/{experiment_id}/runs/{run_id}"
    if tracking.ui_base is not None:
        return f"{tracking.ui_base}/{fragment}"
    return (
        f"run {run_id} is in a local store; open it with `mlflow ui --workers 1 "
        f"--backend-store-uri {tracking.tracking_uri} --port 5000`, "
        f"then http://127.0.0.1:5000/{fragment}"
    )


def artifact_url(tracking: TrackingConfig, run_id: str, path: str) -> str | None:
    """The URL at which the MLflow UI serves one artifact of a run (e.g. an inline image), or
    None when no UI URL is known."""
    if tracking.ui_base is None:
        return None
    query = urlencode({"path": path, "run_uuid": run_id})
    return f"{tracking.ui_base}/get-artifact?{query}"


# ---------------------------------------------------------------------------------------------
# Metrics, tags, artifacts
# ---------------------------------------------------------------------------------------------
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
    items = [Metric(safe_key(k), float(v), ts, int(step or 0)) for k, v in metrics.items()]
    for start in range(0, len(items), _METRIC_BATCH):
        handle.client.log_batch(
            handle.run_id, metrics=items[start : start + _METRIC_BATCH], synchronous=True
        )


def set_run_tags(handle: RunHandle, tags: Mapping[str, Any]) -> None:
    """Set run tags (values stringified and truncated)."""
    items = [RunTag(safe_key(k), tag_value(v)) for k, v in tags.items()]
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
