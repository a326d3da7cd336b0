"""End to end through a real ``dagster dev`` (webserver + daemon + code server).

Starts ``dagster dev -w workspace.yaml`` on a free loopback port with a temporary DAGSTER_HOME
and CALLIPER_HOME and a synthetic city added through CALLIPER_CITIES, launches ``city_refresh``
for the synthetic partition over GraphQL, waits for success, reads the materialisations'
metadata back over GraphQL as the UI does (entry types: url, float, markdown with an image;
the preview first; short keys; escaped descriptions; the run's origin tag), and stops the
server by its process group.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster_graphql import DagsterGraphQLClient

from assets.metadata import MAX_INLINE_MD, MAX_KEY_LEN, PREVIEW
from assets.resources import LOCAL_MLFLOW_UI
from calliper_pipeline.tracking.runs import default_tracking
from jobs.definitions import CITY_REFRESH_JOB
from jobs.origin import LAUNCHED_BY, SCHEDULE, SENSOR, WEBSERVER
from jobs.run_city import ensure_dagster_home, tiny_run_config
from tests.support.graph import CHAIN_ASSETS
from tests.support.paths import REPO_ROOT
from tests.support.servers import free_port, stop
from tests.support.synthetic import make_synthetic_city
from tests.support.webserver import Server, wait_until_loaded

pytestmark = pytest.mark.slow

DAGSTER = Path(sys.executable).parent / "dagster"
CITY = "synthetic"
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
          __typename
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
          ... on TextMetadataEntry { text }
          ... on BoolMetadataEntry { boolValue }
          ... on UrlMetadataEntry { url }
          ... on MarkdownMetadataEntry { mdStr }
        }
      }
    }
  }
}
"""
DESCRIPTIONS = "{ assetNodes { assetKey { path } description } }"


def dev_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a dagster dev on a temporary home with the synthetic city added."""
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
    return env


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    env = dev_env(tmp_path)
    home = Path(env["CALLIPER_HOME"])
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


def entries(server: Server, asset: str) -> tuple[str, list[dict[str, Any]]]:
    """The run id and the metadata entries (label, __typename, value) of the latest
    materialisation of ``asset[CITY]``, in the order the UI lists them."""
    data = server.query(MATERIALIZATIONS, {"key": {"path": [asset]}, "partition": CITY})
    (mat,) = data["assetOrError"]["assetMaterializations"]
    return mat["runId"], mat["metadataEntries"]


def metadata(server: Server, asset: str) -> tuple[str, dict[str, Any]]:
    run_id, listed = entries(server, asset)
    values = {}
    for entry in listed:
        value = [v for k, v in entry.items() if k not in ("label", "__typename")]
        values[entry["label"]] = value[0] if value else None
    return run_id, values


def check_the_metadata_as_the_ui_reads_it(server: Server) -> None:
    """What the asset pages show, through the webserver's GraphQL: a short preview first,
    links as URL entries, numbers as (rounded) floats, pictures as markdown images; short keys
    and descriptions whose ``<word>`` placeholders are escaped."""
    for asset in CHAIN_ASSETS:
        _, listed = entries(server, asset)
        first = listed[0]
        assert (first["label"], first["__typename"]) == (PREVIEW, "MarkdownMetadataEntry"), asset
        assert len(first["mdStr"]) < MAX_INLINE_MD, asset
        assert all(len(e["label"]) <= MAX_KEY_LEN for e in listed), asset
        for e in listed:
            if e["__typename"] == "FloatMetadataEntry" and e["floatValue"] is not None:
                assert e["floatValue"] == float(f"{e['floatValue']:.4g}"), (asset, e)
    _, model = entries(server, "calliper_model")
    by_label = {e["label"]: e for e in model}
    assert by_label["mlflow_run"]["__typename"] == "UrlMetadataEntry"
    assert by_label["mlflow_run"]["url"].startswith(f"{LOCAL_MLFLOW_UI}/#/experiments/")
    assert by_label["best_val_loss"]["__typename"] == "FloatMetadataEntry"
    assert by_label["aliases"]["text"] == "candidate"
    assert "aliases: candidate" in by_label[PREVIEW]["mdStr"]
    curve = by_label["training_curve"]
    assert curve["__typename"] == "MarkdownMetadataEntry"
    assert curve["mdStr"].startswith("![training curve](data:image/png;base64,")
    _, maps = entries(server, "embedding_maps")
    by_label = {e["label"]: e for e in maps}
    assert by_label["cluster_map"]["mdStr"].startswith("![cluster map](data:image/png;base64,")
    assert "![cluster map](http://" in by_label[PREVIEW]["mdStr"]
    _, champion = metadata(server, "calliper_champion")
    assert champion["aliases"] == "candidate, champion"
    nodes = server.query(DESCRIPTIONS)["assetNodes"]
    texts = {"/".join(n["assetKey"]["path"]): n["description"] or "" for n in nodes}
    assert "`calliper_<city>`" in texts["calliper_model"]
    raw = {k: v for k, v in texts.items() if re.search(r"<\w+>", re.sub(r"`[^`]*`", "", v))}
    assert raw == {}


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
    check_the_metadata_as_the_ui_reads_it(server)
    runs = server.query("{ runsOrError { ... on Runs { results { runId tags { key value } } } } }")
    results = runs["runsOrError"]["results"]
    assert run_id in [r["runId"] for r in results]
    tags = {r["runId"]: {t["key"]: t["value"] for t in r["tags"]} for r in results}
    assert tags[run_id][LAUNCHED_BY] == WEBSERVER  # the job's default: launched over GraphQL
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
            assert tags[r["runId"]][LAUNCHED_BY] in (SENSOR, SCHEDULE)


# ---------------------------------------------------------------------------------------------
# make dagster: one Ctrl-C stops python -m jobs.dev and everything it started
# ---------------------------------------------------------------------------------------------
def live_descendants(pid: int) -> set[int]:
    """Every live (not zombie) process below ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    out: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - out
        out |= frontier
    return out


def alive(pids: set[int]) -> set[int]:
    left = set()
    for pid in pids:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            left.add(pid)
    return left


def test_one_ctrl_c_stops_jobs_dev_and_all_its_processes(tmp_path: Path) -> None:
    from jobs.dev import GRACE_S, INTERRUPTED, STRAGGLER_S

    port = free_port()
    log = tmp_path / "jobs_dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobs.dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT, env=dev_env(tmp_path) | {"PYTHONPATH": str(REPO_ROOT)},
            stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's foreground group, as under make
        )  # fmt: skip
    srv = Server(port, proc, log)
    try:
        wait_until_loaded(srv)
        started = live_descendants(proc.pid)
        # dagster dev, its webserver, daemon and code server (and their helpers)
        assert len(started) >= 4, started
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        t0 = time.monotonic()
        rc = proc.wait(timeout=GRACE_S + STRAGGLER_S + 30)
        seconds = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            stop(proc)
    assert rc == INTERRUPTED, srv.tail()
    assert seconds < GRACE_S + STRAGGLER_S + 5
    assert alive(started) == set(), srv.tail()
    # the group got SIGINT (dagster's own shutdown), not a kill: the daemon says so. (dagster
    # dev's own "Dagster services shut down." is not asserted: interrupted right after the
    # webserver came up, before its main loop, it exits without printing it.)
    log_text = log.read_text(errors="replace")
    assert "Received interrupt" in log_text, srv.tail()
