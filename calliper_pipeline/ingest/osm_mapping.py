"""The OpenStreetMap tag -> (category, group) mapping of the OSM readers (:mod:`.osm`).

The default is the data file ``osm_tags.toml`` next to this module (its comments say how it
reads); a source's ``[snapshot.osm]`` table overrides it (:meth:`OsmMapping.with_overrides`):

- ``keys``: the POI keys / ``key=value`` tags in priority order (replaces the default list);
- ``exclude``: the tags (or bare keys) that never make a POI (replaces the default list;
  ``exclude = []`` keeps everything);
- ``categories``: ``"key=value" = [category, group]`` (added to, and winning over, the default);
- ``groups``: ``key`` or ``"key=value"`` = group (added to, and winning over, the default).

:meth:`OsmMapping.classify` gives one object's tags a category and group, or the reason it is
not a POI (:data:`REASON_EXCLUDED_TAG`, :data:`REASON_NO_POI_TAG`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The shipped default mapping.
DEFAULT_TAGS_FILE = Path(__file__).with_name("osm_tags.toml")
#: Quarantine reasons of OSM objects that are not POIs.
REASON_EXCLUDED_TAG = "excluded OSM tag"
REASON_NO_POI_TAG = "no POI tag"


def humanise(value: str) -> str:
    """An OSM tag value as text: underscores become spaces (``fast_food`` -> ``fast food``)."""
    return " ".join(value.replace("_", " ").split())


def first_value(value: Any) -> str:
    """The first of a ``;``-separated OSM value, stripped (``"cafe;bar"`` -> ``"cafe"``)."""
    return str(value).split(";", 1)[0].strip()


@dataclass(frozen=True)
class OsmMatch:
    """What :meth:`OsmMapping.classify` made of one object's tags.

    A POI has ``category`` (and ``group`` where the mapping has one) and ``reason`` None;
    ``tag`` is the ``key=value`` that gave them. Otherwise ``reason`` says why, and ``tag`` is
    the first excluded tag (None when no POI key was present).
    """

    category: str | None
    group: str | None
    tag: str | None
    reason: str | None


@dataclass(frozen=True)
class OsmMapping:
    """POI keys in priority order, excluded tags, and category / group tables."""

    keys: tuple[str, ...]
    exclude: frozenset[str] = frozenset()
    categories: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    groups: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> OsmMapping:
        """A mapping from a table shaped like ``osm_tags.toml``."""
        return cls(
            keys=tuple(table["keys"]),
            exclude=frozenset(table.get("exclude", ())),
            categories={k: (str(v[0]), str(v[1])) for k, v in table.get("categories", {}).items()},
            groups={k: str(v) for k, v in table.get("groups", {}).items()},
        )

    @classmethod
    def default(cls) -> OsmMapping:
        """The shipped mapping (``osm_tags.toml``)."""
        with open(DEFAULT_TAGS_FILE, "rb") as fh:
            return cls.from_table(tomllib.load(fh))

    def with_overrides(self, table: Mapping[str, Any]) -> OsmMapping:
        """This mapping with a ``[snapshot.osm]`` table applied (see the module docstring)."""
        categories = dict(self.categories)
        categories.update(
            {k: (str(v[0]), str(v[1])) for k, v in table.get("categories", {}).items()}
        )
        groups = dict(self.groups)
        groups.update({k: str(v) for k, v in table.get("groups", {}).items()})
        return OsmMapping(
            keys=tuple(table.get("keys", self.keys)),
            exclude=frozenset(table.get("exclude", self.exclude)),
            categories=categories,
            groups=groups,
        )

    @property
    def tag_keys(self) -> tuple[str, ...]:
        """The bare OSM keys the mapping reads (``railway`` for ``railway=station``)."""
        return tuple(dict.fromkeys(entry.split("=", 1)[0] for entry in self.keys))

    def _excluded(self, key: str, tag: str) -> bool:
        return tag in self.exclude or key in self.exclude

    def classify(self, tags: Mapping[str, Any]) -> OsmMatch:
        """Category and group of an object with these tags, or why it is not a POI.

        The first entry of ``keys`` that the tags match and that is not excluded wins: its
        category is ``categories[tag][0]`` if listed, else the humanised first value (the key
        for a value ``yes``); its group is ``categories[tag][1]``, else ``groups[tag]``, else
        ``groups[key]``, else None. A value ``no`` is no tag. With every matching tag excluded
        the reason is :data:`REASON_EXCLUDED_TAG`; with none, :data:`REASON_NO_POI_TAG`.
        """
        excluded: str | None = None
        for entry in self.keys:
            key, _, wanted = entry.partition("=")
            raw = tags.get(key)
            if raw is None:
                continue
            value = first_value(raw)
            if not value or value == "no" or (wanted and value != wanted):
                continue
            tag = f"{key}={value}"
            if self._excluded(key, tag):
                excluded = excluded or tag
                continue
            if tag in self.categories:
                category, group = self.categories[tag]
                return OsmMatch(category, group, tag, None)
            readable = humanise(key if value == "yes" else value)
            return OsmMatch(readable, self.groups.get(tag) or self.groups.get(key), tag, None)
        reason = REASON_EXCLUDED_TAG if excluded else REASON_NO_POI_TAG
        return OsmMatch(None, None, excluded, reason)


def source_mapping(overrides: Mapping[str, Any]) -> OsmMapping:
    """The default mapping with a source's ``[snapshot.osm]`` overrides applied."""
    return OsmMapping.default().with_overrides(overrides)
