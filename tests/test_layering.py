"""The library never loads dagster: checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "calliper_pipeline.cities",
    "calliper_pipeline.poi",
    "calliper_pipeline.store",
    "calliper_pipeline.text",
    "calliper_pipeline.location",
    "calliper_pipeline.model",
    "calliper_pipeline.train",
    "calliper_pipeline.evaluate",
    "calliper_pipeline.baselines",
    "calliper_pipeline.pipeline",
    "calliper_pipeline.runall",
    "calliper_pipeline.maps",
    "calliper_pipeline.retrieval",
    "calliper_pipeline.registry",
    "calliper_pipeline.stages",
    "calliper_pipeline.cli",
    "calliper_pipeline.commands",
]


def test_library_imports_without_dagster():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + "bad = sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.'))\n"
        + "print(len(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0", out.stdout + out.stderr
