"""A registered CaLLiPer pyfunc carries only what inference needs, and loads without the repo.

The model is registered in a temporary SQLite store, then loaded with
``mlflow.pyfunc.load_model`` in a fresh interpreter that cannot import the editable install of
``calliper_pipeline``: the import can only succeed through the code shipped with the model.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from calliper_pipeline.tracking import packaging
from calliper_pipeline.tracking.pyfunc import MODEL_ARTIFACT_KEY, CalliperPyfunc
from calliper_pipeline.tracking.registry import log_and_register_model
from calliper_pipeline.tracking.runs import default_tracking, start_training_run
from calliper_pipeline.tracking.serving import load_pyfunc
from tests.support.models import tiny_model

REPO = Path(__file__).resolve().parents[3]
PACKAGE = REPO / "calliper_pipeline"
CITY = "isoville"
POINTS = pd.DataFrame(
    {"lon": [-0.1276, -0.1, -0.2, -0.05], "lat": [51.5072, 51.5, 51.52, 51.48]},
    index=pd.Index([10, 11, 12, 13]),
)
FORBIDDEN = (
    "dagster",
    "calliper_pipeline.cities",
    "calliper_pipeline.ingest",
    "calliper_pipeline.training",
    "calliper_pipeline.evaluation",
    "calliper_pipeline.tracking.registry",
    "calliper_pipeline.tracking.runs",
    "calliper_pipeline.tracking.serving",
    "calliper_pipeline.steps",
    "calliper_pipeline.store",
)

# argv: repo, model URI, input parquet, output parquet. Hides the editable install (its meta
# path finder and path hook, any sys.path entry in the repo but outside the venv) before
# anything else is imported.
CLIENT = textwrap.dedent(
    """
    import importlib.util, json, os, sys
    repo, uri, src, dst = sys.argv[1:5]
    venv = os.path.realpath(sys.prefix)  # site-packages may live in the repo's .venv: keep it
    def inside(p):
        real = os.path.realpath(p or os.getcwd())
        return real.startswith(repo) and not real.startswith(venv)
    sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path_hooks = [h for h in sys.path_hooks if "editable" not in repr(h).lower()]
    sys.path = [p for p in sys.path if not inside(p)]
    sys.path_importer_cache.clear()
    if importlib.util.find_spec("calliper_pipeline") is not None:
        print(json.dumps({"hidden": False}))
        sys.exit(0)
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model(uri)
    model.predict(pd.read_parquet(src)).to_parquet(dst)
    import calliper_pipeline
    print(json.dumps({
        "hidden": True,
        "package_from": calliper_pipeline.__file__,
        "sys_path_in_repo": [p for p in sys.path if inside(p)],
        "modules": sorted(sys.modules),
    }))
    """
)


def test_shipped_code_is_the_inference_subset() -> None:
    shipped = set(packaging.inference_modules())
    assert {
        "calliper_pipeline",
        "calliper_pipeline.errors",
        "calliper_pipeline.model.calliper",
        "calliper_pipeline.model.encodings",
        "calliper_pipeline.tracking",
        "calliper_pipeline.tracking.pyfunc",
    } <= shipped
    assert not [m for m in shipped if m.startswith(FORBIDDEN)], shipped


def test_tracking_package_and_pyfunc_import_nothing_heavy() -> None:
    init = ast.parse((PACKAGE / "tracking" / "__init__.py").read_text())
    assert not [n for n in init.body if isinstance(n, ast.Import | ast.ImportFrom)]
    pyfunc = ast.parse((PACKAGE / "tracking" / "pyfunc.py").read_text())
    torch_loads = [
        n
        for n in ast.walk(pyfunc)
        if isinstance(n, ast.Attribute)
        and n.attr == "load"
        and isinstance(n.value, ast.Name)
        and n.value.id == "torch"
    ]
    assert torch_loads == [], "the pyfunc must load weights only through model.calliper"


class _Payload:
    """Pickles to a call of ``open(marker, "w")``: unpickling it would create the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


def test_crafted_model_file_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    crafted = tmp_path / "model"
    crafted.mkdir()
    torch.save({"spec_json": "{}", "state_dict": _Payload(marker)}, crafted / "calliper_model.pt")
    context = SimpleNamespace(artifacts={MODEL_ARTIFACT_KEY: str(crafted)})
    with pytest.raises(pickle.UnpicklingError):
        CalliperPyfunc().load_context(context)
    assert not marker.exists()


@pytest.mark.timeout(300)
def test_registered_model_predicts_in_a_fresh_process_without_the_repo(tmp_path: Path) -> None:
    tracking = default_tracking(tmp_path / "mlflow")
    with start_training_run(tracking, CITY, "c" * 64, None, "test", {}) as handle:
        version = log_and_register_model(handle, tiny_model(5, CITY), CITY)
    expected = load_pyfunc(tracking, version.model_uri).predict(POINTS)

    src, dst = tmp_path / "points.parquet", tmp_path / "emb.parquet"
    POINTS.to_parquet(src)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFLOW_"))}
    env["MLFLOW_TRACKING_URI"] = tracking.tracking_uri
    out = subprocess.run(
        [sys.executable, "-I", "-c", CLIENT, str(REPO), version.model_uri, str(src), str(dst)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["hidden"], "calliper_pipeline was importable before loading the model"
    assert not report["package_from"].startswith(str(REPO)), report["package_from"]
    assert report["sys_path_in_repo"] == []
    loaded = [m for m in report["modules"] if m.split(".")[0] in ("dagster", "calliper_pipeline")]
    assert "calliper_pipeline.tracking.pyfunc" in loaded
    assert not [m for m in loaded if m.startswith(FORBIDDEN)], loaded

    got = pd.read_parquet(dst)
    assert list(got.columns) == list(expected.columns)
    assert list(got.index) == list(POINTS.index)
    np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy())
