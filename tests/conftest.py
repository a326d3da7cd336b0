"""Shared fixtures: where the real data lives, and small synthetic inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.paths import data_root

CLUSTER_TESTS = Path(__file__).parent / "cluster"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cluster",
        action="store_true",
        help="collect tests/cluster (a Postgres + MLflow server + Dask deployment) in a plain "
        "`pytest` too; `make test-cluster` names the folder instead",
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """``tests/cluster`` only with ``--cluster``: plain ``pytest`` (``make test``) leaves it out."""
    if collection_path == CLUSTER_TESTS and not config.getoption("--cluster"):
        return True
    return None


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    root = data_root()
    if not (root / "london-pois-merged").exists():
        pytest.skip(f"real data not found under {root} (set CALLIPER_DATA_ROOT)")
    return root
