"""The library never loads dagster: checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "calliper_pipeline.cities.spec",
    "calliper_pipeline.ingest.snapshot",
    "calliper_pipeline.store.pois",
    "calliper_pipeline.text.encoders",
    "calliper_pipeline.model.encodings",
    "calliper_pipeline.model.calliper",
    "calliper_pipeline.training.loop",
    "calliper_pipeline.evaluation.probes",
    "calliper_pipeline.evaluation.baselines",
    "calliper_pipeline.steps.core",
    "calliper_pipeline.steps.runall",
    "calliper_pipeline.maps.figures",
    "calliper_pipeline.evaluation.retrieval",
    "calliper_pipeline.tracking.registry",
    "calliper_pipeline.steps.tracked",
    "jobs.cli.parser",
    "jobs.cli.commands",
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
