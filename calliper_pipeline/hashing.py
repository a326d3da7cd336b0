"""Content hashes: of description texts (the text-embedding cache key) and of snapshot files."""

from __future__ import annotations

import hashlib
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
