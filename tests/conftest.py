"""Shared fixtures: where the real data lives, and small synthetic inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """CALLIPER_DATA_ROOT if set, else ../shared/data beside the repository."""
    env = os.environ.get("CALLIPER_DATA_ROOT")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    root = data_root()
    if not (root / "london-pois-merged").exists():
        pytest.skip(f"real data not found under {root} (set CALLIPER_DATA_ROOT)")
    return root
