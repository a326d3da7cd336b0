"""Where the repository and the real data are, for tests at any depth under ``tests/``."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_root() -> Path:
    """CALLIPER_DATA_ROOT if set, else ../shared/data beside the repository."""
    env = os.environ.get("CALLIPER_DATA_ROOT")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"
