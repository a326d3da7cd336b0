"""Embeddings: one frozen text vector per distinct description, cached across runs and cities."""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from assets.config import DescriptionSettings
from assets.errors import one_line_failure
from assets.ingestion import POIS
from assets.metadata import PREVIEW, fmt, latest_materialization_metadata, numbers, preview
from assets.partitions import Cities
from assets.resources import DUCKDB_POOL, DuckDBResource, TextEncoderResource
from calliper_pipeline.config import DescriptionConfig

GROUP = "embeddings"
TEXT_EMBEDDINGS = dg.AssetKey("text_embeddings")
BLOCKING_EMBEDDING_CHECKS = ("text_embeddings_cover_every_text", "text_embeddings_are_finite")


def build_text_embeddings(cities: Cities) -> dg.AssetsDefinition:
    """``text_embeddings``: embeds the city's texts that the shared cache does not hold yet."""

    @dg.asset(
        name=TEXT_EMBEDDINGS.path[-1],
        partitions_def=cities.partitions,
        deps=[POIS],
        group_name=GROUP,
        pool=DUCKDB_POOL,
        automation_condition=dg.AutomationCondition.eager(),
        kinds={"duckdb", "pytorch"},
        code_version="1",
        description=(
            "Frozen sentence embeddings of the city's distinct POI descriptions, keyed by "
            "(encoder id, text hash) in a cache shared by all cities: a text is embedded once."
        ),
    )
    @one_line_failure
    def text_embeddings(
        context: dg.AssetExecutionContext,
        config: DescriptionSettings,
        duckdb: DuckDBResource,
        text_encoder: TextEncoderResource,
    ) -> dg.MaterializeResult:
        from calliper_pipeline.steps import embed as embedding

        city = cities.spec(context.partition_key)
        encoder = text_encoder.encoder()
        with duckdb.connect(context.partition_key) as con:
            report = embedding.embed(
                con,
                city,
                encoder,
                config.description(),
                batch_size=text_encoder.batch_size,
                log=context.log.info,
            )
        lines = [
            f"**{report.n_distinct:,} distinct texts** of {report.n_input:,}: "
            f"{report.n_embedded:,} embedded now, {report.n_cached:,} from the cache",
            f"encoder `{report.encoder_id}` · {config.description_variant} descriptions · "
            f"{fmt(report.texts_per_second)} texts/s",
        ]
        return dg.MaterializeResult(
            metadata={
                PREVIEW: preview(lines),
                "dagster/row_count": report.n_distinct,
                "encoder_id": report.encoder_id,
                "description_variant": config.description_variant,
                # every text already in the shared cache: nothing was embedded
                "cache_hit": report.n_embedded == 0,
                "cache_covers": "encoder id, SHA-256 of each distinct text",
                **numbers(
                    {
                        "n_input": report.n_input,
                        "n_distinct": report.n_distinct,
                        "n_cached": report.n_cached,
                        "n_embedded": report.n_embedded,
                        "seconds": report.seconds,
                        "texts_per_second": report.texts_per_second,
                    }
                ),
            }
        )

    return text_embeddings


def build_embedding_checks(cities: Cities) -> list[dg.AssetChecksDefinition]:
    """Blocking: every text of the last materialisation's variant has a finite cached vector."""
    specs = [
        dg.AssetCheckSpec(
            name, asset=TEXT_EMBEDDINGS, blocking=True, partitions_def=cities.partitions
        )
        for name in BLOCKING_EMBEDDING_CHECKS
    ]

    @dg.multi_asset_check(specs=specs, name="text_embeddings_quality", pool=DUCKDB_POOL)
    def text_embeddings_quality(
        context: dg.AssetCheckExecutionContext,
        duckdb: DuckDBResource,
        text_encoder: TextEncoderResource,
    ) -> Iterator[dg.AssetCheckResult]:
        from calliper_pipeline.ingest import quality

        key = context.partition_key
        last = latest_materialization_metadata(context, TEXT_EMBEDDINGS, key) or {}
        variant = str(last.get("description_variant", "calliper"))
        encoder_id = str(last.get("encoder_id") or text_encoder.encoder().encoder_id)
        with duckdb.connect(context.partition_key, read_only=True) as con:
            cov = quality.embedding_coverage(
                con,
                cities.spec(key),
                encoder_id,
                DescriptionConfig(variant=variant),  # type: ignore[arg-type]
            )
        common: dict[str, Any] = {
            "encoder_id": encoder_id,
            "description_variant": variant,
            "n_texts": cov.n_texts,
        }
        yield dg.AssetCheckResult(
            asset_key=TEXT_EMBEDDINGS,
            check_name="text_embeddings_cover_every_text",
            passed=cov.n_texts > 0 and cov.n_missing == 0,
            metadata={**common, "missing": cov.n_missing, "dim": cov.dim},
        )
        yield dg.AssetCheckResult(
            asset_key=TEXT_EMBEDDINGS,
            check_name="text_embeddings_are_finite",
            passed=cov.n_nonfinite == 0,
            metadata={**common, "non_finite": cov.n_nonfinite},
        )

    return [text_embeddings_quality]
