"""Where things live: the one place that turns the environment into explicit paths.

Only the command line and the Dagster resources call this; library functions take the paths.

- ``CALLIPER_DATA_ROOT``: folder holding the data sets named in the city files
  (default: ``../shared/data`` beside the repository).
- ``CALLIPER_HOME``: the working store: one DuckDB file per city (``store/<city>.duckdb``),
  MLflow store, Dagster instance, models
  (default: ``.calliper`` in the repository).
- ``CALLIPER_CITIES``: extra city TOML files or folders, separated by ``os.pathsep``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from calliper_pipeline.store.city_store import DuckDBFileStore

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    data_root: Path
    home: Path
    city_files: tuple[Path, ...] = ()

    def store(self) -> DuckDBFileStore:
        """The city store: ``<home>/store/<city>.duckdb`` (see :mod:`.store.city_store`)."""
        from calliper_pipeline.store.city_store import for_home

        return for_home(self.home)

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def checkpoints_dir(self) -> Path:
        return self.home / "checkpoints"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from environment variables, with the repository-relative defaults."""
    env = os.environ if env is None else env
    data_root = Path(env.get("CALLIPER_DATA_ROOT") or REPO_ROOT.parent / "shared" / "data")
    home = Path(env.get("CALLIPER_HOME") or REPO_ROOT / ".calliper")
    cities = tuple(Path(p) for p in env.get("CALLIPER_CITIES", "").split(os.pathsep) if p)
    return Settings(data_root=data_root.expanduser(), home=home.expanduser(), city_files=cities)
