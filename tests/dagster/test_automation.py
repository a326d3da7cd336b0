"""Declarative automation driven forward tick by tick: only a changed snapshot re-runs a city.

Two synthetic cities start fully materialised (runless events on an ephemeral instance); the
snapshots are observed through the real observation job, which hashes the files.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from assets.resources import local_resources
from calliper_pipeline import settings
from jobs.definitions import OBSERVE_JOB, build_definitions
from tests.support.graph import CHAIN_ASSETS
from tests.support.synthetic import make_synthetic_city

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")
A, B = "city_a", "city_b"
CHAIN = set(CHAIN_ASSETS)


class Ticker:
    """Observes snapshots with the real job and evaluates the automation conditions."""

    def __init__(self, defs: dg.Definitions):
        self.defs = defs
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor = None

    def observe(self, *cities: str) -> None:
        job = self.defs.resolve_job_def(OBSERVE_JOB)
        for city in cities:
            assert job.execute_in_process(partition_key=city, instance=self.instance).success

    def tick(self) -> dict[str, set[str]]:
        """One evaluation; returns {asset key: requested partitions} (empty entries dropped)."""
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.cursor
        )
        self.cursor = result.cursor
        requested = {
            key.to_user_string(): {str(p) for p in result.get_requested_partitions(key)}
            for key in self.defs.resolve_asset_graph().get_all_asset_keys()
        }
        return {k: v for k, v in requested.items() if v}


@pytest.fixture
def ticker(tmp_path: Path) -> Ticker:
    specs = {
        key: make_synthetic_city(tmp_path / key, n_pois=40, key=key, seed=i, evaluation=False)
        for i, key in enumerate((A, B))
    }
    s = settings.Settings(data_root=tmp_path / "data", home=tmp_path / "home")
    defs = build_definitions(s, specs=specs, resources=local_resources(s, "hashing"))
    t = Ticker(defs)
    t.observe(A, B)
    for city in (A, B):  # the chains as they stand after a first full run
        for key in sorted(CHAIN):
            t.instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=city))
    return t


def test_only_a_new_snapshot_hash_requests_its_city_chain(ticker: Ticker, tmp_path: Path) -> None:
    assert ticker.tick() == {}  # first evaluation: the state is the baseline
    assert ticker.tick() == {}

    ticker.observe(A, B)  # same files, same hashes
    assert ticker.tick() == {}

    snapshot = tmp_path / A / "pois.csv"
    df = pd.read_csv(snapshot, dtype={"poi_id": str})
    df.loc[0, "category"] = "Cinema"
    df.to_csv(snapshot, index=False)
    ticker.observe(A, B)  # A's hash changed, B's did not
    requested = ticker.tick()
    assert requested == {key: {A} for key in CHAIN}

    assert ticker.tick() == {}  # requested once, not again
