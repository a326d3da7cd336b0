"""The single-stage commands of ``calliper`` on a synthetic city, each on what the one before
left: ingest -> embed-texts -> train (a registered MLflow version) -> evaluate / embed /
retrieve that version. Paths come from the options only (HOME holds DuckDB and MLflow)."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from calliper_pipeline.store import metrics
from calliper_pipeline.store import pois as store
from calliper_pipeline.store.city_store import for_home
from calliper_pipeline.tracking.runs import TrackingConfig, default_tracking
from jobs.cli.parser import main
from tests.support.synthetic import CENTRE_WGS84, make_synthetic_city

CITY = "synthetic"
MODEL = f"calliper_{CITY}"
N_POIS = 500


@dataclass
class Cli:
    root: Path
    home: Path
    paths: list[str]
    out: dict[str, str]  # stdout of each command run by the fixture

    @property
    def tracking(self) -> TrackingConfig:
        return default_tracking(self.home / "mlflow")

    def run(self, *argv: str) -> str:
        """``calliper <argv> <paths>``; asserts exit status 0 and returns its stdout."""
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            status = main([*argv, *self.paths])
        assert status == 0, buf.getvalue()
        return buf.getvalue()


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    root = tmp_path_factory.mktemp("cli")
    make_synthetic_city(root / "city", n_pois=N_POIS, key=CITY, n_landuse=300, lsoa_grid_side=12)
    home = root / "home"
    paths = ["--city", CITY, "--home", str(home), "--data-root", str(root / "data"),
             "--cities", str(root / "city" / f"{CITY}.toml")]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for name in list(os.environ):
            if name.startswith(("CALLIPER_", "MLFLOW_")):
                mp.delenv(name)
        c = Cli(root, home, paths, {})
        c.out["ingest"] = c.run("ingest")
        c.out["embed-texts"] = c.run("embed-texts", "--text-encoder", "hashing")
        c.out["embed-texts again"] = c.run("embed-texts", "--text-encoder", "hashing")
        c.out["train"] = c.run(
            "train", "--text-encoder", "hashing", "--preset", "paper", "--epochs", "1",
            "--batch-size", "128", "--threads", "1", "--min-lambda-m", "200",
        )  # fmt: skip
        yield c


def test_ingest_stores_the_pois(cli: Cli) -> None:
    assert f"{CITY}: {N_POIS:,} rows read, {N_POIS:,} valid" in cli.out["ingest"]
    with for_home(cli.home).connect(CITY, read_only=True) as con:
        assert len(store.read_city_pois(con, CITY)) == N_POIS


def test_embed_texts_is_cached(cli: Cli) -> None:
    first, again = cli.out["embed-texts"], cli.out["embed-texts again"]
    assert ", 0 already cached" in first and " 0 embedded" not in first
    assert " 0 embedded" in again


def test_train_registers_a_candidate_version(cli: Cli) -> None:
    assert f"-> models:/{MODEL}/1 (alias candidate)" in cli.out["train"]
    client = cli.tracking.client()
    (version,) = client.search_model_versions(f"name = '{MODEL}'")
    assert str(version.version) == "1"
    assert {k: str(v) for k, v in client.get_registered_model(MODEL).aliases.items()} == {
        "candidate": "1"
    }
    run = client.get_run(str(version.run_id))
    params = run.data.params
    assert params["train.epochs"] == "1" and params["train.batch_size"] == "128"
    assert params["encoder.min_lambda_m"] == "200.0" and params["objective.name"] == "poi"
    assert params["data.text_encoder_id"].startswith("hashing")
    assert run.data.tags["city"] == CITY and "dagster_run_id" not in run.data.tags


def test_evaluate_writes_both_protocols_to_duckdb(cli: Cli) -> None:
    out = cli.run("evaluate", "--model", f"models:/{MODEL}/1", "--seeds", "42")
    assert "luc" in out and "sdm" in out
    with for_home(cli.home).connect(CITY, read_only=True) as con:
        rows = metrics.read_evaluation(con, CITY, MODEL, "1")
    assert set(rows["protocol"]) == {"random", "blocks"}
    assert set(rows["task"]) == {"luc", "sdm"} and set(rows["probe"]) == {"linear", "mlp"}
    assert (rows["n_seeds"] == 1).all() and rows["mean"].notna().all()
    f1 = rows[(rows["task"] == "luc") & (rows["metric"] == "f1")]
    assert len(f1) == 4 and f1["mean"].between(0.0, 1.0).all()  # 2 protocols x 2 probes
    client = cli.tracking.client()
    run_id = client.get_model_version(MODEL, "1").run_id
    logged = client.get_run(str(run_id)).data.metrics
    assert logged["luc.mlp.f1"] == pytest.approx(
        float(f1[(f1["protocol"] == "random") & (f1["probe"] == "mlp")]["mean"].iloc[0])
    )


def test_embed_writes_one_column_per_dimension(cli: Cli) -> None:
    lon, lat = CENTRE_WGS84
    points = pd.DataFrame(
        {"id": ["a", "b", "c"], "lon": [lon, lon + 0.01, lon - 0.02], "lat": [lat, lat, lat + 0.01]}
    )
    src, dst = cli.root / "points.csv", cli.root / "out.parquet"
    points.to_csv(src, index=False)
    out = cli.run("embed", "--model", f"models:/{MODEL}/1", "--input", str(src),
                  "--output", str(dst))  # fmt: skip
    assert f"3 points embedded with models:/{MODEL}/1" in out
    emb = pd.read_parquet(dst)
    dims = [c for c in emb.columns if c.startswith("e")]
    assert len(dims) == 128 * 1  # the paper preset: one 128-d head
    assert dims[0] == "e000" and dims[-1] == "e127"
    assert list(emb["id"]) == ["a", "b", "c"] and len(emb) == 3
    assert emb[dims].notna().all().all()


def test_retrieve_writes_a_heatmap_and_top_cells(cli: Cli) -> None:
    png, query = cli.root / "pubs.png", "a place of pub, a type of eating and drinking"
    out = cli.run("retrieve", query, "--model", f"models:/{MODEL}/1", "--output", str(png),
                  "--top-k", "5")  # fmt: skip
    csv = png.with_suffix(".csv")
    assert f"heatmap -> {png}, top 5 cells -> {csv}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    top = pd.read_csv(csv)
    assert len(top) == 5 and set(top["query"]) == {query}
