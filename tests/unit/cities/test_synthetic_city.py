"""The synthetic city generator (tests.support.synthetic): a valid city spec and snapshot, per
seed, with the clusters, bounds, bad rows and evaluation sets the other tests rely on."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest

from calliper_pipeline.cities.spec import load_city_file, load_city_registry
from calliper_pipeline.config import DescriptionConfig
from calliper_pipeline.ingest.ingest import ingest_city
from calliper_pipeline.ingest.readers import read_snapshot
from calliper_pipeline.ingest.validate import normalise_pois
from calliper_pipeline.store.db import connect
from tests.support import synthetic


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    city = synthetic.make_synthetic_city(root / "city", n_pois=1000, seed=3)
    raw = read_snapshot(Path(city.snapshot.path), city.snapshot)
    return city, normalise_pois(raw, city, root, DescriptionConfig(), "h")


def test_spec_paths_are_absolute_and_exist(made):
    city, _ = made
    paths = [city.snapshot.path, city.evaluation.landuse_path, city.evaluation.socioeconomic_path]
    for p in paths:
        assert Path(p).is_absolute() and Path(p).is_file()
    assert city.key == "synthetic" and city.boundary_path is None
    assert city.bounds_wgs84 == (9.88, 49.92, 10.12, 50.08)
    assert city.metric_epsg is None


def test_clean_city_ingests_exactly_n_pois_in_utm_32n(made):
    _, result = made
    r = result.report
    assert (r.rows_read, r.rows_valid, r.rows_quarantined, r.rows_filtered_out) == (
        1000,
        1000,
        0,
        0,
    )
    assert r.metric_epsg == synthetic.METRIC_EPSG == 32632


def test_deterministic_per_seed(tmp_path):
    a = synthetic.make_synthetic_city(tmp_path / "a", n_pois=100, seed=7)
    b = synthetic.make_synthetic_city(tmp_path / "b", n_pois=100, seed=7)
    c = synthetic.make_synthetic_city(tmp_path / "c", n_pois=100, seed=8)
    read = lambda city: Path(city.snapshot.path).read_bytes()  # noqa: E731
    assert read(a) == read(b) != read(c)
    for name in ("landuse.geojson", "lsoa.geojson"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_toml_round_trips_to_the_same_spec(tmp_path):
    city = synthetic.make_synthetic_city(tmp_path, n_pois=50, key="toy", fmt="parquet")
    assert load_city_file(tmp_path / "toy.toml") == city
    assert load_city_registry([tmp_path / "toy.toml"])["toy"] == city


def test_clusters_have_their_own_categories(made):
    _, result = made
    pois = result.pois
    xy = pois[["x_m", "y_m"]].to_numpy()
    for k, cluster in enumerate(synthetic.CLUSTERS):
        near = np.linalg.norm(xy - synthetic.cluster_centres_m()[k], axis=1) < cluster.sigma_m
        own = {c for c, _ in cluster.categories}
        share = pois.loc[near, "category"].isin(own).mean()
        assert near.sum() > 50 and share > 0.7, (cluster.name, near.sum(), share)


def test_names_and_groupless_rows(made):
    _, result = made
    pois = result.pois
    assert 0.4 < pois["name"].notna().mean() < 0.6
    groupless = pois["category_group"].isna()
    assert groupless.any()
    assert (pois.loc[groupless, "description"] == "A place of post box").all()


def test_all_pois_inside_the_bounds(made):
    _, result = made
    b = result.report.bounds_m
    pois = result.pois
    assert pois["x_m"].between(b[0], b[2]).all() and pois["y_m"].between(b[1], b[3]).all()


def test_landuse_label_is_the_nearest_cluster(made):
    city, _ = made
    land = gpd.read_file(city.evaluation.landuse_path)
    assert land.crs.to_epsg() == 32632
    assert {"landuse_id", "landuse", "loc_id"} <= set(land.columns)
    xy = np.column_stack([land.geometry.x, land.geometry.y])
    dist = np.linalg.norm(xy[:, None] - synthetic.cluster_centres_m()[None], axis=2)
    assert (land["landuse_id"].to_numpy() == dist.argmin(axis=1)).all()
    names = [synthetic.CLUSTERS[k].name for k in land["landuse_id"]]
    assert land["landuse"].tolist() == names
    assert land["landuse_id"].nunique() == len(synthetic.CLUSTERS)


def test_lsoa_proportions_sum_to_one_and_vary_smoothly(made):
    city, _ = made
    lsoa = gpd.read_file(city.evaluation.socioeconomic_path)
    assert lsoa.crs.to_epsg() == 32632
    cols = [f"ns-sec_{k}" for k in range(1, 10)]
    assert {"lsoa21cd", *cols} <= set(lsoa.columns)
    assert lsoa["lsoa21cd"].is_unique and len(lsoa) == 400
    shares = lsoa[cols].to_numpy()
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, atol=1e-9)
    grid = shares.reshape(20, 20, 9)
    step = np.abs(np.diff(grid, axis=1)).max()
    spread = shares.max(axis=0) - shares.min(axis=0)
    assert step < 0.1 < spread.max()  # neighbours close, the city as a whole varied


def test_bad_rows_counts(tmp_path):
    city = synthetic.make_synthetic_city(tmp_path, n_pois=100, bad_rows=True, evaluation=False)
    con = connect(tmp_path / "db.duckdb")
    report = ingest_city(con, city, tmp_path)
    assert report.rows_valid == 100
    assert report.quarantined_by == synthetic.BAD_ROWS
    assert report.rows_filtered_out == synthetic.FILTERED_ROWS
    assert not (tmp_path / "landuse.geojson").exists()


def test_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="fmt"):
        synthetic.make_synthetic_city(tmp_path, fmt="xlsx")
