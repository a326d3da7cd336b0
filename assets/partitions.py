"""The city partitions: one partition per registered city, shared by every asset and check."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg

from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.errors import ConfigError


@dataclass(frozen=True)
class Cities:
    """The registry the definitions were built from, and its partitions definition."""

    specs: Mapping[str, CitySpec]
    partitions: dg.StaticPartitionsDefinition

    @classmethod
    def of(cls, specs: Mapping[str, CitySpec]) -> Cities:
        if not specs:
            raise ConfigError("no city registered: nothing to partition by")
        keys = sorted(specs)
        return cls(dict(specs), dg.StaticPartitionsDefinition(keys))

    def spec(self, partition_key: str) -> CitySpec:
        """The CitySpec of a partition key."""
        try:
            return self.specs[partition_key]
        except KeyError:
            raise ConfigError(f"no city {partition_key!r} in the registry") from None
