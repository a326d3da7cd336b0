"""Content hashes: of description texts (the text-embedding cache key), of snapshot files, of
settings and of source code (the keys of the derived-artefact caches)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path


def text_hash(text: str) -> str:
    """SHA-256 hex digest of a text's UTF-8 bytes: the key of the text-embedding cache."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_hash(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes (a snapshot's data version)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def json_hash(payload: object, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``payload`` as canonical JSON (sorted
    keys; values JSON cannot hold are written with ``str``): a cache key of settings."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def code_fingerprint(*modules: str) -> str:
    """SHA-256 (16 hex digits) over the source files of ``modules`` (a package counts every
    ``.py`` file below it), by path relative to the package root and bytes.

    Part of every derived artefact's cache key, so that a change to the code that draws a map
    or runs a probe invalidates what the old code made, in a clean checkout or not.
    """
    h = hashlib.sha256()
    for name in sorted(modules):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"no module named {name!r}")
        origin = Path(spec.origin)
        files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
        for path in files:
            h.update(f"{name}:{path.relative_to(origin.parent)}\n".encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def layer_hash(path: Path) -> str:
    """SHA-256 over a data layer's files: ``path`` and its siblings of the same stem (a
    shapefile's ``.dbf``, ``.shx``, ``.prj``, ...), by name and bytes."""
    h = hashlib.sha256()
    stem = path.name.split(".")[0]
    siblings = sorted(p for p in path.parent.glob(f"{stem}.*") if p.is_file())
    for sibling in siblings or [path]:
        h.update(f"{sibling.name}\t{file_hash(sibling)}\n".encode())
    return h.hexdigest()
