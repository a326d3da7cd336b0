"""The library steps the assets and the CLI share, on a synthetic city with a temporary DuckDB:
ingest (profiled), text embedding (cached), the cached baselines and the city's report."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.config import EMPTY_TEXT, EncoderConfig, ProbeConfig, RunConfig
from calliper_pipeline.constants import POI_COLUMNS
from calliper_pipeline.errors import EmptySnapshotError
from calliper_pipeline.evaluation.baselines import POI_COUNTS, POSITIONAL_ENCODING
from calliper_pipeline.steps import baselines as baselines_step
from calliper_pipeline.steps.embed import city_texts, embed
from calliper_pipeline.steps.ingest import IngestOutcome, ingest_profiled, load_pois
from calliper_pipeline.steps.report import city_report
from calliper_pipeline.store import metrics
from calliper_pipeline.store.db import connect
from calliper_pipeline.text.encoders import build_text_encoder
from tests.support.synthetic import BAD_ROWS, FILTERED_ROWS, make_synthetic_city

N_POIS = 400
KEY = "synthetic"
# tiny settings: a small encoder for the positional-encoding baselines, one short probe seed
TINY_RUN = replace(
    RunConfig(),
    encoder=EncoderConfig(frequency_num=4, hidden_dim=16, num_layers=1),
    probe=ProbeConfig(seeds=(42,), max_epochs=5),
)


@dataclass
class City:
    spec: CitySpec
    root: Path
    con: duckdb.DuckDBPyConnection
    ingest: IngestOutcome


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    root = tmp_path_factory.mktemp("steps")
    spec = make_synthetic_city(root / "city", n_pois=N_POIS, seed=5, bad_rows=True, n_landuse=300,
                               lsoa_grid_side=12)  # fmt: skip
    con = connect(root / "home" / "warehouse.duckdb")
    try:
        outcome = ingest_profiled(con, spec, root / "data", sample_rows=3)
        yield City(spec, root, con, outcome)
    finally:
        con.close()


def test_ingest_profiled_counts_sample_and_category_mix(city: City) -> None:
    report = city.ingest.report
    assert report.rows_valid == N_POIS
    assert report.rows_read == N_POIS + sum(BAD_ROWS.values()) + FILTERED_ROWS
    assert report.rows_filtered_out == FILTERED_ROWS
    assert dict(report.quarantined_by) == BAD_ROWS
    assert report.metric_epsg == 32632
    assert list(city.ingest.sample.columns) == list(POI_COLUMNS)
    assert len(city.ingest.sample) == 3
    mix = city.ingest.category_mix
    pois = load_pois(city.con, city.spec)
    assert len(pois) == N_POIS
    expected = pois["category"].value_counts(normalize=True)
    assert mix.sum() == pytest.approx(1.0)
    assert mix.to_dict() == pytest.approx(expected.to_dict())
    assert list(mix.to_numpy()) == sorted(mix.to_numpy(), reverse=True)  # largest first


def test_load_pois_of_a_city_never_ingested_raises(city: City) -> None:
    with pytest.raises(EmptySnapshotError):
        load_pois(city.con, replace(city.spec, key="elsewhere"))


def test_embed_caches_every_text_and_the_empty_text_once(city: City) -> None:
    encoder = build_text_encoder("hashing")
    texts = set(city_texts(load_pois(city.con, city.spec), city.spec, RunConfig().description))
    assert EMPTY_TEXT not in texts and len(texts) > 10
    first = embed(city.con, city.spec, encoder)
    assert first.n_input == N_POIS + 1  # every POI's text plus the empty-place text
    assert first.n_distinct == first.n_embedded == len(texts) + 1
    assert first.n_cached == 0
    second = embed(city.con, city.spec, encoder)
    assert (second.n_embedded, second.n_cached) == (0, len(texts) + 1)
    n_rows = city.con.execute(
        "SELECT count(*) FROM text_embeddings WHERE encoder_id = ?", [encoder.encoder_id]
    ).fetchone()
    assert n_rows == (len(texts) + 1,)


def test_baselines_both_protocols_then_a_cache_hit(city: City) -> None:
    first = baselines_step.cached_baselines(city.con, city.spec, city.root / "data", TINY_RUN)
    assert not first.cache_hit
    frame = first.frame
    assert set(frame["encoder"]) == set(baselines_step.LABELS)
    assert set(frame["protocol"]) == {"random", "blocks"}
    assert set(frame["task"]) == {"luc", "sdm"}
    for (_label, _protocol), part in frame.groupby(["encoder", "protocol"]):
        assert {"linear", "mlp"} == set(part["probe"])
    assert frame["mean"].notna().all() and (frame["n_seeds"] == 1).all()

    second = baselines_step.cached_baselines(city.con, city.spec, city.root / "data", TINY_RUN)
    assert second.cache_hit and second.cache_key == first.cache_key
    cols = ["encoder", "protocol", "task", "probe", "metric"]
    a = frame.sort_values(cols).reset_index(drop=True)
    b = second.frame.sort_values(cols).reset_index(drop=True)
    assert len(a) == len(b)
    pd.testing.assert_frame_equal(a[[*cols, "mean", "std"]], b[[*cols, "mean", "std"]])

    other_probe = replace(TINY_RUN, probe=replace(TINY_RUN.probe, max_epochs=6))
    other_encoder = replace(TINY_RUN, encoder=replace(TINY_RUN.encoder, hidden_dim=32))
    keys = {
        baselines_step.cache_key(city.con, city.spec, city.root / "data", cfg)
        for cfg in (TINY_RUN, other_probe, other_encoder)
    }
    assert len(keys) == 3 and first.cache_key in keys
    other = baselines_step.stored_baselines(
        city.con, KEY, baselines_step.cache_key(city.con, city.spec, city.root / "data",
                                                other_probe)
    )  # fmt: skip
    assert other.empty  # a changed probe config is a cache miss


def test_a_failed_evaluation_write_keeps_the_stored_rows(city: City) -> None:
    def frame(mean: float, protocol: str | None) -> pd.DataFrame:
        return pd.DataFrame(
            {"encoder": "e", "protocol": [protocol, "random"], "task": "luc", "probe": "mlp",
             "metric": ["f1", "accuracy"], "mean": mean, "std": 0.0, "n_seeds": 1}
        )  # fmt: skip

    metrics.write_evaluation(city.con, KEY, "m", "1", None, frame(0.5, "random"))
    # a NULL protocol breaks NOT NULL inside the transaction: the constraint error surfaces
    # (not a masking "transaction is aborted" error) and the earlier rows stay
    with pytest.raises(duckdb.ConstraintException):
        metrics.write_evaluation(city.con, KEY, "m", "1", None, frame(0.9, None))
    stored = metrics.read_evaluation(city.con, KEY, "m", "1")
    assert sorted(stored["mean"]) == [0.5, 0.5]


def test_city_report_renders_the_machine_lines(city: City) -> None:
    # an evaluation of a "registered" version, written by hand: known values
    ours = pd.DataFrame(
        {
            "encoder": "calliper_synthetic/v7",
            "protocol": ["random", "random", "blocks", "blocks"],
            "task": ["luc", "sdm", "luc", "sdm"],
            "probe": "mlp",
            "metric": ["f1", "l1", "f1", "l1"],
            "mean": [0.5, 0.25, 0.4, 0.3],
            "std": 0.01,
            "n_seeds": 1,
        }
    )
    metrics.write_evaluation(city.con, KEY, "calliper_synthetic", "7", None, ours)
    report = city_report(
        city.con, city.spec, city.root / "data", {"calliper": ("calliper_synthetic", "7")},
        TINY_RUN, {"train": 1.5}, {"training [calliper]": "2 epochs"}, "calliper run --tiny",
        city.root, "Synthetic: test",
    )  # fmt: skip
    text = report.markdown()
    assert text.startswith("## Synthetic: test")
    assert "- command: `calliper run --tiny`" in text and "train 1.5 s" in text
    assert "- training [calliper]: 2 epochs" in text
    assert "| ours: CaLLiPer | random |" in text
    assert "paper:" not in text  # the paper's figures are London's, not this city's
    lines = report.machine_lines
    # one training seed: the run's lines are "<city>-run[-block]-..." (the ablation's, averaged
    # over seeds, are "<city>[-block]-...")
    assert "synthetic-run-mlp: luc_f1=50.00 sdm_l1=25.00" in lines
    assert "synthetic-run-block-mlp: luc_f1=40.00 sdm_l1=30.00" in lines
    assert len(lines) == 6
    baselines = baselines_step.cached_baselines(
        city.con, city.spec, city.root / "data", TINY_RUN
    ).frame
    for tag, protocol in (("-run", "random"), ("-run-block", "blocks")):
        for key, label in (("counts-mlp", POI_COUNTS), ("pe-mlp", POSITIONAL_ENCODING)):
            rows = baselines[(baselines["encoder"] == label) & (baselines["protocol"] == protocol)
                             & (baselines["probe"] == "mlp")]  # fmt: skip
            f1 = 100 * float(rows.loc[rows["metric"] == "f1", "mean"].iloc[0])
            l1 = 100 * float(rows.loc[rows["metric"] == "l1", "mean"].iloc[0])
            line = f"synthetic{tag}-{key}: luc_f1={f1:.2f} sdm_l1={l1:.2f}"
            assert line in lines and line in text
    assert "synthetic-run-counts-mlp:" in text and "synthetic-run-block-pe-mlp:" in text
