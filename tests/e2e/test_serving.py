"""A registered champion used the two ways the README documents, outside the project's process:

- MLflow's scoring server started by ``calliper serve`` (what ``make serve`` runs) with the
  virtualenv's ``bin`` *not* on PATH, on a free local port: each request format and an
  out-of-bounds point, values compared with in-process ``predict``;
- a throwaway virtualenv built by uv from nothing but the model's own ``requirements.txt``
  (offline), loading and predicting in a process that cannot import this repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calliper_pipeline.tracking.runs import TrackingConfig, mlflow_uris
from calliper_pipeline.tracking.serving import load_pyfunc
from tests.support.models import register_champion
from tests.support.paths import REPO_ROOT
from tests.support.servers import free_port, stop

CITY = "london"  # a built-in city (calliper serve resolves it); the store is a temporary one
CHAMPION = f"models:/calliper_{CITY}@champion"
POINTS = pd.DataFrame({"lon": [-0.1276, -0.1, -0.2, -0.05], "lat": [51.5072, 51.5, 51.52, 51.48]})
OUTSIDE = pd.DataFrame({"lon": [-0.1276, -2.2426], "lat": [51.5072, 53.4808]})  # + Manchester
START_TIMEOUT_S = 180.0  # ~8 s idle; ~30 s on 2 busy CPUs
TOL = {"rtol": 1e-5, "atol": 1e-6}  # another process, the same float32 model


@dataclass
class Store:
    home: Path
    tracking: TrackingConfig


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    home = tmp_path_factory.mktemp("home")
    tracking, _ = register_champion(home, CITY, seed=7)
    return Store(home, tracking)


def expected(store: Store, points: pd.DataFrame, allow_outside: bool = False) -> np.ndarray:
    model = load_pyfunc(store.tracking, CHAMPION)
    out = model.predict(points, params={"allow_outside": allow_outside})
    assert list(out.columns) == [f"e{i:03d}" for i in range(128)]
    return np.asarray(out.to_numpy(), np.float32)


# ---------------------------------------------------------------------------------------------
# calliper serve / make serve
# ---------------------------------------------------------------------------------------------


def post(url: str, body: bytes, content_type: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    req = urllib.request.Request(url, body, {"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def server(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cwd = tmp_path_factory.mktemp("cwd")
    log = cwd / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = "/usr/bin:/bin"  # no venv bin: the server must not need it on PATH
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    cmd = [sys.executable, "-m", "jobs.cli.parser", "serve", "--city", CITY,
           "--home", str(store.home), "--port", str(port)]  # fmt: skip
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"calliper serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no server after {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        printed = log.read_text()
        assert f"serving {CHAMPION} (v1)" in printed and f"{url}/invocations" in printed
        yield url
    finally:
        stop(proc)
    assert proc.poll() is not None


def split_body(points: pd.DataFrame, params: dict | None = None) -> bytes:  # type: ignore[type-arg]
    body: dict = {"dataframe_split": points.to_dict(orient="split")}  # type: ignore[type-arg]
    if params:
        body["params"] = params
    return json.dumps(body).encode()


def records(predictions: list[dict[str, float]]) -> np.ndarray:
    assert list(predictions[0]) == [f"e{i:03d}" for i in range(128)]
    return np.array([list(p.values()) for p in predictions], np.float32)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_scoring_server_formats_and_errors(store: Store, server: str) -> None:
    url = f"{server}/invocations"
    want = expected(store, POINTS)

    status, got = post(url, split_body(POINTS), "application/json")
    assert status == 200
    np.testing.assert_allclose(records(got["predictions"]), want, **TOL)

    body = json.dumps({"dataframe_records": POINTS.to_dict(orient="records")}).encode()
    status, got = post(url, body, "application/json")
    assert status == 200
    np.testing.assert_allclose(records(got["predictions"]), want, **TOL)

    status, got = post(url, POINTS.to_csv(index=False).encode(), "text/csv")
    assert status == 200
    np.testing.assert_allclose(records(got["predictions"]), want, **TOL)

    status, got = post(url, split_body(POINTS, {"as_array": True}), "application/json")
    assert status == 200
    np.testing.assert_allclose(np.array(got["predictions"], np.float32), want, **TOL)

    # outside the city: a clear 400, not "unexpected error"
    status, got = post(url, split_body(OUTSIDE), "application/json")
    assert status == 400
    assert got["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "1 of 2 points lie outside the london's bounds" in got["message"]
    assert 'params={"allow_outside": true}' in got["message"]
    assert "unexpected error" not in got["message"]
    status, got = post(url, split_body(OUTSIDE, {"allow_outside": True}), "application/json")
    assert status == 200
    np.testing.assert_allclose(
        records(got["predictions"]), expected(store, OUTSIDE, allow_outside=True), **TOL
    )


# ---------------------------------------------------------------------------------------------
# A consumer environment built from the model's requirements.txt alone
# ---------------------------------------------------------------------------------------------
CONSUMER = textwrap.dedent(
    """
    import importlib.util, json, sys
    src, dst, uri = sys.argv[1:4]
    hidden = importlib.util.find_spec("calliper_pipeline") is None
    import mlflow.pyfunc
    import pandas as pd
    model = mlflow.pyfunc.load_model(uri)
    model.predict(pd.read_parquet(src)).to_parquet(dst)
    import calliper_pipeline
    print(json.dumps({"hidden": hidden, "prefix": sys.prefix,
                      "package_from": calliper_pipeline.__file__}))
    """
)


def uv() -> Path:
    found = Path(sys.executable).with_name("uv")
    if not found.exists():
        pytest.skip(f"no uv beside {sys.executable} (make setup installs it)")
    return found


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_model_loads_in_a_virtualenv_built_from_its_requirements(
    store: Store, tmp_path: Path
) -> None:
    import mlflow.pyfunc

    with mlflow_uris(store.tracking):
        reqs = Path(mlflow.pyfunc.get_model_dependencies(CHAMPION))
    assert reqs.read_text().split() == [
        "mlflow==3.17.2", "torch==2.13.0", "pyproj==3.7.2", "pandas==2.3.3", "numpy==2.4.6",
    ]  # fmt: skip
    venv = tmp_path / "consumer"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFLOW_"))}
    env["UV_OFFLINE"] = "1"  # from uv's cache (filled by make setup), never the network
    subprocess.run([str(uv()), "venv", "-q", "--python", sys.executable, str(venv)],
                   env=env, check=True, timeout=120)  # fmt: skip
    # like the Makefile: torch's CPU wheel may come from PIP_FIND_LINKS
    links = ["--find-links", env["PIP_FIND_LINKS"]] if env.get("PIP_FIND_LINKS") else []
    install = subprocess.run(
        [str(uv()), "pip", "install", "-q", "--offline", "--python", str(venv / "bin" / "python"),
         *links, "-r", str(reqs)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]

    src, dst = tmp_path / "points.parquet", tmp_path / "emb.parquet"
    POINTS.to_parquet(src)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env["MLFLOW_TRACKING_URI"] = store.tracking.tracking_uri
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", CONSUMER, str(src), str(dst), CHAMPION],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["hidden"], "calliper_pipeline was importable in the consumer environment"
    assert Path(report["prefix"]) == venv
    assert not report["package_from"].startswith(str(REPO_ROOT)), report["package_from"]
    got = pd.read_parquet(dst)
    np.testing.assert_allclose(got.to_numpy(), expected(store, POINTS), **TOL)
    shutil.rmtree(venv)
