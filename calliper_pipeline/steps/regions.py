"""Region embeddings: a city's hexagon cells with their location embeddings, as GeoParquet.

One file per registered model version, ``<CALLIPER_HOME>/outputs/<city>/regions/
<city>_cells_v<version>.parquet``: columns ``cell_id`` (int64, the row position of the map
cells), ``lon``/``lat`` (the cell centroid, WGS84 degrees, computed in the city's metric CRS),
float32 ``e000``... (what the registered pyfunc's ``predict`` returns for the centroid: raw, not
L2-normalised) and the hexagon ``geometry`` in EPSG:4326 (polygons; the CRS is written in the
GeoParquet ``geo`` metadata). The file's key-value metadata ``calliper`` holds the model name,
version and URI, the metric CRS, the cell size and the embedding dimension (JSON).

The file is written to ``<name>.tmp`` and renamed, so a reader never sees half a file.
:func:`cached_region_embeddings` keeps a file whose recorded ``cache_key`` (the version and its
run, the city file, the stored snapshot, the boundary and grid layers, this code) still
matches: nothing is re-embedded when nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from calliper_pipeline.cities.cells import COL_CELL_ID, DEFAULT_CELL_SIZE_M, city_cells
from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.constants import COL_LAT, COL_LON, WGS84_EPSG
from calliper_pipeline.steps.assess import Cached, layer_hashes, version_parts
from calliper_pipeline.tracking.geofiles import file_metadata, write_geoparquet
from calliper_pipeline.tracking.registry import RegisteredVersion
from calliper_pipeline.tracking.runs import TrackingConfig
from calliper_pipeline.tracking.serving import (
    calliper_model_of,
    load_pyfunc,
    predict_embeddings,
)

#: What computes a region file: its key's ``code`` part.
REGIONS_CODE = (
    "calliper_pipeline.steps.regions",
    "calliper_pipeline.cities",
    "calliper_pipeline.model",
    "calliper_pipeline.tracking.geofiles",
    "calliper_pipeline.tracking.serving",
)


@dataclass(frozen=True)
class RegionEmbeddings:
    """What :func:`write_region_embeddings` wrote."""

    path: Path
    n_cells: int
    dim: int
    model_uri: str
    metric_epsg: int
    preview: pd.DataFrame  # the first rows: cell_id, lon, lat, e000..e003


def region_path(out_dir: Path, city_key: str, version: str) -> Path:
    return Path(out_dir) / f"{city_key}_cells_v{version}.parquet"


def region_frame(pyfunc: Any, cells: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """``cell_id, lon, lat, e000..., geometry`` (EPSG:4326) of cells in a metric CRS.

    The centroids are embedded with ``allow_outside=True``: the cells are the city's own, and a
    boundary or grid may reach a little past the bounds the model was trained within.
    """
    centroids = pd.DataFrame({COL_LON: cells[COL_LON], COL_LAT: cells[COL_LAT]})
    emb = predict_embeddings(pyfunc, centroids.reset_index(drop=True), allow_outside=True)
    frame = pd.DataFrame(
        {
            COL_CELL_ID: cells[COL_CELL_ID].to_numpy(np.int64),
            COL_LON: centroids[COL_LON].to_numpy(np.float64),
            COL_LAT: centroids[COL_LAT].to_numpy(np.float64),
        }
    )
    frame = pd.concat([frame, emb.astype(np.float32).reset_index(drop=True)], axis=1)
    geometry = cells.geometry.to_crs(epsg=WGS84_EPSG).reset_index(drop=True)
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=f"EPSG:{WGS84_EPSG}")


def write_region_embeddings(
    city: CitySpec,
    data_root: Path,
    version: RegisteredVersion,
    tracking: TrackingConfig,
    out_dir: Path,
    pois: pd.DataFrame | None = None,
    cache_key: str | None = None,
) -> RegionEmbeddings:
    """Embed the city's map cells (:func:`~calliper_pipeline.cities.cells.city_cells`, so a
    bounds-only city's cells are clipped to its ``pois``' outline) with exactly ``version``."""
    pyfunc = load_pyfunc(tracking, version.model_uri)
    spec = calliper_model_of(pyfunc, version.model_uri).spec
    cells, _ = city_cells(city, data_root, spec.metric_epsg, pois)
    gdf = region_frame(pyfunc, cells)
    dim = gdf.shape[1] - 4  # cell_id, lon, lat, geometry
    extra = {
        "city": city.key,
        "model_name": version.name,
        "model_version": str(version.version),
        "model_uri": version.model_uri,
        "metric_epsg": int(spec.metric_epsg),
        "geometry_epsg": WGS84_EPSG,
        "cell_size_m": DEFAULT_CELL_SIZE_M,
        "embedding_dim": dim,
        "embedding": "raw pyfunc predict output of the cell centroid (not L2-normalised)",
    }
    if cache_key is not None:
        extra["cache_key"] = cache_key
    path = write_geoparquet(gdf, region_path(out_dir, city.key, version.version), extra)
    return _outcome(path, len(gdf), pd.DataFrame(gdf.drop(columns="geometry")), extra)


def _outcome(
    path: Path, n_cells: int, frame: pd.DataFrame, extra: dict[str, Any]
) -> RegionEmbeddings:
    """What a region file holds; ``frame``: at least its first rows (geometry dropped)."""
    dim = int(extra["embedding_dim"])
    shown = [COL_CELL_ID, COL_LON, COL_LAT, *frame.columns[3 : 3 + min(dim, 4)]]
    return RegionEmbeddings(
        path=path,
        n_cells=n_cells,
        dim=dim,
        model_uri=str(extra["model_uri"]),
        metric_epsg=int(extra["metric_epsg"]),
        preview=pd.DataFrame(frame[shown]).head(5),
    )


def region_cache_key(
    city: CitySpec, data_root: Path, version: RegisteredVersion, pois: pd.DataFrame | None
) -> tuple[str, tuple[str, ...]]:
    """(key, what it covers) of a region file: the version and its MLflow run, the city file,
    the stored snapshot (the POIs outline a bounds-only city's cells), the boundary and grid
    layers and :data:`REGIONS_CODE`."""
    from dataclasses import asdict

    from calliper_pipeline.constants import COL_SNAPSHOT_HASH
    from calliper_pipeline.hashing import code_fingerprint, json_hash

    ev = city.evaluation
    layers = [city.boundary_path, ev.hex_grid_path if ev else None]
    stored = ""
    if pois is not None and len(pois) and COL_SNAPSHOT_HASH in pois.columns:
        stored = str(pois[COL_SNAPSHOT_HASH].iloc[0])
    parts = {
        **version_parts(version),
        "city": asdict(city),
        "snapshot": stored,
        "layers": layer_hashes(Path(data_root), layers),
        "code": code_fingerprint(*REGIONS_CODE),
    }
    return json_hash(parts), tuple(parts)


def cached_region_embeddings(
    city: CitySpec,
    data_root: Path,
    version: RegisteredVersion,
    tracking: TrackingConfig,
    out_dir: Path,
    pois: pd.DataFrame | None = None,
) -> Cached:
    """The :class:`RegionEmbeddings` as a :class:`~calliper_pipeline.steps.assess.Cached`
    (``hit``: the file was already there and kept).

    The file of ``version`` is kept when its recorded key matches (see
    :func:`region_cache_key`); otherwise it is written again (:func:`write_region_embeddings`).
    """
    key, covers = region_cache_key(city, data_root, version, pois)
    path = region_path(out_dir, city.key, version.version)
    if path.is_file():
        try:
            extra = file_metadata(path)
        except Exception:  # an unreadable file is rewritten below
            extra = {}
        if extra.get("cache_key") == key:
            import pyarrow.parquet as pq

            # a hit reads the row count and the preview's columns, not the embeddings
            parquet = pq.ParquetFile(path)
            names = parquet.schema_arrow.names[: 3 + min(int(extra["embedding_dim"]), 4)]
            head = parquet.read_row_group(0, columns=names).slice(0, 5).to_pandas()
            outcome = _outcome(path, parquet.metadata.num_rows, head, extra)
            return Cached(outcome, True, key, covers)
    out = write_region_embeddings(city, data_root, version, tracking, out_dir, pois, key)
    return Cached(out, False, key, covers)
