"""The Definitions object: it loads, holds the expected graph, and everything shares partitions."""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml

from assets.resources import DUCKDB_POOL, default_resources, local_resources
from calliper_pipeline import settings
from calliper_pipeline.cities.spec import CitySpec
from jobs.cli.parser import build_parser
from jobs.definitions import (
    AUTOMATION_SENSOR,
    CITY_REFRESH_JOB,
    OBSERVE_JOB,
    RETRAIN_JOB,
    build_definitions,
)
from jobs.origin import LAUNCHED_BY, MAKE_RUN, PYTHON_API, SCHEDULE, SENSOR, USER_TAG, WEBSERVER
from jobs.run_city import materialize_city
from tests.support.graph import CHAIN_ASSETS, CHAIN_CHECKS
from tests.support.paths import REPO_ROOT
from tests.support.synthetic import make_synthetic_city

ASSET_KEYS = {"poi_snapshot", *CHAIN_ASSETS}
Built = tuple[dg.Definitions, CitySpec]  # definitions with london + a synthetic city, its spec


@pytest.fixture(scope="module")
def defs(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("defs")
    spec = make_synthetic_city(root / "synthetic", n_pois=20, evaluation=False)
    toml = root / "synthetic" / "synthetic.toml"
    s = settings.Settings(data_root=root / "data", home=root / "home", city_files=(toml,))
    return build_definitions(s, resources=local_resources(s, "hashing")), spec


def test_module_defs_load_from_the_environment() -> None:
    from jobs.definitions import defs as module_defs

    dg.Definitions.validate_loadable(module_defs)
    pois = module_defs.resolve_asset_graph().get(dg.AssetKey("pois"))
    assert pois.partitions_def is not None
    assert "london" in pois.partitions_def.get_partition_keys()


def test_defs_hold_the_graph_jobs_schedules_and_sensor(defs: Built) -> None:
    d, spec = defs
    dg.Definitions.validate_loadable(d)
    graph = d.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == ASSET_KEYS
    assert {k.name for k in graph.asset_check_keys} == CHAIN_CHECKS
    refresh = d.resolve_job_def(CITY_REFRESH_JOB)
    assert {k.to_user_string() for k in refresh.asset_layer.selected_asset_keys} == ASSET_KEYS
    retrain = d.resolve_job_def(RETRAIN_JOB)
    assert {k.to_user_string() for k in retrain.asset_layer.selected_asset_keys} == {
        "calliper_model", "land_use_evaluation", "socioeconomic_evaluation",
        "calliper_champion", "embedding_maps", "region_embeddings",
    }  # fmt: skip
    observe = d.resolve_job_def(OBSERVE_JOB)
    assert {k.to_user_string() for k in observe.asset_layer.selected_asset_keys} == {"poi_snapshot"}
    schedules = {s.name: s for s in d.schedules}
    assert set(schedules) == {"london_snapshot_observation", "synthetic_snapshot_observation"}
    assert schedules["synthetic_snapshot_observation"].cron_schedule == spec.refresh_cron
    assert schedules["london_snapshot_observation"].cron_schedule == "0 3 * * 1"
    assert all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in d.schedules)
    (sensor,) = d.sensors
    assert sensor.name == AUTOMATION_SENSOR
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_every_asset_and_check_shares_the_city_partitions(defs: Built) -> None:
    d, _ = defs
    graph = d.resolve_asset_graph()
    parts = {graph.get(k).partitions_def for k in graph.get_all_asset_keys()}
    parts |= {graph.get(k).partitions_def for k in graph.asset_check_keys}
    assert len(parts) == 1
    (only,) = parts
    assert isinstance(only, dg.StaticPartitionsDefinition)
    assert only.get_partition_keys() == ["london", "synthetic"]


def test_writers_share_the_duckdb_pool_and_downstream_is_eager(defs: Built) -> None:
    d, _ = defs
    graph = d.resolve_asset_graph()
    for name in ("pois", "text_embeddings", "land_use_evaluation", "socioeconomic_evaluation"):
        node = graph.get(dg.AssetKey(name))
        assert node.pools == {DUCKDB_POOL}, name
        assert node.automation_condition is not None
        assert node.automation_condition.get_label() == "eager"
    assert graph.get(dg.AssetKey("poi_snapshot")).is_observable


def test_default_resources_follow_the_environment(tmp_path: Path) -> None:
    env = {
        "CALLIPER_HOME": str(tmp_path / "h"),
        "CALLIPER_DATA_ROOT": str(tmp_path / "d"),
        "CALLIPER_TEXT_ENCODER": "hashing",
    }
    res = default_resources(env=env)
    assert res["duckdb"].path_for("x") == tmp_path / "h" / "store" / "x.duckdb"
    assert res["duckdb"].legacy_path == str(tmp_path / "h" / "warehouse.duckdb")
    assert res["data"].data_root == str(tmp_path / "d")
    assert res["text_encoder"].name == "hashing"
    tracking = res["mlflow"].tracking()
    assert tracking.tracking_uri == f"sqlite:///{tmp_path / 'h' / 'mlflow' / 'mlflow.db'}"
    assert tracking.ui_url == "http://127.0.0.1:5000"  # where make mlflow-ui serves it
    moved = default_resources(env={**env, "CALLIPER_MLFLOW_UI": "http://localhost:5050/"})
    assert moved["mlflow"].tracking().ui_base == "http://localhost:5050"


def test_workspace_and_packaging_name_the_definitions_module() -> None:
    workspace = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    assert entry["python_module"]["module_name"] == "jobs.definitions"
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {"assets*", "jobs*"} <= set(include)


def test_the_library_never_imports_dagster() -> None:
    """Layering: calliper_pipeline imports no dagster (a static scan of every module)."""
    offenders = []
    for path in sorted((REPO_ROOT / "calliper_pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0].startswith("dagster") for n in names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_materialize_city_records_the_run_in_the_persistent_instance(
    defs: Built, tmp_path: Path
) -> None:
    d, _ = defs
    home = tmp_path / "dagster"
    result = materialize_city("synthetic", home, job_name=OBSERVE_JOB, defs=d)
    assert result.success
    assert (home / "dagster.yaml").read_text().count("default_limit: 1") == 1
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.run_id == result.run_id and run.tags["dagster/partition"] == "synthetic"
        assert run.tags[LAUNCHED_BY] == run.tags[USER_TAG] == PYTHON_API


def test_every_door_tags_where_its_runs_came_from(defs: Built) -> None:
    d, _ = defs
    for job in (OBSERVE_JOB, CITY_REFRESH_JOB, RETRAIN_JOB):  # the UI's and GraphQL's runs
        assert d.resolve_job_def(job).tags == {LAUNCHED_BY: WEBSERVER}, job
    schedule = d.resolve_schedule_def("synthetic_snapshot_observation")
    with dg.build_schedule_context(repository_def=d.get_repository_def()) as context:
        tick = schedule.evaluate_tick(context)
    (request,) = tick.run_requests or []
    assert request.partition_key == "synthetic" and request.tags[LAUNCHED_BY] == SCHEDULE
    (sensor,) = d.sensors
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.run_tags == {LAUNCHED_BY: SENSOR}
    # make run: the Makefile's command line, parsed by the CLI, names its door
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\nrun: setup\n", 1)[1].splitlines()[0]
    argv = shlex.split(recipe.replace("$(CITY)", "london"))
    assert argv[0].endswith("/calliper")
    assert build_parser().parse_args(argv[1:]).launched_by == MAKE_RUN


_RAW_TAG = re.compile(r"<[A-Za-z_][\w.-]*>")  # the UI's markdown would swallow it as HTML


def _without_code(text: str) -> str:
    return re.sub(r"`[^`]*`", "", text)


def test_descriptions_hold_no_raw_angle_bracket_words(defs: Built) -> None:
    d, _ = defs
    graph = d.resolve_asset_graph()
    texts = {k.to_user_string(): graph.get(k).description for k in graph.get_all_asset_keys()}
    texts |= {k.name: graph.get(k).description for k in graph.asset_check_keys}
    jobs = (OBSERVE_JOB, CITY_REFRESH_JOB, RETRAIN_JOB)
    texts |= {name: d.resolve_job_def(name).description for name in jobs}
    texts |= {s.name: s.description for s in [*d.schedules, *d.sensors]}
    assert sum(1 for v in texts.values() if v) >= 12
    assert "`calliper_<city>`" in str(texts["calliper_model"])  # escaped, so the UI shows it
    raw = {k: v for k, v in texts.items() if v and _RAW_TAG.search(_without_code(v))}
    assert raw == {}
