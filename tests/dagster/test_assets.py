"""The asset graph materialised for a synthetic city: tables, metadata, checks, MLflow, models.

One module fixture materialises the whole chain (tiny settings, hashing text encoder, a
temporary DuckDB and SQLite MLflow store), then changes one POI of the snapshot and
materialises ``pois`` and ``text_embeddings`` again; the tests read what both runs left.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets import CityAssets, build_city_assets
from assets.metadata import MAX_INLINE_MD, MAX_KEY_LEN, PREVIEW, SIGNIFICANT_DIGITS
from assets.resources import LOCAL_MLFLOW_UI, local_resources
from calliper_pipeline import presets, settings
from calliper_pipeline.constants import EVALUATION_TABLE, POI_COLUMNS
from calliper_pipeline.hashing import file_hash
from calliper_pipeline.store import pois as store
from calliper_pipeline.store.schema import MIX_TABLE
from calliper_pipeline.tracking import serving
from calliper_pipeline.tracking.runs import TrackingConfig
from jobs.run_city import tiny_run_config
from tests.support.graph import CHAIN_ASSETS, CHAIN_CHECKS
from tests.support.synthetic import (
    ALL_CATEGORIES,
    BAD_ROWS,
    CENTRE_WGS84,
    FILTERED_ROWS,
    make_synthetic_city,
)

CITY = "synthetic"
PLAIN = "plain"  # a second city, without evaluation sets
N_POIS = 1200
POIS = dg.AssetKey("pois")
TEXT_EMBEDDINGS = dg.AssetKey("text_embeddings")


@dataclass
class Chain:
    root: Path
    snapshot: Path
    first_hash: str
    graph: CityAssets
    resources: dict[str, Any]
    instance: dg.DagsterInstance
    first: dg.ExecuteInProcessResult
    second: dg.ExecuteInProcessResult

    def metadata(self, key: str, result: dg.ExecuteInProcessResult | None = None) -> dict:
        res = result or self.first
        mats = res.asset_materializations_for_node(key)
        assert len(mats) == 1, f"{key}: {len(mats)} materialisations"
        return {k: v.value for k, v in mats[0].metadata.items()}

    def raw_metadata(self, key: str) -> dict[str, dg.MetadataValue]:
        (mat,) = self.first.asset_materializations_for_node(key)
        return dict(mat.metadata)

    @property
    def tracking(self) -> TrackingConfig:
        return self.resources["mlflow"].tracking()

    def all_defs(self) -> list[Any]:
        return [self.graph.snapshot, *self.graph.assets, *self.graph.checks]


def change_one_poi(snapshot: Path) -> None:
    """Give the first POI a category no other POI has (one new description text)."""
    df = pd.read_csv(snapshot, dtype={"poi_id": str})
    df.loc[0, ["category", "group"]] = ["Cinema", "Entertainment and culture"]
    df.to_csv(snapshot, index=False)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    root = tmp_path_factory.mktemp("chain")
    old_cwd = Path.cwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))  # anything written to the cwd stays in tmp
    try:
        spec = make_synthetic_city(root / "city", n_pois=N_POIS, bad_rows=True)
        plain = make_synthetic_city(root / "plain", n_pois=60, key=PLAIN, evaluation=False)
        graph = build_city_assets({CITY: spec, PLAIN: plain})
        s = settings.Settings(data_root=root / "data", home=root / "home")
        resources = local_resources(s, text_encoder="hashing")
        instance = dg.DagsterInstance.ephemeral()
        snapshot = spec.snapshot_path(s.data_root)
        first_hash = file_hash(snapshot)
        defs = [graph.snapshot, *graph.assets, *graph.checks]
        first = dg.materialize(
            defs, partition_key=CITY, resources=resources, run_config=tiny_run_config(),
            instance=instance,
        )  # fmt: skip
        change_one_poi(snapshot)
        second = dg.materialize(
            defs, partition_key=CITY, resources=resources, instance=instance,
            selection=[POIS, TEXT_EMBEDDINGS],
        )  # fmt: skip
        yield Chain(root, snapshot, first_hash, graph, resources, instance, first, second)
    finally:
        os.chdir(old_cwd)


def test_chain_materialises_every_asset_and_passes_every_check(chain: Chain) -> None:
    assert chain.first.success
    keys = {
        e.materialization.asset_key.to_user_string()
        for e in chain.first.get_asset_materialization_events()
    }
    assert keys == CHAIN_ASSETS
    checks = {c.check_name: c.passed for c in chain.first.get_asset_check_evaluations()}
    assert checks == dict.fromkeys(CHAIN_CHECKS, True)


def test_pois_metadata_and_tables(chain: Chain) -> None:
    meta = chain.metadata("pois")
    assert meta["dagster/row_count"] == N_POIS
    assert meta["snapshot_hash"] == chain.first_hash
    assert meta["rows_read"] == N_POIS + sum(BAD_ROWS.values()) + FILTERED_ROWS
    assert meta["rows_filtered_out"] == FILTERED_ROWS
    for reason, n in BAD_ROWS.items():
        assert meta[f"quarantined_{reason.replace(' ', '_')}"] == n
    assert [c.name for c in meta["dagster/column_schema"].columns] == list(POI_COLUMNS)
    assert meta["sample"].startswith("| city | poi_id |")
    assert meta["preview"].startswith(f"**{N_POIS:,} POIs** of ")
    mat = chain.first.asset_materializations_for_node("pois")[0]
    assert mat.tags["dagster/data_version"] == chain.first_hash
    with chain.resources["duckdb"].connect(CITY, read_only=True) as con:
        assert len(store.read_city_pois(con, CITY)) == N_POIS
        assert len(store.read_quarantine(con, CITY)) == sum(BAD_ROWS.values())
        (ingests,) = con.execute(f"SELECT count(DISTINCT ingest_id) FROM {MIX_TABLE}").fetchone()
        assert ingests == 2


def test_text_embeddings_embed_only_new_texts(chain: Chain) -> None:
    first = chain.metadata("text_embeddings")
    n_texts = len(ALL_CATEGORIES) + 1  # every description and the empty-place text
    assert first["n_distinct"] == n_texts == first["n_embedded"]
    assert first["n_cached"] == 0 and first["encoder_id"] == "hashing-384-s0"
    assert first["cache_hit"] is False
    second = chain.metadata("text_embeddings", chain.second)
    assert (second["n_distinct"], second["n_cached"], second["n_embedded"]) == (
        n_texts + 1,
        n_texts,
        1,
    )
    assert second["cache_hit"] is False  # one new text was embedded
    new_hash = chain.metadata("pois", chain.second)["snapshot_hash"]
    assert new_hash == file_hash(chain.snapshot) != chain.first_hash
    drift = next(c for c in chain.second.get_asset_check_evaluations() if "mix" in c.check_name)
    tvd = drift.metadata["tvd"].value
    assert drift.passed and 0 < tvd < 0.01  # one POI of 1,200 moved category


def test_model_is_one_mlflow_run_and_a_registered_candidate(chain: Chain) -> None:
    meta = chain.metadata("calliper_model")
    assert meta["model_uri"] == f"models:/calliper_{CITY}/1" and meta["model_version"] == "1"
    # absolute: pasted into mlflow.set_tracking_uri it names this store from any directory
    assert meta["mlflow_tracking_uri"] == chain.tracking.tracking_uri
    assert meta["mlflow_tracking_uri"].startswith("sqlite:////")
    assert meta["epochs_run"] == 2 and meta["best_epoch"] in (1, 2)
    assert np.isfinite(meta["best_val_loss"]) and meta["pois_per_second"] > 0
    assert meta["training_curve"].startswith("![training curve](data:image/png;base64,")
    assert 0.0 <= meta["retrieval_recall_at_10pct"] <= 1.0
    assert meta["aliases"] == "candidate"  # champion moves later, in calliper_champion
    assert f"**calliper_{CITY} v1** · aliases: candidate" in meta["preview"]
    client = chain.tracking.client()
    run = client.get_run(meta["mlflow_run_id"])
    link = chain.raw_metadata("calliper_model")["mlflow_run"]
    assert isinstance(link, dg.UrlMetadataValue)  # make mlflow-ui's address for a local store
    exp = run.info.experiment_id
    assert link.url == f"{LOCAL_MLFLOW_UI}/#/experiments/{exp}/runs/{run.info.run_id}"
    assert run.data.tags["city"] == CITY
    assert run.data.tags["snapshot_hash"] == chain.first_hash
    assert run.data.tags["dagster_run_id"] == chain.first.run_id
    assert run.data.tags["code_version"]
    assert run.data.params["train.epochs"] == "2"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert steps == [1, 2]
    assert {"luc.mlp.f1", "sdm.mlp.kl", "retrieval.recall_at_5pct"} <= set(run.data.metrics)
    folders = ("figures", "maps", "evaluation")
    artifacts = {a.path for d in folders for a in client.list_artifacts(run.info.run_id, d)}
    assert {"figures/training_curve.png", "maps/cluster_map.png", "maps/pca.png"} <= artifacts
    assert {"evaluation/luc.json", "evaluation/evaluation_sdm.png"} <= artifacts


def test_candidate_loads_from_the_registry_and_embeds(chain: Chain) -> None:
    model = serving.load_pyfunc(chain.tracking, f"models:/calliper_{CITY}@candidate")
    lon, lat = CENTRE_WGS84
    points = pd.DataFrame({"lon": [lon, lon + 0.01, lon - 0.02], "lat": [lat, lat + 0.01, lat]})
    emb = serving.predict_embeddings(model, points)
    cfg = presets.run_config()  # tiny_run_config trains the default preset: one column per head
    assert emb.shape == (3, cfg.encoder.embed_dim * cfg.objective.heads)
    assert np.isfinite(emb.to_numpy()).all()


def test_evaluations_use_the_exact_version_and_land_in_duckdb(chain: Chain) -> None:
    uri = chain.metadata("calliper_model")["model_uri"]
    luc = chain.metadata("land_use_evaluation")
    sdm = chain.metadata("socioeconomic_evaluation")
    assert luc["model_uri"] == sdm["model_uri"] == uri
    assert 0.0 <= luc["luc_mlp_f1"] <= 1.0 and sdm["sdm_mlp_kl"] >= 0.0
    assert luc["results_table"].startswith("![luc results](data:image/png;base64,")
    # the preview puts our headline metric beside the best baseline's (cached rows included)
    assert "random split: ours **" in luc["preview"] and "best baseline (" in luc["preview"]
    assert "n/a" not in luc["preview"] + sdm["preview"]
    with chain.resources["duckdb"].connect(CITY, read_only=True) as con:
        rows = con.execute(
            f"SELECT task, count(*) FROM {EVALUATION_TABLE} WHERE city = ? AND model_version = '1' "
            "GROUP BY task ORDER BY task",
            [CITY],
        ).fetchall()
    assert rows == [("luc", 16), ("sdm", 12)]  # 2 protocols x 2 probes x (4 LUC | 3 SDM metrics)


def test_champion_gate_records_its_decision(chain: Chain) -> None:
    meta = chain.metadata("calliper_champion")
    assert meta["decision"] == "promoted" and meta["checks_passed"] is True
    assert meta["aliases"] == "candidate, champion" and meta["champion_version"] == "1"
    assert meta["preview"].startswith(f"**promoted**: `calliper_{CITY}` v1 holds candidate")
    assert meta["metric"] == "luc.mlp.f1"
    luc = chain.metadata("land_use_evaluation")
    assert meta["candidate_score"] == pytest.approx(luc["luc_mlp_f1"])
    aliases = chain.tracking.client().get_registered_model(f"calliper_{CITY}").aliases
    assert {k: str(v) for k, v in aliases.items()} == {"candidate": "1", "champion": "1"}


def test_embedding_maps_are_attached_and_written(chain: Chain) -> None:
    from PIL import Image

    meta = chain.metadata("embedding_maps")
    # no queries configured: the synthetic city's three most common categories
    with chain.resources["duckdb"].connect(CITY, read_only=True) as con:
        pois = store.read_city_pois(con, CITY)  # the second run changed one POI of 1,200
    top = pois["category"].value_counts().index[:3].str.lower().tolist()
    assert [q.split(",")[0] for q in meta["queries"]] == [f"A place of {c}" for c in top]
    names = [k for k in meta if k.startswith(("cluster_map", "pca_colour_map", "retrieval/"))]
    assert len(names) == 2 + 3 and all(meta[k].startswith("![") for k in names)
    assert sum(k.startswith("top_cells/") for k in meta) == 3
    folder = Path(meta["folder"])
    for png in ("cluster_map.png", "pca.png"):
        with Image.open(folder / png) as img:
            assert img.width == 600
    assert meta["n_cells"] > 1000


def test_region_embeddings_are_the_models_embeddings_of_the_map_cells(chain: Chain) -> None:
    import geopandas as gpd

    meta = chain.metadata("region_embeddings")
    model_uri = chain.metadata("calliper_model")["model_uri"]
    path = Path(meta["path"])
    assert path == chain.root / "home" / "outputs" / CITY / "regions" / f"{CITY}_cells_v1.parquet"
    cells = gpd.read_parquet(path)
    assert cells.crs is not None and cells.crs.to_epsg() == 4326
    emb_cols = [c for c in cells.columns if re.fullmatch(r"e\d{3}", c)]
    assert meta["dimension"] == len(emb_cols) > 0 and meta["model_uri"] == model_uri
    # the same cells as the maps: the synthetic city's box clipped to its POIs' outline
    assert meta["dagster/row_count"] == len(cells) == chain.metadata("embedding_maps")["n_cells"]
    pyfunc = serving.load_pyfunc(chain.tracking, model_uri)
    expected = serving.predict_embeddings(pyfunc, cells[["lon", "lat"]], allow_outside=True)
    np.testing.assert_allclose(
        cells[emb_cols].to_numpy(), expected.to_numpy(), rtol=1e-6, atol=1e-6
    )
    assert meta[PREVIEW].startswith(f"**{len(cells):,} cells x {len(emb_cols)}**")


def test_a_city_without_evaluation_sets_skips_cleanly(chain: Chain) -> None:
    result = dg.materialize(
        chain.all_defs(), partition_key=PLAIN, resources=chain.resources,
        instance=chain.instance, selection=[dg.AssetKey("land_use_evaluation")],
    )  # fmt: skip
    (event,) = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert meta["skipped"] is True and "no land-use classification set" in meta["reason"]


def _every_metadata(chain: Chain) -> list[tuple[str, dict[str, dg.MetadataValue]]]:
    """(asset or check name, metadata) of every materialisation and check of both runs."""
    out = []
    for result in (chain.first, chain.second):
        for event in result.get_asset_materialization_events():
            mat = event.materialization
            out.append((mat.asset_key.to_user_string(), dict(mat.metadata)))
        for check in result.get_asset_check_evaluations():
            out.append((check.check_name, dict(check.metadata)))
    return out


def test_metadata_keys_are_short_and_floats_rounded(chain: Chain) -> None:
    entries = _every_metadata(chain)
    assert len(entries) >= len(CHAIN_ASSETS) + 7
    long_keys = [(name, k) for name, meta in entries for k in meta if len(k) > MAX_KEY_LEN]
    assert long_keys == []
    floats = [
        (name, k, v.value)
        for name, meta in entries
        for k, v in meta.items()
        if isinstance(v, dg.FloatMetadataValue) and v.value is not None
    ]
    assert len(floats) > 20
    digits = SIGNIFICANT_DIGITS
    unrounded = [f for f in floats if np.isfinite(f[2]) and f[2] != float(f"{f[2]:.{digits}g}")]
    assert unrounded == []


def test_every_materialisation_leads_with_a_short_preview(chain: Chain) -> None:
    client = chain.tracking.client()
    images = []
    for name, meta in _every_metadata(chain):
        if name not in CHAIN_ASSETS:
            continue  # checks
        first_key, first = next(iter(meta.items()))
        assert first_key == PREVIEW, name
        assert isinstance(first, dg.MarkdownMetadataValue)
        assert 0 < len(first.value) < MAX_INLINE_MD, name  # the UI renders it in place
        images += re.findall(r"!\[[^]]*\]\(([^)]+)\)", first.value)
    # training curve, LUC and SDM tables, cluster map: served by the MLflow UI from the run
    assert len(images) == 4
    for url in images:
        parsed = urlparse(url)
        assert f"{parsed.scheme}://{parsed.netloc}" == LOCAL_MLFLOW_UI
        assert parsed.path == "/get-artifact"
        query = parse_qs(parsed.query)
        (path,), (run_id,) = query["path"], query["run_uuid"]
        folder = path.rsplit("/", 1)[0]
        assert path in {a.path for a in client.list_artifacts(run_id, folder)}, url


def test_embedded_pngs_are_small_thumbnails(chain: Chain) -> None:
    pngs = {
        (name, k): v.value
        for name, meta in _every_metadata(chain)
        for k, v in meta.items()
        if isinstance(v, dg.MarkdownMetadataValue) and "data:image/png;base64," in v.value
    }
    # curve, 2 result tables, cluster map, PCA map, a heatmap for each of the city's three
    # most common categories
    assert len(pngs) == 8
    assert all(len(md) < 150_000 for md in pngs.values()), {k: len(v) for k, v in pngs.items()}


def _materialise(chain: Chain, names: list[str], **evaluation: Any) -> dg.ExecuteInProcessResult:
    """Materialise ``names`` again for the synthetic city with the tiny settings (probe
    settings changed by ``evaluation``)."""
    ops = tiny_run_config()["ops"]
    config = {"ops": {n: ops[n] for n in names if n in ops}}
    for name in names:
        if evaluation and "evaluation" in name:
            config["ops"][name]["config"] = {**config["ops"][name]["config"], **evaluation}
    result = dg.materialize(
        chain.all_defs(), partition_key=CITY, resources=chain.resources, instance=chain.instance,
        selection=[dg.AssetKey(n) for n in names], run_config=config,
    )  # fmt: skip
    assert result.success
    return result


def test_evaluations_and_maps_are_cached_on_their_inputs(chain: Chain) -> None:
    """Same version, evaluation file and probe settings: the probes are skipped; the snapshot
    changed after the first run, so the maps (keyed on it) are redrawn once, then reused; other
    probe seeds are a miss. (Runs last: it materialises the graph again.)"""
    luc, maps = "land_use_evaluation", "embedding_maps"
    first_luc, first_maps = chain.metadata(luc), chain.metadata(maps)
    assert first_luc["cache_hit"] is False and first_maps["cache_hit"] is False
    assert "probe" in first_luc["cache_covers"] and "snapshot" in first_maps["cache_covers"]

    regions, texts = "region_embeddings", "text_embeddings"
    again = _materialise(chain, [luc, maps, regions, texts])
    again_luc, again_maps = chain.metadata(luc, again), chain.metadata(maps, again)
    assert chain.metadata(texts, again)["cache_hit"] is True  # every text already embedded
    again_regions = chain.metadata(regions, again)
    assert again_regions["cache_hit"] is False  # a new snapshot: the file is written again
    assert "snapshot" in again_regions["cache_covers"]
    assert again_luc["cache_hit"] is True and again_luc["cache_key"] == first_luc["cache_key"]
    assert again_luc["luc_mlp_f1"] == first_luc["luc_mlp_f1"]
    assert again_luc["results_table"] == first_luc["results_table"]
    assert again_maps["cache_hit"] is False  # change_one_poi gave a new snapshot hash
    assert again_maps["cache_key"] != first_maps["cache_key"]

    third_run = _materialise(chain, [maps, regions])
    third = chain.metadata(maps, third_run)
    assert third["cache_hit"] is True and third["cache_key"] == again_maps["cache_key"]
    third_regions = chain.metadata(regions, third_run)
    assert third_regions["cache_hit"] is True
    assert third_regions["cache_key"] == again_regions["cache_key"]
    assert third["cluster_map"] == again_maps["cluster_map"]
    tops = sorted(k for k in third if k.startswith("top_cells/"))
    assert len(tops) == 3 and [third[k] for k in tops] == [again_maps[k] for k in tops]
    assert (Path(third["folder"]) / "cluster_map.png").is_file()

    other = chain.metadata(luc, _materialise(chain, [luc], seeds=[7]))
    assert other["cache_hit"] is False and other["cache_key"] != first_luc["cache_key"]
