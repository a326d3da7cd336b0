"""Typed resources: the per-city DuckDB store, the frozen text encoder, data paths, MLflow tracking.

:func:`default_resources` builds them from :mod:`calliper_pipeline.settings` (environment
variables ``CALLIPER_HOME``, ``CALLIPER_DATA_ROOT``) plus ``CALLIPER_TEXT_ENCODER``
(``minilm``/``hashing``), ``CALLIPER_TEXT_DEVICE``, ``MLFLOW_TRACKING_URI`` and
``CALLIPER_MLFLOW_UI`` (the MLflow UI that links and preview images point at). Nothing is
created on disk until a run uses a resource.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import duckdb
from pydantic import Field

from calliper_pipeline import provenance, settings

if TYPE_CHECKING:  # torch and mlflow load only when a run needs them
    from calliper_pipeline.store.city_store import DuckDBFileStore
    from calliper_pipeline.text.encoders import TextEncoder
    from calliper_pipeline.tracking.runs import TrackingConfig

# `make mlflow-ui` serves the local store here: links and inline images of a local store point at it
LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"
DUCKDB_POOL = "duckdb"  # DuckDB allows one writing process: its users share this pool (limit 1)


class DuckDBResource(dg.ConfigurableResource):
    """The city store: one DuckDB file per city under ``root`` (``<root>/<city>.duckdb``).

    Assets ask it for their partition's city (``duckdb.connect(city_key)``), never for a path
    (:class:`calliper_pipeline.store.city_store.DuckDBFileStore`). DuckDB lets one process hold
    a file open for writing: two cities never contend, and the assets share the ``duckdb`` pool
    so that one instance does not open the same city's file from two ops at once; a connection
    that meets another process's lock waits for it until ``lock_timeout_s``, then fails with a
    one-line ``StoreLockedError``.
    """

    root: str = Field(description="folder of the per-city DuckDB files (created on first write)")
    legacy_path: str = Field(
        default="", description="an older single warehouse.duckdb to migrate cities from"
    )
    lock_timeout_s: float = Field(default=600.0, description="wait this long for a file lock")

    def store(self) -> DuckDBFileStore:
        from calliper_pipeline.store.city_store import DuckDBFileStore

        legacy = Path(self.legacy_path) if self.legacy_path else None
        return DuckDBFileStore(Path(self.root), legacy, self.lock_timeout_s)

    def path_for(self, city_key: str) -> Path:
        """The city's DuckDB file."""
        return self.store().path_for(city_key)

    @contextmanager
    def connect(
        self, city_key: str, read_only: bool = False
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to ``city_key``'s file for the block, closed afterwards."""
        with self.store().connect(city_key, read_only=read_only) as con:
            yield con


@functools.cache
def _encoder(name: str, device: str) -> TextEncoder:
    from calliper_pipeline.text.encoders import build_text_encoder

    return build_text_encoder(name, device)


class TextEncoderResource(dg.ConfigurableResource):
    """The frozen text encoder: ``minilm`` (the paper's all-MiniLM-L6-v2) or ``hashing``."""

    name: str = Field(default="minilm", description="minilm | hashing (tests, no model)")
    device: str = Field(default="cpu", description="torch device for minilm: cpu | cuda")
    batch_size: int = Field(default=256, description="texts per forward pass")

    def encoder(self) -> TextEncoder:
        """The encoder (one per process and setting; minilm loads on first use)."""
        return _encoder(self.name, self.device)


class DataLocationResource(dg.ConfigurableResource):
    """Where inputs are read from and outputs (figures) are written."""

    data_root: str = Field(description="folder holding the data sets named in the city files")
    home: str = Field(description="working store: city store files, MLflow store, figures")

    @property
    def data_root_path(self) -> Path:
        return Path(self.data_root).expanduser()

    def output_dir(self, city_key: str, *parts: str) -> Path:
        """``<home>/outputs/<city>/<parts...>`` (created)."""
        path = Path(self.home).expanduser() / "outputs" / city_key
        path = path.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking and registry: a server URI, or the local SQLite store in ``store_dir``."""

    tracking_uri: str = Field(default="", description="e.g. http://127.0.0.1:5000; '' = local")
    store_dir: str = Field(default="", description="local store folder (mlflow.db, mlartifacts)")
    registry_uri: str = Field(default="", description="'' = the tracking URI")
    artifact_location: str = Field(default="", description="artifact root of a new experiment")
    experiment: str = Field(default="calliper", description="MLflow experiment name")
    ui_url: str = Field(
        default="",
        description="MLflow UI for links and inline images; '' = the tracking URI when it is "
        f"http(s), else {LOCAL_MLFLOW_UI} (what `make mlflow-ui` serves)",
    )

    def tracking(self) -> TrackingConfig:
        """The library's TrackingConfig (the local store's folder is created here)."""
        from calliper_pipeline.tracking import runs

        if not self.tracking_uri:
            if not self.store_dir:
                raise ValueError("MlflowResource needs tracking_uri or store_dir")
            local = runs.default_tracking(Path(self.store_dir))
            ui = self.ui_url or LOCAL_MLFLOW_UI
            return replace(local, experiment=self.experiment, ui_url=ui)
        return runs.TrackingConfig(
            tracking_uri=self.tracking_uri,
            registry_uri=self.registry_uri or None,
            experiment=self.experiment,
            artifact_location=self.artifact_location or None,
            ui_url=self.ui_url or None,
        )


def local_resources(
    s: settings.Settings,
    text_encoder: str = "minilm",
    text_device: str = "cpu",
    tracking_uri: str = "",
    mlflow_ui: str = "",
) -> dict[str, Any]:
    """Resources rooted at ``s.home``: the city store, figures and (without a tracking URI) the
    local MLflow store all live there; inputs come from ``s.data_root``. ``mlflow_ui``: see
    :attr:`MlflowResource.ui_url`."""
    store = s.store()
    return {
        "duckdb": DuckDBResource(root=str(store.root), legacy_path=str(store.legacy or "")),
        "text_encoder": TextEncoderResource(name=text_encoder, device=text_device),
        "data": DataLocationResource(data_root=str(s.data_root), home=str(s.home)),
        "mlflow": MlflowResource(
            tracking_uri=tracking_uri, store_dir=str(s.mlflow_dir), ui_url=mlflow_ui
        ),
    }


def default_resources(
    s: settings.Settings | None = None, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The resources for ``Definitions``: paths from the settings, encoder and MLflow from env."""
    env = os.environ if env is None else env
    return local_resources(
        s or settings.from_env(env),
        text_encoder=env.get("CALLIPER_TEXT_ENCODER", "minilm"),
        text_device=env.get("CALLIPER_TEXT_DEVICE", "cpu"),
        tracking_uri=env.get("MLFLOW_TRACKING_URI", ""),
        mlflow_ui=env.get("CALLIPER_MLFLOW_UI", ""),
    )


def code_version() -> str:
    """The code version recorded on every MLflow run (see :func:`provenance.code_version`)."""
    return provenance.code_version(settings.REPO_ROOT)
