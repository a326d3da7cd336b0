"""One code path, whichever door: ``calliper run`` and a direct :func:`materialize_city` run the
same Dagster job against the same instance, MLflow registry and city store, and train the same
model (training is seeded).

The module fixture builds a synthetic city and runs, in order, on one CALLIPER_HOME:

1. ``calliper run --tiny`` with the paths given as options only (no CALLIPER_* variables set);
2. :func:`jobs.run_city.materialize_city` with :func:`tiny_run_config`, paths from the env;
3. ``calliper run-all --tiny --variants calliper,calliper_plus --results <file>``.

So ``calliper_synthetic`` has versions 1 (door 1), 2 (door 2), 3 and 4 (door 3, CaLLiPer and
CaLLiPer+).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from calliper_pipeline.tracking import serving
from calliper_pipeline.tracking.runs import TrackingConfig, default_tracking
from jobs.cli.parser import main
from jobs.definitions import CITY_REFRESH_JOB
from jobs.origin import CLI, LAUNCHED_BY, PYTHON_API, USER_TAG
from jobs.run_city import materialize_city, tiny_run_config
from tests.support.synthetic import CENTRE_WGS84, make_synthetic_city

CITY = "synthetic"
MODEL = f"calliper_{CITY}"
N_POIS = 500

pytestmark = pytest.mark.slow  # four tiny city_refresh runs: ~100 s on 2 cores


@dataclass
class Doors:
    home: Path
    results: Path
    statuses: tuple[int, int]  # exit status of door 1 and door 3
    direct: dg.ExecuteInProcessResult  # door 2
    report: str  # the results file door 3 wrote

    @property
    def tracking(self) -> TrackingConfig:
        return default_tracking(self.home / "mlflow")

    def runs(self) -> list[dg.DagsterRun]:
        with dg.DagsterInstance.from_config(str(self.home / "dagster")) as instance:
            return list(instance.get_runs(ascending=True))

    def embeddings(self, version: int, points: pd.DataFrame) -> np.ndarray:
        model = serving.load_pyfunc(self.tracking, f"models:/{MODEL}/{version}")
        return serving.predict_embeddings(model, points).to_numpy()


POINTS = pd.DataFrame(
    {
        "lon": [CENTRE_WGS84[0] + d for d in (0.0, 0.01, -0.02, 0.05, -0.06)],
        "lat": [CENTRE_WGS84[1] + d for d in (0.0, 0.01, 0.0, -0.03, 0.04)],
    }
)


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doors]:
    root = tmp_path_factory.mktemp("doors")
    make_synthetic_city(root / "city", n_pois=N_POIS, key=CITY, n_landuse=300, lsoa_grid_side=12)
    toml = root / "city" / f"{CITY}.toml"
    home, data = root / "home", root / "data"
    paths = ["--city", CITY, "--home", str(home), "--data-root", str(data), "--cities", str(toml)]
    results = root / "results.md"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # anything written to the working directory stays in tmp
        for name in list(os.environ):
            if name.startswith(("CALLIPER_", "MLFLOW_", "DAGSTER_")):
                mp.delenv(name)
        mp.setenv("CALLIPER_TEXT_ENCODER", "hashing")  # read by the Dagster resources
        # door 1: the CLI, paths from its options only
        first = main(["run", "--tiny", *paths])
        # door 2: the job itself, paths from the environment
        mp.setenv("CALLIPER_HOME", str(home))
        mp.setenv("CALLIPER_DATA_ROOT", str(data))
        mp.setenv("CALLIPER_CITIES", str(toml))
        # each door trains (reuse off) so that the three models can be compared bit for bit
        direct = materialize_city(CITY, run_config=tiny_run_config(overrides={"reuse": False}))
        # door 3: the alias, two description variants, the results file
        third = main(["run-all", "--tiny", "--retrain", *paths, "--variants",
                      "calliper,calliper_plus", "--results", str(results)])  # fmt: skip
        report = results.read_text(encoding="utf-8") if results.exists() else ""
        yield Doors(home, results, (first, third), direct, report)


def test_every_door_succeeds_and_is_recorded_in_the_instance(doors: Doors) -> None:
    assert doors.statuses == (0, 0)
    assert doors.direct.success
    runs = doors.runs()
    assert len(runs) == 4  # door 1, door 2, door 3 x 2 variants
    assert all(r.job_name == CITY_REFRESH_JOB for r in runs)
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert all(r.tags["dagster/partition"] == CITY for r in runs)
    assert runs[1].run_id == doors.direct.run_id
    # where each run came from, also shown in the UI's "Launched by" column (tag "user")
    assert [r.tags[LAUNCHED_BY] for r in runs] == [CLI, PYTHON_API, CLI, CLI]
    assert all(r.tags[USER_TAG] == r.tags[LAUNCHED_BY] for r in runs)
    assert (doors.home / "dagster" / "dagster.yaml").exists()
    # the CLI's --home reached the job: nothing went to the repository's default home
    assert (doors.home / "store" / f"{CITY}.duckdb").exists()


def test_each_run_registered_a_version(doors: Doors) -> None:
    client = doors.tracking.client()
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))
    assert versions == [1, 2, 3, 4]
    by_version = {
        int(v.version): client.get_run(str(v.run_id))
        for v in client.search_model_versions(f"name = '{MODEL}'")
    }
    dagster_runs = [r.run_id for r in doors.runs()]
    assert [by_version[v].data.tags["dagster_run_id"] for v in (1, 2, 3, 4)] == dagster_runs
    variants = [by_version[v].data.params["description.variant"] for v in (1, 2, 3, 4)]
    assert variants == ["calliper", "calliper", "calliper", "calliper_plus"]
    epochs = {by_version[v].data.params["train.epochs"] for v in (1, 2, 3, 4)}
    assert epochs == {"2"}  # the tiny settings, whichever door


def test_the_doors_train_the_same_model(doors: Doors) -> None:
    cli = doors.embeddings(1, POINTS)
    direct = doors.embeddings(2, POINTS)
    again = doors.embeddings(3, POINTS)
    assert cli.shape == (len(POINTS), 4 * 128)  # default preset: four neighbourhood heads
    assert np.isfinite(cli).all()
    # same seed, data, settings and thread count in one process: bit-identical on CPU
    np.testing.assert_array_equal(cli, direct)
    np.testing.assert_array_equal(cli, again)
    plus = doors.embeddings(4, POINTS)  # other texts, another model
    assert np.abs(plus - cli).max() > 1e-3


def test_run_all_wrote_the_results_section(doors: Doors) -> None:
    text = doors.report
    assert "<!-- results:synthetic-run:start -->" in text
    assert f"models:/{MODEL}/3" in text and f"models:/{MODEL}/4" in text
    lines = [line for line in text.splitlines() if line.startswith("synthetic-run")]
    assert len(lines) == 8  # 2 protocols x (2 variants + counts + pe)
    assert all("nan" not in line for line in lines), lines
    # the report reads the very baselines the runs' asset computed (same cache key: the tiny
    # probe settings), not a fresh computation with the default probe settings
    meta: dict[str, Any] = {
        k: getattr(v, "value", v)
        for k, v in doors.direct.asset_materializations_for_node("baselines")[0].metadata.items()
    }
    assert meta["cache_hit"] is True  # door 1 computed them
    for tag, protocol in (("-run", "random"), ("-run-block", "blocks")):
        for short in ("counts", "pe"):
            f1 = 100 * meta[f"{protocol}_luc_mlp_f1_{short}"]
            l1 = 100 * meta[f"{protocol}_sdm_mlp_l1_{short}"]
            assert f"synthetic{tag}-{short}-mlp: luc_f1={f1:.2f} sdm_l1={l1:.2f}" in lines
