"""A small deterministic synthetic city, for tests and demos of every stage of the pipeline.

:func:`make_synthetic_city` writes, under ``root``:

- ``pois.<ext>``: a POI snapshot with columns ``poi_id, name, category, group, lon, lat,
  is_duplicate`` (GeoJSON / GeoParquet carry lon/lat as point geometry instead; JSON lines
  has one object per row, missing values as null). POIs are
  planted around :data:`CLUSTERS` (each with its own dominant categories) centred on
  lon 10.0, lat 50.0, so the city's automatic metric CRS is UTM zone 32N (EPSG:32632); a tenth
  are scattered uniformly as background. About half have names; ``"post box"`` POIs have no
  group, which exercises the group-less description.
- ``landuse.geojson`` (EPSG:32632): points whose ``landuse_id`` / ``landuse`` is the nearest
  cluster, like London's land-use sample (``loc_id`` too).
- ``lsoa.geojson`` (EPSG:32632): a grid of points with ``lsoa21cd``, ``lsoa21nm`` and nine
  proportions ``ns-sec_1..9`` (summing to 1) that vary smoothly with position.
- ``<key>.toml``: the returned CitySpec as a city file (absolute paths), for
  :func:`cities.load_city_registry`'s ``extra_paths``.

There is no boundary file: the city's extent is ``bounds_wgs84``. With ``bad_rows=True``,
rows that must be quarantined (:data:`BAD_ROWS`, by reason) and rows removed by the
``is_duplicate = false`` filter (:data:`FILTERED_ROWS`) are appended after the ``n_pois`` good
rows, so a clean ingest always yields exactly ``n_pois`` valid POIs. The same ``seed`` gives
the same POIs in every format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from calliper_pipeline.cities.geo import project
from calliper_pipeline.cities.spec import (
    CitySpec,
    ColumnMap,
    EvaluationSpec,
    SnapshotSpec,
    SourceSpec,
)
from calliper_pipeline.constants import WGS84_EPSG
from calliper_pipeline.ingest.validate import (
    REASON_DUPLICATE_ID,
    REASON_MISSING_CATEGORY,
    REASON_MISSING_COORDINATES,
    REASON_OUTSIDE_BOUNDS,
)

CENTRE_WGS84: Final = (10.0, 50.0)  # lon, lat degrees
METRIC_EPSG: Final = 32632  # UTM 32N, what resolve_metric_epsg picks for the centre
HALF_SIZE_DEG: Final = (0.12, 0.08)  # bounds_wgs84 half-width (lon), half-height (lat): ~9 km
POI_HALF_EXTENT_M: Final = 7_500.0  # POIs and evaluation points lie within +-this of the centre
BACKGROUND_SHARE: Final = 0.1  # POIs scattered uniformly instead of planted in a cluster
DOMINANT_SHARE: Final = 0.85  # a cluster's POIs drawn from its own categories
NAMED_SHARE: Final = 0.5
SNAPSHOT_FORMATS: Final = ("csv", "csv.gz", "geojson", "parquet", "geoparquet", "jsonl", "jsonl.gz")


@dataclass(frozen=True)
class Cluster:
    """A planted cluster: its land-use label, centre offset from the city centre, spread."""

    name: str
    offset_m: tuple[float, float]  # (east, north) metres from CENTRE_WGS84
    sigma_m: float  # standard deviation of the isotropic Gaussian, metres
    categories: tuple[tuple[str, str | None], ...]  # (category, group) drawn uniformly


CLUSTERS: Final = (
    Cluster(
        "old town",
        (0.0, 0.0),
        700.0,
        (
            ("Restaurant", "Eating and drinking"),
            ("Cafe", "Eating and drinking"),
            ("Pub", "Eating and drinking"),
            ("Museum", "Entertainment and culture"),
        ),
    ),
    Cluster(
        "transport hub",
        (4000.0, 2500.0),
        500.0,
        (
            ("Bus stop", "Public transport"),
            ("Railway station", "Public transport"),
            ("Car park", "Parking and road services"),
        ),
    ),
    Cluster(
        "retail park",
        (-4000.0, 3000.0),
        600.0,
        (
            ("Supermarket", "Retail"),
            ("Convenience store", "Retail"),
            ("DIY store", "Retail"),
        ),
    ),
    Cluster(
        "campus",
        (-3000.0, -3500.0),
        600.0,
        (
            ("University", "Education"),
            ("Primary school", "Education"),
            ("Library", "Education"),
        ),
    ),
    Cluster(
        "leisure park",
        (3500.0, -3500.0),
        800.0,
        (
            ("Playground", "Sport and recreation"),
            ("Sports centre", "Sport and recreation"),
            ("Post box", None),
        ),
    ),
)
ALL_CATEGORIES: Final = tuple(c for cluster in CLUSTERS for c in cluster.categories)

# Appended by bad_rows=True: quarantine reason -> rows, and rows the is_duplicate filter drops.
BAD_ROWS: Final = {
    REASON_MISSING_COORDINATES: 2,
    REASON_OUTSIDE_BOUNDS: 2,
    REASON_MISSING_CATEGORY: 2,
    REASON_DUPLICATE_ID: 2,
}
FILTERED_ROWS: Final = 3
NS_SEC_CLASSES: Final = 9


def bounds_wgs84() -> tuple[float, float, float, float]:
    """The synthetic city's (min_lon, min_lat, max_lon, max_lat)."""
    (lon, lat), (dlon, dlat) = CENTRE_WGS84, HALF_SIZE_DEG
    return (lon - dlon, lat - dlat, lon + dlon, lat + dlat)


def centre_m() -> tuple[float, float]:
    """The city centre in metres of EPSG:32632."""
    x, y = project(np.array([CENTRE_WGS84[0]]), np.array([CENTRE_WGS84[1]]), 4326, METRIC_EPSG)
    return float(x[0]), float(y[0])


def cluster_centres_m() -> np.ndarray:
    """(n_clusters, 2) cluster centres in metres of EPSG:32632."""
    cx, cy = centre_m()
    return np.array([(cx + c.offset_m[0], cy + c.offset_m[1]) for c in CLUSTERS])


def _to_wgs84(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = project(xy[:, 0], xy[:, 1], METRIC_EPSG, WGS84_EPSG)
    return np.round(lon, 7), np.round(lat, 7)  # ~1 cm; keeps every format's round trip exact


def _uniform_points(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.asarray(centre_m()) + rng.uniform(-POI_HALF_EXTENT_M, POI_HALF_EXTENT_M, (n, 2))


def _good_pois(n_pois: int, rng: np.random.Generator) -> pd.DataFrame:
    n_background = round(n_pois * BACKGROUND_SHARE)
    cluster_of = rng.integers(0, len(CLUSTERS), n_pois - n_background)
    centres = cluster_centres_m()
    sigmas = np.array([c.sigma_m for c in CLUSTERS])
    planted = centres[cluster_of] + rng.normal(size=(len(cluster_of), 2)) * sigmas[cluster_of, None]
    xy = np.vstack([planted, _uniform_points(rng, n_background)])
    lo = np.asarray(centre_m()) - POI_HALF_EXTENT_M
    xy = np.clip(xy, lo, lo + 2 * POI_HALF_EXTENT_M)

    own = rng.random(n_pois) < DOMINANT_SHARE
    own[len(cluster_of) :] = False  # background POIs draw from every category
    pick_all = rng.integers(0, len(ALL_CATEGORIES), n_pois)
    pick_own = rng.random(n_pois)  # scaled to the cluster's number of categories below
    cats = []
    for i in range(n_pois):
        if own[i]:
            options = CLUSTERS[cluster_of[i]].categories
            cats.append(options[int(pick_own[i] * len(options))])
        else:
            cats.append(ALL_CATEGORIES[pick_all[i]])
    named = rng.random(n_pois) < NAMED_SHARE
    lon, lat = _to_wgs84(xy)
    return pd.DataFrame(
        {
            "poi_id": [f"syn:{i:05d}" for i in range(n_pois)],
            "name": [f"{c[0]} {i}" if named[i] else None for i, c in enumerate(cats)],
            "category": [c[0] for c in cats],
            "group": [c[1] for c in cats],
            "lon": lon,
            "lat": lat,
            "is_duplicate": False,
        }
    )


def _bad_rows(good: pd.DataFrame) -> pd.DataFrame:
    """Rows that the ingest must quarantine (BAD_ROWS) or filter out (FILTERED_ROWS)."""
    lon0, lat0 = CENTRE_WGS84
    far_lon = bounds_wgs84()[2] + 0.5
    rows = []
    for i in range(BAD_ROWS[REASON_MISSING_COORDINATES]):
        rows.append((f"bad:nan:{i}", None, "Cafe", "Eating and drinking", np.nan, lat0, False))
    for i in range(BAD_ROWS[REASON_OUTSIDE_BOUNDS]):
        rows.append((f"bad:out:{i}", None, "Cafe", "Eating and drinking", far_lon, lat0, False))
    for i in range(BAD_ROWS[REASON_MISSING_CATEGORY]):
        rows.append((f"bad:cat:{i}", None, "", "Retail", lon0, lat0, False))
    for i in range(BAD_ROWS[REASON_DUPLICATE_ID]):
        rows.append(
            (str(good["poi_id"].iloc[i]), None, "Pub", "Eating and drinking", lon0, lat0, False)
        )
    for i in range(FILTERED_ROWS):
        rows.append((f"dup:{i}", None, "Cafe", "Eating and drinking", lon0, lat0, True))
    return pd.DataFrame(rows, columns=list(good.columns))


def _write_snapshot(df: pd.DataFrame, root: Path, fmt: str) -> Path:
    import geopandas as gpd

    path = root / f"pois.{fmt}"
    if fmt in ("csv", "csv.gz"):
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    elif fmt in ("jsonl", "jsonl.gz"):  # one object per line; missing values are null
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        has_xy = df["lon"].notna() & df["lat"].notna()
        geometry = gpd.points_from_xy(df["lon"], df["lat"])
        geometry[~has_xy.to_numpy()] = None
        gdf = gpd.GeoDataFrame(df.drop(columns=["lon", "lat"]), geometry=geometry, crs=WGS84_EPSG)
        if fmt == "geojson":
            gdf.to_file(path, driver="GeoJSON")
        else:
            gdf.to_parquet(path, index=False)
    return path


def _write_points(df: pd.DataFrame, xy: np.ndarray, path: Path) -> Path:
    import geopandas as gpd

    geometry = gpd.points_from_xy(xy[:, 0], xy[:, 1])
    gpd.GeoDataFrame(df, geometry=geometry, crs=METRIC_EPSG).to_file(path, driver="GeoJSON")
    return path


def _write_landuse(root: Path, rng: np.random.Generator, n: int) -> Path:
    xy = _uniform_points(rng, n)
    dist = np.linalg.norm(xy[:, None, :] - cluster_centres_m()[None, :, :], axis=2)
    label = dist.argmin(axis=1)
    df = pd.DataFrame(
        {
            "landuse": [CLUSTERS[k].name for k in label],
            "landuse_id": label.astype(np.int64),
            "loc_id": np.arange(n, dtype=np.int64),
        }
    )
    return _write_points(df, xy, root / "landuse.geojson")


def _write_lsoa(root: Path, rng: np.random.Generator, side: int) -> Path:
    """A side x side grid; softmax of linear functions of position gives the 9 proportions."""
    ticks = np.linspace(-POI_HALF_EXTENT_M, POI_HALF_EXTENT_M, side)
    gx, gy = np.meshgrid(ticks, ticks)
    rel = np.column_stack([gx.ravel(), gy.ravel()])
    weights = rng.normal(size=(2, NS_SEC_CLASSES))
    logits = (rel / POI_HALF_EXTENT_M) @ weights
    share = np.exp(logits - logits.max(axis=1, keepdims=True))
    share /= share.sum(axis=1, keepdims=True)
    df = pd.DataFrame(share, columns=[f"ns-sec_{k + 1}" for k in range(NS_SEC_CLASSES)])
    df.insert(0, "lsoa21nm", [f"Synthetic {i:04d}" for i in range(len(df))])
    df.insert(0, "lsoa21cd", [f"S{i:08d}" for i in range(len(df))])
    return _write_points(df, np.asarray(centre_m()) + rel, root / "lsoa.geojson")


def _city_toml(city: CitySpec) -> str:
    """The spec as a city TOML file (JSON string escapes are valid TOML basic strings)."""
    q = json.dumps
    snap, cols = city.snapshot, city.snapshot.columns
    lines = [f"key = {q(city.key)}", f"name = {q(city.name)}"]
    lines.append(f"bounds_wgs84 = [{', '.join(repr(v) for v in city.bounds_wgs84 or ())}]")
    lines.append(f"attribution = {q(city.attribution)}")
    lines += ["", "[snapshot]", f"path = {q(snap.path)}", f"format = {q(snap.format)}"]
    lines.append("filters = { is_duplicate = false }")
    lines += ["", "[snapshot.columns]"]
    for fld in ("poi_id", "name", "category", "group", "lon", "lat"):
        lines.append(f"{fld} = {q(getattr(cols, fld))}")
    for src in city.sources:
        lines += ["", "[[sources]]", f"name = {q(src.name)}", f"path = {q(src.path)}"]
        lines += [f"format = {q(src.format)}", f"dedupe_within_m = {src.dedupe_within_m!r}"]
        lines.append(f"description_template = {q(src.description_template)}")
        lines.append("filters = { score = { min = 0.5 } }")
        lines += ["", "[sources.columns]"]
        for fld in ("poi_id", "name", "category", "lon", "lat"):
            lines.append(f"{fld} = {q(getattr(src.columns, fld))}")
    if city.evaluation is not None:
        lines += ["", "[evaluation]"]
        lines.append(f"landuse_path = {q(city.evaluation.landuse_path)}")
        lines.append(f"socioeconomic_path = {q(city.evaluation.socioeconomic_path)}")
    return "\n".join(lines) + "\n"


def make_synthetic_city(
    root: Path,
    n_pois: int = 2000,
    seed: int = 0,
    fmt: str = "csv",
    *,
    key: str = "synthetic",
    bad_rows: bool = False,
    evaluation: bool = True,
    n_landuse: int = 600,
    lsoa_grid_side: int = 20,
) -> CitySpec:
    """Write a synthetic city under ``root`` (created if needed) and return its CitySpec.

    Args:
        root: output folder; the returned spec's paths are absolute paths inside it.
        n_pois: valid POIs written (the bad rows of ``bad_rows`` come on top).
        seed: numpy seed; the same seed gives the same POIs and evaluation sets in every format.
        fmt: snapshot format, one of :data:`SNAPSHOT_FORMATS`.
        key: the city's key.
        bad_rows: append :data:`BAD_ROWS` (quarantined) and :data:`FILTERED_ROWS` rows.
        evaluation: also write the land-use and LSOA-like evaluation sets.
        n_landuse: land-use points.
        lsoa_grid_side: the LSOA-like set is a ``side x side`` grid of points.
    """
    if fmt not in SNAPSHOT_FORMATS:
        raise ValueError(f"fmt must be one of {SNAPSHOT_FORMATS}, got {fmt!r}")
    if n_pois < max(2, BAD_ROWS[REASON_DUPLICATE_ID]):
        raise ValueError("n_pois must be at least 2")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    pois = _good_pois(n_pois, np.random.default_rng(seed))
    if bad_rows:
        pois = pd.concat([pois, _bad_rows(pois)], ignore_index=True)
    snapshot_path = _write_snapshot(pois, root, fmt)
    spec_eval = None
    if evaluation:
        eval_rng = np.random.default_rng([seed, 1])
        spec_eval = EvaluationSpec(
            landuse_path=str(_write_landuse(root, eval_rng, n_landuse)),
            socioeconomic_path=str(_write_lsoa(root, eval_rng, lsoa_grid_side)),
        )
    city = CitySpec(
        key=key,
        name=f"Synthetic city ({key})",
        snapshot=SnapshotSpec(
            path=str(snapshot_path),
            columns=ColumnMap(
                poi_id="poi_id",
                name="name",
                category="category",
                group="group",
                lon="lon",
                lat="lat",
            ),
            format=fmt.removesuffix(".gz"),
            filters={"is_duplicate": False},
        ),
        bounds_wgs84=bounds_wgs84(),
        evaluation=spec_eval,
        attribution="synthetic data (tests.support.synthetic)",
    )
    (root / f"{key}.toml").write_text(_city_toml(city), encoding="utf-8")
    return city


#: The second source of :func:`add_second_source`: its name, template and de-dup distance.
SECOND_SOURCE: Final = "extra"
SECOND_TEMPLATE: Final = "A place of {category}, a type of extra place"
SECOND_DEDUPE_M: Final = 25.0


def add_second_source(
    city: CitySpec, root: Path, n_near: int = 5, n_new: int = 7, seed: int = 1
) -> tuple[CitySpec, dict[str, int]]:
    """Write ``root/extra.csv`` (columns ``id, label, title, lon, lat, score``) for ``city``.

    Rows, in order: ``n_near`` points 10 m east of the first valid POIs of the primary
    snapshot (dropped as near-duplicates), ``n_new`` points more than 100 m from every primary
    POI (kept; the first reuses the primary id ``syn:00000``), one row without a label
    (quarantined) and one with ``score`` 0.1 (filtered out by ``score >= 0.5``). Rewrites
    ``root/<key>.toml`` with the ``[[sources]]`` table.

    Returns:
        The city with the source appended, and the expected counts (``near``, ``new``,
        ``quarantined``, ``filtered``).
    """
    from scipy.spatial import cKDTree

    root = Path(root).resolve()
    primary = pd.read_csv(city.snapshot.path) if city.snapshot.format == "csv" else None
    if primary is None:
        raise ValueError("add_second_source needs a CSV primary snapshot")
    good = primary[~primary["poi_id"].astype(str).str.startswith("bad:")]
    x, y = project(good["lon"].to_numpy(), good["lat"].to_numpy(), WGS84_EPSG, METRIC_EPSG)
    primary_xy = np.column_stack([x, y])
    near = primary_xy[:n_near] + np.array([10.0, 0.0])
    rng = np.random.default_rng(seed)
    tree = cKDTree(primary_xy)
    new: list[np.ndarray] = []
    while len(new) < n_new:
        p = _uniform_points(rng, 1)[0]
        if tree.query(p)[0] > 100.0:
            new.append(p)
    xy = np.vstack([near, np.asarray(new), primary_xy[-1:] + 500.0, primary_xy[-1:] - 500.0])
    lon, lat = _to_wgs84(xy)
    n = len(xy)
    ids = [f"x{i}" for i in range(n)]
    ids[n_near] = "syn:00000"
    labels: list[str | None] = ["Bakery"] * n
    labels[-2] = None
    score = np.ones(n)
    score[-1] = 0.1
    df = pd.DataFrame(
        {"id": ids, "label": labels, "title": [f"Extra {i}" for i in range(n)]}
        | {"lon": lon, "lat": lat, "score": score}
    )
    path = root / "extra.csv"
    df.to_csv(path, index=False)
    source = SourceSpec(
        path=str(path),
        columns=ColumnMap(poi_id="id", name="title", category="label", lon="lon", lat="lat"),
        format="csv",
        filters={"score": {"min": 0.5}},
        name=SECOND_SOURCE,
        description_template=SECOND_TEMPLATE,
        dedupe_within_m=SECOND_DEDUPE_M,
    )
    out = replace(city, sources=(*city.sources, source))
    (root / f"{city.key}.toml").write_text(_city_toml(out), encoding="utf-8")
    return out, {"near": n_near, "new": n_new, "quarantined": 1, "filtered": 1}
