"""The Dagster asset graph of calliper-pipeline: every asset and check partitioned by city.

``poi_snapshot`` (observed) -> ``pois`` -> ``text_embeddings`` -> ``calliper_model`` ->
``land_use_evaluation``, ``socioeconomic_evaluation`` -> ``calliper_champion``;
``calliper_model`` -> ``embedding_maps``, ``region_embeddings``; ``pois`` -> ``baselines``.
:func:`build_city_assets` builds them for a registry.
"""

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg

from assets.embeddings import build_embedding_checks, build_text_embeddings
from assets.evaluation import (
    LAND_USE,
    SOCIOECONOMIC,
    build_baselines,
    build_evaluation,
)
from assets.ingestion import build_poi_checks, build_pois, build_snapshot
from assets.maps import build_embedding_maps
from assets.partitions import Cities
from assets.promotion import build_champion
from assets.regions import build_region_embeddings
from assets.training import build_calliper_model
from calliper_pipeline.cities.spec import CitySpec


@dataclass(frozen=True)
class CityAssets:
    """What :func:`build_city_assets` returns: the graph for one city registry."""

    cities: Cities
    snapshot: dg.SourceAsset
    assets: list[dg.AssetsDefinition]
    checks: list[dg.AssetChecksDefinition]


def build_city_assets(specs: Mapping[str, CitySpec]) -> CityAssets:
    """All assets and checks, partitioned by the cities of ``specs``."""
    cities = Cities.of(specs)
    with warnings.catch_warnings():
        # Partitioned asset checks (results per city) and observable source assets are marked
        # preview/beta in dagster 1.13; both are what this graph needs, so say it once here.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _build(cities)


def _build(cities: Cities) -> CityAssets:
    assets = [
        build_pois(cities),
        build_text_embeddings(cities),
        build_calliper_model(cities),
        build_evaluation(cities, LAND_USE, "luc"),
        build_evaluation(cities, SOCIOECONOMIC, "sdm"),
        build_baselines(cities),
        build_champion(cities),
        build_embedding_maps(cities),
        build_region_embeddings(cities),
    ]
    checks = build_poi_checks(cities) + build_embedding_checks(cities)
    return CityAssets(cities, build_snapshot(cities), assets, checks)


__all__ = ["CityAssets", "build_city_assets"]
