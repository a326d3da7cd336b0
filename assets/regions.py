"""Region embeddings: the city's hexagon cells with their embeddings, a GeoParquet product."""

import dagster as dg

from assets.errors import one_line_failure
from assets.metadata import PREVIEW, cache_metadata, markdown_table, preview
from assets.partitions import Cities
from assets.resources import DataLocationResource, DuckDBResource, MlflowResource
from assets.training import CALLIPER_MODEL, trained_version

GROUP = "evaluation"
REGION_EMBEDDINGS = dg.AssetKey("region_embeddings")


def build_region_embeddings(cities: Cities) -> dg.AssetsDefinition:
    """``region_embeddings``: one GeoParquet file of cells and embeddings per model version."""

    @dg.asset(
        name=REGION_EMBEDDINGS.path[-1],
        partitions_def=cities.partitions,
        deps=[CALLIPER_MODEL],
        group_name=GROUP,
        automation_condition=dg.AutomationCondition.eager(),
        kinds={"geopandas", "parquet"},
        code_version="1",
        description=(
            "The city's hexagon cells (those of its maps) with the location embedding of each "
            "cell centroid from the exact version `calliper_model` registered, as GeoParquet: "
            "`cell_id`, `lon`, `lat`, `e000`..., polygon `geometry` in EPSG:4326. File: "
            "`outputs/<city>/regions/<city>_cells_v<version>.parquet` under CALLIPER_HOME."
        ),
    )
    @one_line_failure
    def region_embeddings(
        context: dg.AssetExecutionContext,
        duckdb: DuckDBResource,
        data: DataLocationResource,
        mlflow: MlflowResource,
    ) -> dg.MaterializeResult:
        from calliper_pipeline.steps.regions import cached_region_embeddings
        from calliper_pipeline.store.pois import read_city_pois

        city = cities.spec(context.partition_key)
        version = trained_version(context, city.key)
        with duckdb.connect(context.partition_key, read_only=True) as con:
            pois = read_city_pois(con, city.key)  # outlines a bounds-only city's land
        cached = cached_region_embeddings(
            city, data.data_root_path, version, mlflow.tracking(),
            data.output_dir(city.key, "regions"), pois,
        )  # fmt: skip
        out, key = cached.outcome, cached.key
        said = f"cache hit {key}: unchanged, not re-embedded" if cached.hit else f"written ({key})"
        context.log.info(
            f"{version.model_uri}: {out.n_cells} cells x {out.dim} -> {out.path}: {said}"
        )
        lines = [
            f"**{out.n_cells:,} cells x {out.dim}** embeddings of `{out.model_uri}`",
            f"GeoParquet, geometry EPSG:4326: `{out.path.name}`",
        ]
        return dg.MaterializeResult(
            metadata={
                PREVIEW: preview(lines),
                "path": dg.MetadataValue.path(str(out.path)),
                "dagster/row_count": out.n_cells,
                "dimension": out.dim,
                "model_uri": out.model_uri,
                "model_version": version.version,
                "metric_epsg": out.metric_epsg,
                "rows": dg.MetadataValue.md(markdown_table(out.preview, max_rows=5)),
                **cache_metadata(cached),
            }
        )

    return region_embeddings
