"""Writing small OpenStreetMap files for tests, with pyosmium's ``SimpleWriter``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

Tags = Mapping[str, str]


def write_osm(
    path: Path,
    nodes: Iterable[tuple[int, float, float, Tags]] = (),
    ways: Iterable[tuple[int, list[int], Tags]] = (),
    relations: Iterable[tuple[int, list[tuple[str, int, str]], Tags]] = (),
) -> Path:
    """An OSM file at ``path`` (the suffix picks .osm.pbf, .osm or .osm.bz2).

    ``nodes``: (id, lon, lat degrees, tags); ``ways``: (id, node ids, tags); ``relations``:
    (id, members as (type "n"/"w"/"r", id, role), tags). Objects are written in that order,
    as OSM files sort them.
    """
    import osmium

    path.unlink(missing_ok=True)
    writer = osmium.SimpleWriter(str(path))
    try:
        for nid, lon, lat, tags in nodes:
            writer.add_node(osmium.osm.mutable.Node(id=nid, location=(lon, lat), tags=dict(tags)))
        for wid, refs, tags in ways:
            writer.add_way(osmium.osm.mutable.Way(id=wid, nodes=refs, tags=dict(tags)))
        for rid, members, tags in relations:
            writer.add_relation(
                osmium.osm.mutable.Relation(id=rid, members=members, tags=dict(tags))
            )
    finally:
        writer.close()
    return path
