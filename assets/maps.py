"""Maps: what the trained encoder learned, drawn over the city's hexagon cells."""

import re
from typing import Any

import dagster as dg

from assets.config import MapsConfig
from assets.errors import one_line_failure
from assets.metadata import PREVIEW, cache_metadata, markdown_table, png_markdown, preview
from assets.partitions import Cities
from assets.resources import (
    DataLocationResource,
    DuckDBResource,
    MlflowResource,
    TextEncoderResource,
)
from assets.training import CALLIPER_MODEL, trained_version

GROUP = "evaluation"
EMBEDDING_MAPS = dg.AssetKey("embedding_maps")
QUERY_LABEL_LEN = 20  # ``retrieval/<label>``: the query's category, cut to this length
_PLACE_OF = re.compile(r"a place of ([^,]+)", re.IGNORECASE)


def query_label(query: str) -> str:
    """A short metadata-key label of a retrieval query: its category ("a place of pubs and
    bars, ..." -> ``pubs_and_bars``), else the start of the query, at most 20 characters."""
    match = _PLACE_OF.search(query)
    text = match.group(1) if match else query
    label = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return label[:QUERY_LABEL_LEN].rstrip("_") or "query"


def _maps_metadata(
    out: Any,
    version: Any,
    config: MapsConfig,
    queries: Any,
    cluster_url: str | None,
    slug: Any,
) -> dict[str, Any]:
    """Preview (cluster map), the maps as thumbnails, each query's heatmap and top cells."""
    labels: dict[str, str] = {}
    for query in queries:  # distinct labels, in the order of the queries
        label = query_label(query)
        n = 2
        while label in labels.values():
            label, n = f"{query_label(query)[: QUERY_LABEL_LEN - 2]}_{n}", n + 1
        labels[query] = label
    lines = [
        f"**k-means (k = {config.k}) clusters** of {out.n_cells:,} cells, `{version.model_uri}`",
        "retrieval heatmaps: " + ", ".join(f"`retrieval/{lb}`" for lb in labels.values()),
    ]
    pngs = {name: path for name, path in out.figures.items() if path.suffix == ".png"}
    metadata: dict[str, Any] = {
        PREVIEW: preview(lines, ("cluster map", cluster_url)),
        "cluster_map": png_markdown(pngs["cluster_map"], "cluster map"),
        "pca_colour_map": png_markdown(pngs["pca_colour_map"], "pca colour map"),
    }
    for query, label in labels.items():
        png = pngs.get(f"retrieval_{slug(query)}")
        if png is not None:
            metadata[f"retrieval/{label}"] = png_markdown(png, f"retrieval: {query}")
    for query, label in labels.items():
        top = out.top_cells.get(query)
        if top is not None:
            table = f"**{query}**\n\n" + markdown_table(top, max_rows=5)
            metadata[f"top_cells/{label}"] = dg.MetadataValue.md(table)
    metadata |= {
        "model_uri": version.model_uri,
        "n_cells": out.n_cells,
        "queries": dg.MetadataValue.json(list(queries)),
        "folder": dg.MetadataValue.path(str(pngs["cluster_map"].parent)),
    }
    return metadata


def build_embedding_maps(cities: Cities) -> dg.AssetsDefinition:
    """``embedding_maps``: cluster map, PCA colour map and retrieval heatmaps of the version."""

    @dg.asset(
        name=EMBEDDING_MAPS.path[-1],
        partitions_def=cities.partitions,
        deps=[CALLIPER_MODEL],
        group_name=GROUP,
        automation_condition=dg.AutomationCondition.eager(),
        kinds={"matplotlib", "mlflow"},
        code_version="1",
        description=(
            "PNG maps of the exact version `calliper_model` registered: k-means clusters and "
            "principal components of the cell embeddings, and text-to-location retrieval "
            "heatmaps (the city file's `retrieval_queries`, else its three most common "
            "categories); also logged to the training's MLflow run under `maps/`."
        ),
    )
    @one_line_failure
    def embedding_maps(
        context: dg.AssetExecutionContext,
        config: MapsConfig,
        duckdb: DuckDBResource,
        text_encoder: TextEncoderResource,
        data: DataLocationResource,
        mlflow: MlflowResource,
    ) -> dg.MaterializeResult:
        from calliper_pipeline.steps import assess as assessment
        from calliper_pipeline.store.pois import read_city_pois
        from calliper_pipeline.tracking.runs import artifact_url

        city = cities.spec(context.partition_key)
        version = trained_version(context, city.key)
        with duckdb.connect(context.partition_key, read_only=True) as con:
            pois = read_city_pois(con, city.key)  # outlines a bounds-only city's land
        # the run's queries, else the city file's, else its most common categories
        queries = (
            config.queries if config.queries is not None else assessment.city_queries(city, pois)
        )
        cached = assessment.cached_maps(
            city,
            data.data_root_path,
            version,
            mlflow.tracking(),
            text_encoder.encoder(),
            data.output_dir(city.key, "cache"),
            queries,
            k=config.k,
            seed=config.seed,
            top_k=config.top_k,
            width_px=config.width_px,
            pois=pois,
        )
        out = cached.outcome
        how = f"cache hit {cached.key} (not redrawn)" if cached.hit else "drawn"
        context.log.info(
            f"{version.model_uri}: {len(out.figures)} files, {out.n_cells} cells, {how}"
        )
        cluster_url = None
        if version.run_id:
            png = out.figures["cluster_map"].name
            cluster_url = artifact_url(mlflow.tracking(), version.run_id, f"maps/{png}")
        metadata = _maps_metadata(out, version, config, queries, cluster_url, assessment.slug)
        return dg.MaterializeResult(metadata=metadata | cache_metadata(cached))

    return embedding_maps
