"""Region embeddings (GeoParquet of a city's cells) and ``calliper embed`` on geo inputs, with a
tiny model registered in a temporary SQLite MLflow store (British National Grid, EPSG:27700).

The city has only WGS84 bounds (inner London) and L-shaped POIs, so its cells are clipped to
the POIs' outline; every embedding is compared with the registered pyfunc's own ``predict``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from calliper_pipeline.cities.cells import city_cells, poi_outline_m
from calliper_pipeline.cities.geo import project
from calliper_pipeline.cities.spec import CitySpec, ColumnMap, SnapshotSpec
from calliper_pipeline.errors import ModelInputError
from calliper_pipeline.steps.regions import cached_region_embeddings, write_region_embeddings
from calliper_pipeline.tracking.geofiles import file_metadata, is_geo_input
from calliper_pipeline.tracking.registry import RegisteredVersion
from calliper_pipeline.tracking.runs import TrackingConfig
from calliper_pipeline.tracking.serving import embed_file, load_pyfunc
from jobs.cli.parser import main
from tests.support.models import register_champion

KEY = "inner"
BNG = 27700
DIM = 128  # tiny_model's embedding width
L_ORIGIN_M = (524_000.0, 176_000.0)  # BNG metres, inside TINY_BOUNDS_M
TOL = {"rtol": 1e-6, "atol": 1e-6}


@dataclass
class Registered:
    home: Path
    tracking: TrackingConfig
    version: RegisteredVersion
    city: CitySpec
    pois: pd.DataFrame


def _l_shaped_pois() -> pd.DataFrame:
    """POIs (WGS84) filling an L of 6 km x 6 km; its upper-right 3 km x 3 km holds none."""
    xy = np.random.default_rng(3).uniform(0, 6_000, size=(2_000, 2))
    xy = xy[(xy[:, 0] < 3_000) | (xy[:, 1] < 3_000)] + L_ORIGIN_M
    lon, lat = project(xy[:, 0], xy[:, 1], BNG, 4326)
    return pd.DataFrame({"lon": lon, "lat": lat})


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Registered:
    home = tmp_path_factory.mktemp("home")
    tracking, version = register_champion(home, KEY, seed=5)
    lon, lat = project(
        np.array([523_000.0, 531_000.0]), np.array([175_000.0, 183_000.0]), BNG, 4326
    )
    city = CitySpec(
        key=KEY,
        name="Inner",
        snapshot=SnapshotSpec(path="x.csv", columns=ColumnMap(category="c", lon="lon", lat="lat")),
        metric_epsg=BNG,
        bounds_wgs84=(float(lon[0]), float(lat[0]), float(lon[1]), float(lat[1])),
    )
    return Registered(home, tracking, version, city, _l_shaped_pois())


def _predict(reg: Registered, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    pyfunc = load_pyfunc(reg.tracking, reg.version.model_uri)
    out = pyfunc.predict(pd.DataFrame({"lon": lon, "lat": lat}), params={"allow_outside": True})
    return np.asarray(out.to_numpy(), np.float32)


def test_region_embeddings_read_back_as_geoparquet(reg: Registered, tmp_path: Path) -> None:
    out = write_region_embeddings(
        reg.city, tmp_path, reg.version, reg.tracking, tmp_path / "regions", reg.pois
    )
    assert out.path == tmp_path / "regions" / f"{KEY}_cells_v1.parquet"
    assert not list(out.path.parent.glob("*.tmp"))
    assert is_geo_input(out.path)
    gdf = gpd.read_parquet(out.path)
    assert gdf.crs is not None and gdf.crs.to_epsg() == 4326
    emb_cols = [f"e{i:03d}" for i in range(DIM)]
    assert list(gdf.columns) == ["cell_id", "lon", "lat", *emb_cols, "geometry"]
    assert (gdf.geometry.geom_type == "Polygon").all()
    cells, _ = city_cells(reg.city, tmp_path, BNG, reg.pois)
    assert len(gdf) == len(cells) == out.n_cells and out.dim == DIM
    full_box = city_cells(reg.city, tmp_path, BNG, None)[0]
    assert len(gdf) < len(full_box)  # clipped to the POIs' outline
    hull = poi_outline_m(reg.pois["lon"].to_numpy(), reg.pois["lat"].to_numpy(), BNG)
    centres = gdf.geometry.to_crs(BNG).centroid
    assert shapely.contains(hull, centres.to_numpy()).all()
    np.testing.assert_array_equal(gdf["cell_id"], np.arange(len(gdf)))
    np.testing.assert_allclose(gdf["lon"], cells["lon"], rtol=0, atol=1e-9)
    expected = _predict(reg, cells["lon"].to_numpy(), cells["lat"].to_numpy())
    assert gdf[emb_cols].dtypes.eq(np.float32).all()
    np.testing.assert_allclose(gdf[emb_cols].to_numpy(), expected, **TOL)
    meta = file_metadata(out.path)
    assert meta["model_uri"] == f"models:/calliper_{KEY}/1"
    assert (meta["model_version"], meta["geometry_epsg"], meta["metric_epsg"]) == ("1", 4326, BNG)
    assert meta["embedding_dim"] == DIM
    assert list(out.preview.columns) == ["cell_id", "lon", "lat", "e000", "e001", "e002", "e003"]


def test_region_file_is_kept_while_its_inputs_are_unchanged(
    reg: Registered, tmp_path: Path
) -> None:
    pois = reg.pois.assign(snapshot_hash="snap-a")
    out_dir = tmp_path / "regions"
    args = (reg.city, tmp_path, reg.version, reg.tracking, out_dir)
    first = cached_region_embeddings(*args, pois)
    assert not first.hit and first.outcome.path.is_file()
    assert file_metadata(first.outcome.path)["cache_key"] == first.key
    assert {"model_uri", "run_id", "snapshot", "layers", "code"} <= set(first.covers)
    mtime = first.outcome.path.stat().st_mtime_ns
    again = cached_region_embeddings(*args, pois)
    assert again.hit and again.key == first.key
    assert again.outcome.path.stat().st_mtime_ns == mtime  # not rewritten
    assert (again.outcome.n_cells, again.outcome.dim) == (first.outcome.n_cells, DIM)
    pd.testing.assert_frame_equal(again.outcome.preview, first.outcome.preview)
    # another snapshot (the POIs outline the cells) or another run of the version: rewritten
    changed = cached_region_embeddings(*args, pois.assign(snapshot_hash="snap-b"))
    assert not changed.hit and changed.key != first.key
    other_run = replace(reg.version, run_id="another-run")
    moved = cached_region_embeddings(
        reg.city, tmp_path, other_run, reg.tracking, out_dir, pois.assign(snapshot_hash="snap-b")
    )
    assert not moved.hit and moved.key not in (first.key, changed.key)
    # a file written without a key (older code) is rewritten once, then kept
    write_region_embeddings(*args, pois)
    assert not cached_region_embeddings(*args, pois).hit
    assert cached_region_embeddings(*args, pois).hit


def test_embed_geojson_points_and_geoparquet_polygons(reg: Registered, tmp_path: Path) -> None:
    uri = reg.version.model_uri
    # points in British National Grid metres: embedded at their own location
    xy = np.array([[525_000.0, 177_000.0], [526_500.0, 178_250.0], [524_100.0, 181_000.0]])
    points = gpd.GeoDataFrame(
        {"site": ["a", "b", "c"], "n": [1, 2, 3]},
        geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]),
        crs=f"EPSG:{BNG}",
    )
    src, dst = tmp_path / "sites.geojson", tmp_path / "sites_emb.parquet"
    points.to_file(src, driver="GeoJSON")
    tracking_uri = reg.tracking.tracking_uri
    status = main(["embed", "--model", uri, "--input", str(src), "--output", str(dst),
                   "--tracking-uri", tracking_uri])  # fmt: skip
    assert status == 0
    got = gpd.read_parquet(dst)
    assert got.crs.to_epsg() == BNG  # the input's CRS, geometry unchanged
    assert list(got.columns[:3]) == ["site", "n", "geometry"]
    assert list(got.columns[3:6]) == ["embed_lon", "embed_lat", "embed_location"]
    assert got["site"].tolist() == ["a", "b", "c"] and got["n"].tolist() == [1, 2, 3]
    assert got.geometry.geom_equals_exact(points.geometry, tolerance=1e-6).all()
    assert (got["embed_location"] == "point").all()
    lon, lat = project(xy[:, 0], xy[:, 1], BNG, 4326)
    np.testing.assert_allclose(got["embed_lon"], lon, rtol=0, atol=1e-9)
    emb_cols = [f"e{i:03d}" for i in range(DIM)]
    np.testing.assert_allclose(got[emb_cols].to_numpy(), _predict(reg, lon, lat), **TOL)

    # polygons (the region file's hexagons, EPSG:4326): embedded at their centroid taken in
    # EPSG:27700, i.e. exactly the region file's cell centroids and embeddings
    region = write_region_embeddings(
        reg.city, tmp_path, reg.version, reg.tracking, tmp_path / "regions", reg.pois
    )
    cells = gpd.read_parquet(region.path)
    polygons = cells[["cell_id", "geometry"]].head(40)
    poly_src, poly_dst = tmp_path / "hex.parquet", tmp_path / "hex_emb.parquet"
    polygons.to_parquet(poly_src)
    n = embed_file(uri, poly_src, poly_dst, batch_size=16, show_progress=False,
                   tracking=reg.tracking)  # fmt: skip
    assert n == 40
    got = gpd.read_parquet(poly_dst)
    assert got.crs.to_epsg() == 4326 and got["cell_id"].tolist() == list(range(40))
    assert (got["embed_location"] == f"centroid EPSG:{BNG}").all()
    # the same centroids up to the EPSG:27700 <-> 4326 round trip of the vertices (~1 mm)
    np.testing.assert_allclose(got["embed_lon"], cells["lon"].head(40), rtol=0, atol=1e-7)
    np.testing.assert_allclose(got["embed_lat"], cells["lat"].head(40), rtol=0, atol=1e-7)
    np.testing.assert_allclose(got[emb_cols], cells[emb_cols].head(40), rtol=1e-4, atol=1e-5)
    lon, lat = got["embed_lon"].to_numpy(), got["embed_lat"].to_numpy()
    np.testing.assert_allclose(got[emb_cols].to_numpy(), _predict(reg, lon, lat), **TOL)
    assert file_metadata(poly_dst)["model_uri"] == uri


def test_embed_geo_input_errors(reg: Registered, tmp_path: Path) -> None:
    uri, kw = reg.version.model_uri, {"show_progress": False, "tracking": reg.tracking}
    pts = gpd.GeoDataFrame(
        {"e000": [1.0]}, geometry=gpd.points_from_xy([-0.1], [51.5]), crs="EPSG:4326"
    )
    src = tmp_path / "clash.geojson"
    pts.to_file(src, driver="GeoJSON")
    with pytest.raises(ModelInputError, match=r"clash.geojson: columns clash .*e000"):
        embed_file(uri, src, tmp_path / "out.parquet", **kw)
    with pytest.raises(ModelInputError, match=r"out.csv: a geo input is written as GeoParquet"):
        embed_file(uri, src, tmp_path / "out.csv", **kw)
    far = gpd.GeoDataFrame(
        {"name": ["london", "manchester"]},
        geometry=gpd.points_from_xy([-0.1, -2.24], [51.5, 53.48]),
        crs="EPSG:4326",
    )
    far_src = tmp_path / "far.geojson"
    far.to_file(far_src, driver="GeoJSON")
    with pytest.raises(ModelInputError, match=r"far.geojson: .*\b1\b"):  # names row 1
        embed_file(uri, far_src, tmp_path / "far.parquet", **kw)
    assert not (tmp_path / "far.parquet").exists()
    no_crs = tmp_path / "nocrs.parquet"
    gpd.GeoDataFrame({"a": [1]}, geometry=gpd.points_from_xy([-0.1], [51.5])).to_parquet(no_crs)
    with pytest.raises(ModelInputError, match=r"nocrs\.parquet: the geometry has no CRS"):
        embed_file(uri, no_crs, tmp_path / "x.parquet", **kw)
