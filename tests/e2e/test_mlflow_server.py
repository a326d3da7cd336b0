"""End to end over HTTP: a real ``mlflow server``, log + register + promote, then pull the
champion from a separate Python process that cannot import this repository's package (the model
must bring its own code via ``code_paths``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from calliper_pipeline.tracking.registry import (
    log_and_register_model,
    promote_if_better,
    resolve_version,
)
from calliper_pipeline.tracking.runs import (
    TrackingConfig,
    artifact_url,
    epoch_logger,
    log_figure_png,
    run_url,
    start_training_run,
)
from calliper_pipeline.training.checkpoints import EpochStats
from tests.support.models import tiny_model
from tests.support.paths import REPO_ROOT
from tests.support.servers import free_port, stop

CITY = "srvtown"
HEALTH_TIMEOUT_S = 120.0  # ~10 s on an idle machine; 68 s measured on 2 busy CPUs

# Runs in a fresh interpreter: hide the editable install of calliper_pipeline so the import can
# only succeed through the code shipped with the model.
CLIENT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path_hooks = [h for h in sys.path_hooks if "editable" not in repr(h).lower()]
    sys.path = [p for p in sys.path if p not in ("", ".", REPO)]
    sys.path_importer_cache.clear()
    try:
        import calliper_pipeline  # noqa: F401
        hidden = False
    except ImportError:
        hidden = True
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model("models:/calliper_srvtown@champion")
    out = model.predict(pd.DataFrame({"lon": [-0.1276, -0.1], "lat": [51.5072, 51.5]}))
    import calliper_pipeline
    inner = model.unwrap_python_model().model
    print(json.dumps({
        "hidden_before_load": hidden,
        "shape": list(out.shape),
        "dtypes": sorted({str(t) for t in out.dtypes}),
        "first": out.columns[0], "last": out.columns[-1],
        "package_from": calliper_pipeline.__file__,
        "text_in": inner.text_projection.in_features,
    }))
    """
)


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    pytest.fail(f"mlflow server not healthy after {HEALTH_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_mlflow_server_round_trip(tmp_path: Path) -> None:
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    if not mlflow_bin.exists():
        pytest.skip(f"no mlflow executable beside {sys.executable}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # 2 processes / 0.5 GB instead of 15 / 2.6
        "MLFLOW_DISABLE_TELEMETRY": "true",  # offline
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [
        str(mlflow_bin),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--artifacts-destination",
        str(tmp_path / "artifacts"),
        "--serve-artifacts",
    ]
    with log.open("wb") as log_fh:
        proc = subprocess.Popen(
            cmd,
            cwd=tmp_path,
            env=env,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stopped as a whole by its pid
        )
    try:
        wait_healthy(url, proc, log)
        tracking = TrackingConfig(tracking_uri=url)
        with start_training_run(tracking, CITY, "c" * 64, "dg-1", "v0", {"a": 1}) as handle:
            epoch_logger(handle)(EpochStats(1, 3.0, 3.1, 0.07, 0.2, True))
            png = tmp_path / "curve.png"
            Image.new("RGB", (8, 4), "white").save(png)
            figure = log_figure_png(handle, png)
            version = log_and_register_model(handle, tiny_model(3, CITY), CITY, None)
        assert version.version == "1"
        decision = promote_if_better(tracking, CITY, version.version, 0.3, "r2", True, 0.0, True)
        assert decision.promoted
        assert resolve_version(tracking, f"models:/calliper_{CITY}@champion") == version
        link = run_url(tracking, handle.run_id)
        assert link is not None and link.startswith(f"{url}/#/experiments/")
        assert link.endswith(f"/runs/{handle.run_id}")
        assert (tmp_path / "artifacts").exists()  # artifacts went through the server
        # the image URL the Dagster previews embed: the server serves the PNG itself
        image = artifact_url(tracking, handle.run_id, figure)
        assert image is not None and image.startswith(f"{url}/get-artifact?")
        with urllib.request.urlopen(image, timeout=30) as resp:
            assert resp.headers["Content-Type"] == "image/png"
            assert resp.read() == png.read_bytes()

        client_env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_DISABLE_TELEMETRY": "true"}
        client_env.pop("MLFLOW_REGISTRY_URI", None)
        client_env.pop("PYTHONPATH", None)
        repo = str(REPO_ROOT)
        script = f"REPO = {repo!r}\n" + CLIENT_SCRIPT
        res = subprocess.run(
            [sys.executable, "-c", script],
            cwd=tmp_path,
            env=client_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        got = json.loads(res.stdout.strip().splitlines()[-1])
        assert got["hidden_before_load"], "calliper_pipeline was importable without the model"
        assert got["shape"] == [2, 128]
        assert got["dtypes"] == ["float32"]
        assert (got["first"], got["last"]) == ("e000", "e127")
        assert got["text_in"] == 384
        assert not got["package_from"].startswith(repo), got["package_from"]
    finally:
        stop(proc)
