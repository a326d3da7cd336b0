"""Using a registered model: loading a pyfunc (by URI or the city's champion), embedding points,
embedding every point of a CSV/Parquet file in chunks, and the command that starts MLflow's
scoring server for a model.

URIs of the tracking server (``models:/``, ``runs:/``, ``mlflow-artifacts:``) need a
:class:`~calliper_pipeline.tracking.runs.TrackingConfig`; it is passed explicitly, never read
from the environment.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterator, Mapping
from pathlib import Path
from urllib.parse import urlparse

import geopandas as gpd
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.pyfunc import PyFuncModel

from calliper_pipeline.errors import ConfigError, ModelInputError
from calliper_pipeline.model.calliper import CalliperModel
from calliper_pipeline.tracking import geofiles
from calliper_pipeline.tracking.pyfunc import LAT, LON, CalliperPyfunc, embedding_columns
from calliper_pipeline.tracking.registry import CHAMPION_ALIAS, registered_model_name
from calliper_pipeline.tracking.runs import TrackingConfig, absolute_tracking_uri, mlflow_uris

_SERVER_SCHEMES = ("models", "runs", "mlflow-artifacts")


# ---------------------------------------------------------------------------------------------
# Loading and predicting
# ---------------------------------------------------------------------------------------------
def load_pyfunc(tracking: TrackingConfig | None, model_uri: str) -> PyFuncModel:
    """Load any pyfunc URI; ``models:/``, ``runs:/`` and ``mlflow-artifacts:`` URIs need
    ``tracking``, local paths do not."""
    if urlparse(model_uri).scheme in _SERVER_SCHEMES:
        if tracking is None:
            raise ConfigError(f"loading {model_uri} needs a TrackingConfig (tracking=...)")
        with mlflow_uris(tracking):
            return mlflow.pyfunc.load_model(model_uri)
    return mlflow.pyfunc.load_model(model_uri)


def load_champion(tracking: TrackingConfig, city: str, alias: str = CHAMPION_ALIAS) -> PyFuncModel:
    """The pyfunc holding ``alias`` for ``city``. The trained CalliperModel (for text
    retrieval) is ``load_champion(...).unwrap_python_model().model``."""
    return load_pyfunc(tracking, f"models:/{registered_model_name(city)}@{alias}")


def calliper_model_of(pyfunc: PyFuncModel, model_uri: str) -> CalliperModel:
    """The :class:`CalliperModel` inside a loaded CaLLiPer pyfunc (ConfigError otherwise)."""
    inner = pyfunc.unwrap_python_model()
    if not isinstance(inner, CalliperPyfunc) or inner.model is None:
        raise ConfigError(f"{model_uri} is not a CaLLiPer pyfunc model")
    return inner.model


def predict_embeddings(
    pyfunc: PyFuncModel, points: pd.DataFrame, allow_outside: bool = False
) -> pd.DataFrame:
    """``pyfunc.predict`` typed for a CaLLiPer model: WGS84 ``lon, lat`` -> ``e000``... frame."""
    out = pyfunc.predict(points, params={"allow_outside": bool(allow_outside)})
    if not isinstance(out, pd.DataFrame):
        raise TypeError(f"expected a DataFrame from the CaLLiPer pyfunc, got {type(out)}")
    return out


# ---------------------------------------------------------------------------------------------
# Reading input files in chunks
# ---------------------------------------------------------------------------------------------
Chunks = tuple[int | None, pa.Schema, Iterator[pa.Table]]


def _read_parquet_chunks(path: Path, batch_size: int) -> Chunks:
    pf = pq.ParquetFile(path)
    batches = (pa.Table.from_batches([b]) for b in pf.iter_batches(batch_size=batch_size))
    return pf.metadata.num_rows, pf.schema_arrow, batches


def _read_csv_chunks(path: Path, batch_size: int) -> Chunks:
    header = list(pd.read_csv(path, nrows=0).columns)
    # Passthrough columns are kept as text: per-chunk type inference could otherwise disagree
    # between chunks (and would drop the leading zeros of ids).
    dtypes: dict[Hashable, str] = {c: "string" for c in header if c not in (LON, LAT)}
    schema = pa.schema([pa.field(c, pa.string()) for c in header])
    reader = pd.read_csv(path, dtype=dtypes, chunksize=batch_size)
    return None, schema, (pa.Table.from_pandas(df, preserve_index=False) for df in reader)


def read_chunks(path: Path, batch_size: int) -> Chunks:
    """(row count if known, schema, chunks as Arrow tables) of a CSV or Parquet file."""
    suffix = "".join(path.suffixes[-2:]) if path.suffix.lower() == ".gz" else path.suffix
    suffix = suffix.lower()
    if suffix in (".parquet", ".pq"):
        return _read_parquet_chunks(path, batch_size)
    if suffix in (".csv", ".csv.gz"):
        return _read_csv_chunks(path, batch_size)
    raise ModelInputError(f"{path}: unsupported input format (use .csv, .csv.gz or .parquet)")


def _coords(table: pa.Table, index: pd.RangeIndex) -> pd.DataFrame:
    out = {}
    for col in (LON, LAT):
        values = pd.to_numeric(pd.Series(table.column(col).to_pandas()), errors="coerce")
        out[col] = values.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.DataFrame(out, index=index)


# ---------------------------------------------------------------------------------------------
# Embedding a file
# ---------------------------------------------------------------------------------------------
def _check_coordinate_columns(input_path: Path, schema: pa.Schema) -> None:
    if LON not in schema.names or LAT not in schema.names:
        raise ModelInputError(
            f"{input_path}: needs columns 'lon' and 'lat' (has {schema.names[:10]})"
        )


def _output_schema(input_path: Path, schema: pa.Schema, embed_dim: int) -> pa.Schema:
    """Every input column in its order (``lon``/``lat`` as float64 degrees), then float32
    ``e000``..."""
    emb_names = embedding_columns(embed_dim)
    clash = set(schema.names) & set(emb_names)
    if clash:
        raise ModelInputError(
            f"{input_path}: columns clash with the embedding columns: {sorted(clash)[:5]}"
        )
    kept = [pa.field(c, pa.float64()) if c in (LON, LAT) else schema.field(c) for c in schema.names]
    return pa.schema(kept + [pa.field(c, pa.float32()) for c in emb_names])


def _embed_table(
    pyfunc: PyFuncModel, table: pa.Table, start: int, out_schema: pa.Schema, allow_outside: bool
) -> pa.Table:
    """One chunk -> its output rows (row labels ``start...`` name offending rows in errors)."""
    index = pd.RangeIndex(start, start + table.num_rows)
    coords = _coords(table, index)
    emb = predict_embeddings(pyfunc, coords, allow_outside)
    arrays = []
    for out_field in out_schema:
        if out_field.name in emb.columns:
            arrays.append(pa.array(emb[out_field.name].to_numpy(np.float32)))
        elif out_field.name in (LON, LAT):
            arrays.append(pa.array(coords[out_field.name].to_numpy(np.float64)))
        else:
            arrays.append(table.column(out_field.name).cast(out_field.type))
    return pa.Table.from_arrays(arrays, schema=out_schema)


def embed_geo_file(
    pyfunc: PyFuncModel,
    model_uri: str,
    input_path: Path,
    output_path: Path,
    batch_size: int,
    allow_outside: bool,
) -> int:
    """A geo input (see :mod:`calliper_pipeline.tracking.geofiles`) -> GeoParquet: every input
    column and the geometry, then ``embed_lon``, ``embed_lat``, ``embed_location`` (point, or
    the centroid taken in the model's metric CRS) and float32 ``e000``...; returns the row count.
    """
    if output_path.suffix.lower() not in (".parquet", ".pq"):
        raise ModelInputError(f"{output_path}: a geo input is written as GeoParquet (.parquet)")
    spec = calliper_model_of(pyfunc, model_uri).spec
    gdf = geofiles.read_geo(input_path).reset_index(drop=True)
    names = [geofiles.EMBED_LON, geofiles.EMBED_LAT, geofiles.EMBED_LOCATION]
    geofiles.check_no_clash(input_path, gdf.columns, names + embedding_columns(spec.out_dim))
    where = geofiles.embed_locations(gdf, spec.metric_epsg)
    parts = []
    for start in range(0, len(gdf), batch_size):
        chunk = where.iloc[start : start + batch_size, :2].set_axis([LON, LAT], axis=1)
        try:
            parts.append(predict_embeddings(pyfunc, chunk, allow_outside).astype(np.float32))
        except ModelInputError as exc:
            raise ModelInputError(f"{input_path}: {exc}") from exc
    emb = pd.concat(parts) if parts else pd.DataFrame(columns=embedding_columns(spec.out_dim))
    out = pd.concat([pd.DataFrame(gdf), where, emb.set_axis(gdf.index)], axis=1)
    out = gpd.GeoDataFrame(out, geometry=gdf.geometry.name, crs=gdf.crs)
    extra = {"model_uri": model_uri, "metric_epsg": spec.metric_epsg, "input": str(input_path)}
    geofiles.write_geoparquet(out, output_path, extra)
    return len(out)


def embed_file(
    model_uri: str,
    input_path: Path,
    output_path: Path,
    batch_size: int = 50_000,
    show_progress: bool = True,
    allow_outside: bool = False,
    tracking: TrackingConfig | None = None,
) -> int:
    """Embed every point of a CSV/Parquet file into a Parquet file; returns the row count.

    A geo input (GeoJSON, GeoPackage, Shapefile, FlatGeobuf, GeoParquet) goes to
    :func:`embed_geo_file` instead and comes out as GeoParquet.

    Input columns ``lon``, ``lat`` (WGS84 degrees) plus any others: every input column is
    kept, in its order, in front of the float32 embedding columns ``e000``... (``lon``/``lat``
    as float64, the others unchanged (Parquet) or as strings (CSV)); row order is kept.
    ``model_uri`` is a ``models:/`` or ``runs:/`` URI (then ``tracking`` is required: the
    tracking URI is passed explicitly, never read from the environment) or a local pyfunc
    directory. Output is written
    to ``<output>.tmp`` and renamed, so a failure (e.g. points outside the city: a
    ``ModelInputError`` naming 0-based row numbers) leaves no partial file.
    """
    from tqdm.auto import tqdm

    input_path, output_path = Path(input_path), Path(output_path)
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if geofiles.is_geo_input(input_path):
        pyfunc = load_pyfunc(tracking, model_uri)
        return embed_geo_file(pyfunc, model_uri, input_path, output_path, batch_size, allow_outside)
    total, schema, chunks = read_chunks(input_path, batch_size)
    _check_coordinate_columns(input_path, schema)
    pyfunc = load_pyfunc(tracking, model_uri)
    embed_dim = calliper_model_of(pyfunc, model_uri).spec.out_dim
    out_schema = _output_schema(input_path, schema, embed_dim)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(output_path.name + ".tmp")
    n = 0
    try:
        with (
            pq.ParquetWriter(tmp, out_schema) as writer,
            tqdm(total=total, unit="pt", unit_scale=True, disable=not show_progress) as bar,
        ):
            for table in chunks:
                try:
                    writer.write_table(_embed_table(pyfunc, table, n, out_schema, allow_outside))
                except ModelInputError as exc:
                    raise ModelInputError(f"{input_path}: {exc}") from exc
                n += table.num_rows
                bar.update(table.num_rows)
        tmp.replace(output_path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


# ---------------------------------------------------------------------------------------------
# MLflow's scoring server
# ---------------------------------------------------------------------------------------------
def scoring_server_command(
    tracking: TrackingConfig,
    model_uri: str,
    python: Path,
    env: Mapping[str, str],
    host: str = "127.0.0.1",
    port: int = 5001,
    timeout_s: int = 60,
) -> tuple[list[str], dict[str, str]]:
    """``mlflow models serve`` for ``model_uri`` in the environment of the interpreter
    ``python`` (``--env-manager local``): the command and its environment.

    The environment is ``env`` with that interpreter's ``bin`` first on ``PATH`` (MLflow
    starts ``uvicorn`` by name: without it, ``exec: uvicorn: not found``) and
    ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` set to the (absolute) URIs of ``tracking``.
    Requests: ``POST http://host:port/invocations`` (see README, "Serving").
    """
    bin_dir = Path(python).parent
    new_env = dict(env)
    new_env["PATH"] = os.pathsep.join([str(bin_dir), *filter(None, [env.get("PATH")])])
    new_env["MLFLOW_TRACKING_URI"] = absolute_tracking_uri(tracking.tracking_uri)
    new_env["MLFLOW_REGISTRY_URI"] = absolute_tracking_uri(tracking.effective_registry_uri)
    cmd = [
        str(bin_dir / "mlflow"),
        "models",
        "serve",
        "--model-uri",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        host,
        "--port",
        str(int(port)),
        "--workers",
        "1",
        "--timeout",
        str(int(timeout_s)),
    ]
    return cmd, new_env
