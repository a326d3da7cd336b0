"""Ingestion: the POI snapshot (observed) and the normalised ``pois`` table, with its checks."""

# No ``from __future__ import annotations`` in the asset modules: Dagster reads config and
# resource types from the asset functions' annotations at definition time. Library stages are
# imported inside the bodies, so loading the code location (webserver, daemon, each step
# process) does not import torch and MLflow.

import warnings
from collections.abc import Iterator
from typing import Any

import dagster as dg

from assets.config import DriftCheckConfig
from assets.errors import one_line_failure
from assets.metadata import PREVIEW, column_schema, fmt, markdown_table, numbers, preview, rounded
from assets.partitions import Cities
from assets.resources import DUCKDB_POOL, DataLocationResource, DuckDBResource
from calliper_pipeline.ingest.ingest import snapshot_hash

GROUP = "ingestion"
POI_SNAPSHOT = dg.AssetKey("poi_snapshot")
POIS = dg.AssetKey("pois")
BLOCKING_POI_CHECKS = (
    "pois_not_empty",
    "pois_have_unique_ids",
    "pois_within_city_bounds",
    "pois_have_descriptions",
)


def build_snapshot(cities: Cities) -> dg.SourceAsset:
    """``poi_snapshot``: observable source whose data version is the snapshot file's SHA-256."""

    @dg.observable_source_asset(
        name=POI_SNAPSHOT.path[-1],
        partitions_def=cities.partitions,
        group_name=GROUP,
        description=(
            "The city's POI snapshot files; their combined SHA-256 content hash is the data "
            "version."
        ),
    )
    def poi_snapshot(
        context: dg.AssetExecutionContext, data: DataLocationResource
    ) -> dg.DataVersionsByPartition:
        one = context.has_partition_key
        versions = {}
        for key in [context.partition_key] if one else sorted(cities.specs):
            try:  # every source file of the city: a change to any of them is a new version
                versions[key] = snapshot_hash(cities.spec(key), data.data_root_path)
            except FileNotFoundError as err:
                if one:
                    raise FileNotFoundError(f"snapshot of {key!r} not found: {err}") from err
                context.log.warning(f"{key}: {err}; not observed")
                continue
            context.log.info(f"{key}: snapshot hash {versions[key][:12]}")
        with warnings.catch_warnings():  # beta in dagster 1.13, and what partitions need
            warnings.simplefilter("ignore", dg.BetaWarning)
            return dg.DataVersionsByPartition(versions)

    return poi_snapshot


def build_pois(cities: Cities) -> dg.AssetsDefinition:
    """``pois``: the normalised POI table (and quarantine) of one city in DuckDB."""

    @dg.asset(
        name=POIS.path[-1],
        partitions_def=cities.partitions,
        deps=[POI_SNAPSHOT],
        group_name=GROUP,
        pool=DUCKDB_POOL,
        automation_condition=dg.AutomationCondition.eager(),
        kinds={"duckdb"},
        code_version="1",
        description=(
            "Normalised POIs (id, name, category, group, description, WGS84 lon/lat, metric "
            "x_m/y_m), the city's rows replaced in one transaction; rejected rows go to the "
            "quarantine table with a reason. Data version = snapshot hash."
        ),
    )
    @one_line_failure
    def pois(
        context: dg.AssetExecutionContext, duckdb: DuckDBResource, data: DataLocationResource
    ) -> dg.MaterializeResult:
        from calliper_pipeline.steps import ingest as ingestion

        city = cities.spec(context.partition_key)
        with duckdb.connect(context.partition_key) as con:
            out = ingestion.ingest_profiled(
                con, city, data.data_root_path, cache_root=data.output_dir(city.key, "cache")
            )
        r = out.report
        if out.reused:
            context.log.info(
                f"{city.key}: unchanged (cache hit {out.cache_key}): the stored rows are this "
                "snapshot's ingest with the same city file, settings and code; not re-read"
            )
        context.log.info(
            f"{city.key}: {r.rows_valid:,} POIs stored, {r.rows_quarantined:,} quarantined, "
            f"{r.rows_filtered_out:,} filtered out of {r.rows_read:,} rows ({r.seconds:.1f} s)"
        )
        quarantined = {f"quarantined_{k.replace(' ', '_')}": v for k, v in r.quarantined_by.items()}
        cleaned = {f"cleaned_{k.replace(' ', '_')}": v for k, v in r.cleaned_by.items()}
        for note in r.warnings:
            context.log.warning(f"{city.key}: {note}")
        notes = {"warnings": dg.MetadataValue.json(list(r.warnings))} if r.warnings else {}
        mix = out.category_mix.rename_axis("category").reset_index()
        top = ", ".join(str(c) for c in out.category_mix.index[:3])
        lines = [
            f"**{r.rows_valid:,} POIs** of {city.name} stored from {r.rows_read:,} rows",
            f"{r.rows_quarantined:,} quarantined · {r.rows_filtered_out:,} filtered out · "
            f"{len(out.category_mix):,} categories (most: {top})",
            f"EPSG:{r.metric_epsg} · snapshot `{r.snapshot_hash[:12]}` · {fmt(r.seconds)} s"
            + (" (the stored ingest, reused)" if out.reused else ""),
        ]
        return dg.MaterializeResult(
            data_version=dg.DataVersion(r.snapshot_hash),
            metadata={
                PREVIEW: preview(lines),
                "dagster/row_count": r.rows_valid,
                "dagster/column_schema": column_schema(out.sample),
                "sample": dg.MetadataValue.md(markdown_table(out.sample)),
                "category_mix_top": dg.MetadataValue.md(markdown_table(mix, max_rows=10)),
                "snapshot_hash": r.snapshot_hash,
                "snapshot_path": dg.MetadataValue.path(r.source_path),
                "cache_hit": out.reused,
                "cache_key": out.cache_key,
                "cache_covers": ", ".join(out.cache_covers),
                **numbers(
                    {
                        "rows_read": r.rows_read,
                        "rows_filtered_out": r.rows_filtered_out,
                        "rows_quarantined": r.rows_quarantined,
                        "n_categories": len(out.category_mix),
                        "metric_epsg": r.metric_epsg,
                        "ingest_seconds": r.seconds,
                        **quarantined,
                        **cleaned,
                    }
                ),
                **notes,
            },
        )

    return pois


def build_poi_checks(cities: Cities) -> list[dg.AssetChecksDefinition]:
    """Blocking invariants of ``pois`` (one measurement, four checks) and the drift warning."""
    specs = [
        dg.AssetCheckSpec(name, asset=POIS, blocking=True, partitions_def=cities.partitions)
        for name in BLOCKING_POI_CHECKS
    ]

    @dg.multi_asset_check(specs=specs, name="pois_quality", pool=DUCKDB_POOL)
    def pois_quality(
        context: dg.AssetCheckExecutionContext,
        duckdb: DuckDBResource,
        data: DataLocationResource,
    ) -> Iterator[dg.AssetCheckResult]:
        from calliper_pipeline.ingest import quality

        city = cities.spec(context.partition_key)
        with duckdb.connect(context.partition_key, read_only=True) as con:
            q = quality.poi_quality(con, city, data.data_root_path)
        bounds = {"bounds_m": dg.MetadataValue.json(list(q.bounds_m))}
        yield _result("pois_not_empty", q.n_pois > 0, n_pois=q.n_pois)
        yield _result("pois_have_unique_ids", q.n_duplicate_ids == 0, duplicates=q.n_duplicate_ids)
        yield _result(
            "pois_within_city_bounds", q.n_outside_bounds == 0, outside=q.n_outside_bounds, **bounds
        )
        yield _result(
            "pois_have_descriptions",
            q.n_missing_description == 0,
            missing=q.n_missing_description,
        )

    @dg.asset_check(
        asset=POIS,
        name="pois_category_mix_stable",
        partitions_def=cities.partitions,
        pool=DUCKDB_POOL,
        description="Warns when the category mix moved more than max_tvd since the last ingest.",
    )
    def pois_category_mix_stable(
        context: dg.AssetCheckExecutionContext, config: DriftCheckConfig, duckdb: DuckDBResource
    ) -> dg.AssetCheckResult:
        from calliper_pipeline.ingest import quality

        with duckdb.connect(context.partition_key, read_only=True) as con:
            drift = quality.category_mix_drift(con, context.partition_key)
        meta: dict[str, Any] = {"max_tvd": config.max_tvd}
        if drift.tvd is None:
            meta["note"] = "first ingest of this city: nothing to compare with"
            return dg.AssetCheckResult(passed=True, metadata=meta)
        meta |= {
            "tvd": rounded(drift.tvd),
            "ingest_id": drift.current_ingest_id,
            "previous_ingest_id": drift.previous_ingest_id,
            "largest_changes": dg.MetadataValue.md(markdown_table(drift.changes, max_rows=10)),
        }
        return dg.AssetCheckResult(
            passed=drift.tvd <= config.max_tvd,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=meta,
        )

    @dg.asset_check(
        asset=POIS,
        name="pois_not_degenerate",
        partitions_def=cities.partitions,
        pool=DUCKDB_POOL,
        description=(
            "Warns when the city is degenerate for training: fewer POIs than one training "
            "batch, one category only, or every POI at a handful of places."
        ),
    )
    def pois_not_degenerate(
        context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource
    ) -> dg.AssetCheckResult:
        from calliper_pipeline.ingest import quality

        with duckdb.connect(context.partition_key, read_only=True) as con:
            notes = quality.stored_city_warnings(con, context.partition_key)
        for note in notes:
            context.log.warning(f"{context.partition_key}: {note}")
        return dg.AssetCheckResult(
            passed=not notes,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"warnings": dg.MetadataValue.json(notes)},
        )

    return [pois_quality, pois_category_mix_stable, pois_not_degenerate]


def _result(name: str, passed: bool, **metadata: Any) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=POIS, check_name=name, passed=bool(passed), metadata=dict(metadata)
    )
