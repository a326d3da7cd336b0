"""Maps: what the trained encoder learned, drawn over the city's hexagon cells."""

from typing import Any

import dagster as dg

from assets.config import MapsConfig
from assets.metadata import markdown_table, png_markdown
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
            "PNG maps of the exact version calliper_model registered: k-means clusters and "
            "principal components of the cell embeddings, and text-to-location retrieval "
            "heatmaps (the city file's retrieval_queries, else its three most common "
            "categories); also logged to the training's MLflow run under maps/."
        ),
    )
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

        city = cities.spec(context.partition_key)
        version = trained_version(context, city.key)
        queries = config.queries
        if queries is None:  # the city file's, else its most common categories
            with duckdb.connect(read_only=True) as con:
                queries = assessment.city_queries(city, read_city_pois(con, city.key))
        out = assessment.render_maps(
            city,
            data.data_root_path,
            version,
            mlflow.tracking(),
            text_encoder.encoder(),
            data.output_dir(city.key, "runs", context.run_id, "maps"),
            queries,
            k=config.k,
            seed=config.seed,
            top_k=config.top_k,
            width_px=config.width_px,
        )
        context.log.info(f"{version.model_uri}: {len(out.figures)} files, {out.n_cells} cells")
        pngs = {name: path for name, path in out.figures.items() if path.suffix == ".png"}
        metadata: dict[str, Any] = {
            "model_uri": version.model_uri,
            "n_cells": out.n_cells,
            "queries": dg.MetadataValue.json(list(queries)),
            "folder": dg.MetadataValue.path(str(next(iter(pngs.values())).parent)),
        }
        for name, path in pngs.items():
            metadata[name] = png_markdown(path, name.replace("_", " "))
        for query, top in out.top_cells.items():
            table = f"**{query}**\n\n" + markdown_table(top, max_rows=5)
            metadata[f"top_cells_{assessment.slug(query)}"] = dg.MetadataValue.md(table)
        return dg.MaterializeResult(metadata=metadata)

    return embedding_maps
