"""End to end through a real ``dagster dev`` (webserver + daemon + code server).

Starts ``dagster dev -w workspace.yaml`` on a free loopback port with a temporary DAGSTER_HOME
and CALLIPER_HOME and a synthetic city added through CALLIPER_CITIES, launches ``city_refresh``
for the synthetic partition over GraphQL, waits for success, reads the materialisations'
metadata back over GraphQL, and stops the server by its process group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from dagster_graphql import DagsterGraphQLClient

from calliper_pipeline.tracking.runs import default_tracking
from jobs.definitions import CITY_REFRESH_JOB
from jobs.run_city import ensure_dagster_home, tiny_run_config
from tests.support.paths import REPO_ROOT
from tests.support.synthetic import make_synthetic_city

pytestmark = pytest.mark.slow

DAGSTER = Path(sys.executable).parent / "dagster"
CITY = "synthetic"
START_TIMEOUT_S = 120
RUN_TIMEOUT_S = 300

MATERIALIZATIONS = """
query ($key: AssetKeyInput!, $partition: String!) {
  assetOrError(assetKey: $key) {
    ... on Asset {
      assetMaterializations(partitions: [$partition], limit: 1) {
        runId
        partition
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
          ... on TextMetadataEntry { text }
          ... on BoolMetadataEntry { boolValue }
        }
      }
    }
  }
}
"""
LOCATIONS = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        payload = {"query": query, "variables": variables or {}}
        resp = requests.post(self.url, json=payload, timeout=30)
        resp.raise_for_status()
        body = resp.json()
        assert "errors" not in body, body
        return body["data"]

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wait_until_loaded(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, f"dagster dev exited:\n{server.tail()}"
        try:
            entries = server.query(LOCATIONS)["workspaceOrError"]["locationEntries"]
        except (requests.RequestException, AssertionError, KeyError):
            time.sleep(1.0)
            continue
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
            assert not errors, errors
            return
        time.sleep(1.0)
    raise TimeoutError(f"dagster dev did not load the workspace:\n{server.tail()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (dagster dev and its children), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    spec = make_synthetic_city(tmp_path / "city", n_pois=600, key=CITY)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DAGSTER_"))}
    env |= {
        "DAGSTER_HOME": str(ensure_dagster_home(home / "dagster")),
        "CALLIPER_HOME": str(home),
        "CALLIPER_DATA_ROOT": str(tmp_path / "data"),
        "CALLIPER_CITIES": str(tmp_path / "city" / f"{spec.key}.toml"),
        "CALLIPER_TEXT_ENCODER": "hashing",
    }
    port = free_port()
    log = tmp_path / "dagster_dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(DAGSTER), "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1",
             "-p", str(port)],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so SIGTERM reaches all of it
        )  # fmt: skip
    srv = Server(port, proc, log)
    try:
        # Create the MLflow store's tables (~10 s of migrations) while dagster dev starts.
        default_tracking(home / "mlflow").client().search_experiments()
        wait_until_loaded(srv)
        yield srv
    finally:
        stop(proc)
    assert proc.returncode is not None


def metadata(server: Server, asset: str) -> tuple[str, dict[str, Any]]:
    data = server.query(MATERIALIZATIONS, {"key": {"path": [asset]}, "partition": CITY})
    (mat,) = data["assetOrError"]["assetMaterializations"]
    values = {}
    for entry in mat["metadataEntries"]:
        value = [v for k, v in entry.items() if k != "label"]
        values[entry["label"]] = value[0] if value else None
    return mat["runId"], values


def test_dagster_dev_runs_the_city_chain_launched_over_graphql(server: Server) -> None:
    client = DagsterGraphQLClient("127.0.0.1", port_number=server.port)
    run_config = tiny_run_config()
    run_config["execution"] = {"config": {"in_process": {}}}  # one process: no per-step imports
    run_id = client.submit_job_execution(
        CITY_REFRESH_JOB,
        repository_location_name="calliper",
        run_config=run_config,
        tags={"dagster/partition": CITY},
    )
    deadline = time.monotonic() + RUN_TIMEOUT_S
    status = None
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2.0)
    assert status == "SUCCESS", server.tail()

    pois_run, pois = metadata(server, "pois")
    assert pois_run == run_id and pois["dagster/row_count"] == 600
    _, embeddings = metadata(server, "text_embeddings")
    assert embeddings["n_embedded"] == embeddings["n_distinct"] > 0
    _, model = metadata(server, "calliper_model")
    assert model["model_uri"] == f"models:/calliper_{CITY}/1"
    _, luc = metadata(server, "land_use_evaluation")
    assert luc["model_uri"] == model["model_uri"] and 0.0 <= luc["luc_mlp_f1"] <= 1.0
    _, champion = metadata(server, "calliper_champion")
    assert champion["decision"] == "promoted"
    runs = server.query("{ runsOrError { ... on Runs { results { runId tags { key value } } } } }")
    results = runs["runsOrError"]["results"]
    assert run_id in [r["runId"] for r in results]
    # Any other run must come from the daemon's automation (on a fresh instance its first tick
    # can overlap the launched run), never a duplicate launch.
    for r in results:
        if r["runId"] != run_id:
            keys = {t["key"] for t in r["tags"]}
            auto = {
                "dagster/sensor_name",
                "dagster/schedule_name",
                "dagster/from_automation_condition",
            }
            assert keys & auto, keys
