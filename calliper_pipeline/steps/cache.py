"""A folder cache of derived artefacts (evaluation tables, maps, ingest reports), keyed on the
hash of everything that made them.

An entry is ``<root>/<kind>/<key>/``: the artefact's files plus ``entry.json`` (what the step
needs to return the outcome without recomputing it, and what the key covers). An entry is built
in a temporary sibling folder and renamed into place only when complete, so a killed run leaves
no half-written entry a later run could mistake for a hit; a folder without its ``entry.json``,
or whose listed files are gone, is a miss. The key covers the inputs' content hashes, the
settings and the source code of the modules that compute the artefact
(:func:`calliper_pipeline.hashing.code_fingerprint`), so a change to any of them is a miss.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calliper_pipeline.hashing import json_hash

ENTRY_FILE = "entry.json"


@dataclass(frozen=True)
class CacheEntry:
    """A complete entry: its key, its folder, the payload its builder returned, and whether
    this call found it (``hit``) or built it."""

    key: str
    folder: Path
    payload: dict[str, Any]
    hit: bool
    covers: tuple[str, ...] = ()

    def path(self, name: str) -> Path:
        """A file of the entry, by its name inside the folder."""
        return self.folder / name


def key_of(parts: Mapping[str, Any]) -> str:
    """The cache key of ``parts`` (names -> JSON-able values): 16 hex digits of SHA-256."""
    return json_hash(dict(parts))


def lookup(root: Path, kind: str, key: str) -> CacheEntry | None:
    """The complete entry ``kind``/``key`` under ``root``, or None (absent, incomplete, or a
    file its payload lists under ``"files"`` is missing)."""
    folder = root / kind / key
    try:
        record = json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    payload = record.get("payload", {})
    if not all((folder / name).is_file() for name in payload.get("files", [])):
        return None
    return CacheEntry(key, folder, payload, True, tuple(record.get("covers", ())))


def build(
    root: Path,
    kind: str,
    parts: Mapping[str, Any],
    make: Callable[[Path], dict[str, Any]],
    still_valid: Callable[[CacheEntry], bool] | None = None,
) -> CacheEntry:
    """The entry for ``parts``: found, or made by ``make(folder)`` and stored.

    Args:
        root: the cache's root folder (created).
        kind: the artefact's kind (a sub-folder: ``evaluation``, ``maps``, ...).
        parts: everything the artefact depends on, by name (the key is their hash; the names
            are recorded as what the key covers).
        make: writes the artefact's files into the folder it is given and returns a
            JSON-serialisable payload; a ``"files"`` list in it names the files a hit needs.
            Exceptions propagate and leave no entry.
        still_valid: a found entry is a hit only if this returns True (e.g. the store still
            holds what the entry describes); otherwise it is made again and replaced.
    """
    key = key_of(parts)
    found = lookup(root, kind, key)
    if found is not None and (still_valid is None or still_valid(found)):
        return found
    final = root / kind / key
    tmp = root / kind / f".{key}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir(parents=True)
    try:
        payload = make(tmp)
        record = {"key": key, "covers": sorted(parts), "payload": payload}
        (tmp / ENTRY_FILE).write_text(json.dumps(record, default=str), encoding="utf-8")
        if final.exists():  # an incomplete or stale leftover: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CacheEntry(key, final, payload, False, tuple(sorted(parts)))
