"""Shared fixtures: where the real data lives, and small synthetic inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.paths import data_root


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    root = data_root()
    if not (root / "london-pois-merged").exists():
        pytest.skip(f"real data not found under {root} (set CALLIPER_DATA_ROOT)")
    return root
