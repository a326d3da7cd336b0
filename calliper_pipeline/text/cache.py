"""The DuckDB cache of text embeddings: embed each distinct text once per encoder, gather
cached rows for training.

Rows live in ``text_embeddings`` keyed by ``(encoder_id, text_hash)`` (DDL in
:mod:`calliper_pipeline.store.schema`); new rows are inserted in one transaction
(:func:`calliper_pipeline.store.db.transaction`), so a failure leaves the cache as it was.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from calliper_pipeline.constants import TEXT_EMBEDDINGS_TABLE
from calliper_pipeline.errors import CalliperError
from calliper_pipeline.hashing import text_hash
from calliper_pipeline.progress import LogFn
from calliper_pipeline.store.db import registered, table_exists, transaction
from calliper_pipeline.store.schema import ensure_text_schema
from calliper_pipeline.text.encoders import TextEncoder, TextEncodingError

# Texts per encode() call between progress lines: large enough to keep the model busy, small
# enough that a Dagster log shows progress every few seconds.
_BATCHES_PER_GROUP = 16


class MissingEmbeddingError(CalliperError, KeyError):
    """Some text hashes have no cached embedding for the requested encoder."""

    def __init__(self, encoder_id: str, missing: Sequence[str]):
        self.encoder_id = encoder_id
        self.missing = tuple(missing)
        shown = ", ".join(self.missing[:5]) + (", ..." if len(self.missing) > 5 else "")
        self.message = (
            f"{len(self.missing)} text hash(es) have no cached embedding for encoder "
            f"{encoder_id!r} (e.g. {shown}); run embed_texts_cached first"
        )
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


@dataclass(frozen=True)
class EmbedReport:
    """What one :func:`embed_texts_cached` call did. Counts of distinct texts except n_input.

    ``seconds`` is the call's wall time (model loading included when it happened);
    ``texts_per_second`` is ``n_embedded / seconds`` (0 when nothing was embedded).
    """

    encoder_id: str
    n_input: int
    n_distinct: int
    n_cached: int
    n_embedded: int
    seconds: float
    texts_per_second: float

    def as_metadata(self) -> dict[str, Any]:
        """Plain dict of the fields, for Dagster/MLflow metadata."""
        return asdict(self)


def _cached_hashes(con: duckdb.DuckDBPyConnection, encoder_id: str, hashes: list[str]) -> set[str]:
    if not hashes:
        return set()
    with registered(con, pa.table({"text_hash": hashes})) as view:
        rows = con.execute(
            f"SELECT e.text_hash FROM {TEXT_EMBEDDINGS_TABLE} e "
            f"JOIN {view} q USING (text_hash) WHERE e.encoder_id = ?",
            [encoder_id],
        ).fetchall()
    return {r[0] for r in rows}


def _encode_groups(
    encoder: TextEncoder, texts: list[str], batch_size: int, show_progress: bool, log: LogFn | None
) -> np.ndarray:
    """Encode in groups of batches, with a tqdm bar and one log line per group; validate output."""
    group = max(1, batch_size * _BATCHES_PER_GROUP)
    parts: list[np.ndarray] = []
    start = time.perf_counter()
    with tqdm(total=len(texts), disable=not show_progress, unit="text", desc="embed") as bar:
        for lo in range(0, len(texts), group):
            chunk = texts[lo : lo + group]
            vectors = np.asarray(encoder.encode(chunk, batch_size=batch_size), dtype=np.float32)
            if vectors.shape != (len(chunk), encoder.dim) or not np.isfinite(vectors).all():
                raise TextEncodingError(
                    f"encoder {encoder.encoder_id!r} returned shape {vectors.shape} (expected "
                    f"{(len(chunk), encoder.dim)}) or non-finite values"
                )
            parts.append(vectors)
            bar.update(len(chunk))
            if log is not None:
                done, elapsed = lo + len(chunk), time.perf_counter() - start
                log(
                    f"{encoder.encoder_id}: embedded {done}/{len(texts)} texts "
                    f"({done / max(elapsed, 1e-9):.1f} texts/s)"
                )
    return np.concatenate(parts) if parts else np.zeros((0, encoder.dim), np.float32)


def _insert_embeddings(
    con: duckdb.DuckDBPyConnection,
    encoder_id: str,
    hashes: list[str],
    texts: list[str],
    vectors: np.ndarray,
) -> None:
    """Insert all rows in one transaction; on any failure roll back and re-raise."""
    n, dim = vectors.shape
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    embedding = pa.FixedSizeListArray.from_arrays(flat, dim).cast(pa.list_(pa.float32()))
    table = pa.table(
        {
            "encoder_id": pa.array([encoder_id] * n, pa.string()),
            "text_hash": pa.array(hashes, pa.string()),
            "text": pa.array(texts, pa.string()),
            "dim": pa.array(np.full(n, dim, dtype=np.int32)),
            "embedding": embedding,
        }
    )
    created_at = datetime.now(UTC).replace(tzinfo=None)  # naive UTC in a TIMESTAMP column
    with registered(con, table) as view, transaction(con):
        con.execute(
            f"INSERT INTO {TEXT_EMBEDDINGS_TABLE} "
            "(encoder_id, text_hash, text, dim, embedding, created_at) "
            f"SELECT encoder_id, text_hash, text, dim, embedding, ? FROM {view}",
            [created_at],
        )


def embed_texts_cached(
    con: duckdb.DuckDBPyConnection,
    encoder: TextEncoder,
    texts: Iterable[str],
    batch_size: int = 256,
    show_progress: bool = False,
    log: LogFn | None = None,
) -> EmbedReport:
    """Embed the distinct texts not yet cached for this encoder and store them.

    All texts are encoded first, then every new row is inserted in one transaction, so a failure
    leaves the cache as it was. Must not be called inside an open transaction on ``con``.

    Args:
        con: DuckDB connection (the table is created if absent).
        encoder: any :class:`TextEncoder`; its ``encoder_id`` namespaces the cache.
        texts: texts, repeats allowed (e.g. one description per POI).
        batch_size: texts per forward pass.
        show_progress: show a tqdm bar.
        log: called with one progress line per group of batches (e.g. ``context.log.info``).
    """
    start = time.perf_counter()
    text_list = list(texts)
    for i, t in enumerate(text_list):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, not str")
    distinct = list(dict.fromkeys(text_list))
    hashes = [text_hash(t) for t in distinct]
    ensure_text_schema(con)
    cached = _cached_hashes(con, encoder.encoder_id, hashes)
    todo = [(h, t) for h, t in zip(hashes, distinct, strict=True) if h not in cached]
    if log is not None:
        log(
            f"{encoder.encoder_id}: {len(text_list)} texts, {len(distinct)} distinct, "
            f"{len(cached)} cached, {len(todo)} to embed"
        )
    if todo:
        new_hashes, new_texts = (list(col) for col in zip(*todo, strict=True))
        vectors = _encode_groups(encoder, new_texts, batch_size, show_progress, log)
        _insert_embeddings(con, encoder.encoder_id, new_hashes, new_texts, vectors)
    seconds = time.perf_counter() - start
    return EmbedReport(
        encoder_id=encoder.encoder_id,
        n_input=len(text_list),
        n_distinct=len(distinct),
        n_cached=len(cached),
        n_embedded=len(todo),
        seconds=seconds,
        texts_per_second=len(todo) / seconds if todo else 0.0,
    )


def load_text_embeddings(
    con: duckdb.DuckDBPyConnection, encoder_id: str, text_hashes: Sequence[str]
) -> np.ndarray:
    """Gather cached embeddings: float32 (len(text_hashes), dim), row i for ``text_hashes[i]``.

    Repeated hashes are fetched once and gathered by index.

    Raises:
        MissingEmbeddingError: some hashes have no row for ``encoder_id``.
    """
    wanted = list(text_hashes)
    if not table_exists(con, TEXT_EMBEDDINGS_TABLE):
        if wanted:
            raise MissingEmbeddingError(encoder_id, list(dict.fromkeys(wanted)))
        return np.zeros((0, 0), dtype=np.float32)
    if not wanted:
        (dim,) = con.execute(
            f"SELECT coalesce(max(dim), 0) FROM {TEXT_EMBEDDINGS_TABLE} WHERE encoder_id = ?",
            [encoder_id],
        ).fetchall()[0]
        return np.zeros((0, int(dim)), np.float32)
    unique = pd.unique(pd.Series(wanted, dtype=object))
    with registered(con, pa.table({"text_hash": pa.array(unique, pa.string())})) as view:
        found = con.sql(
            f"SELECT e.text_hash, e.dim, e.embedding FROM {TEXT_EMBEDDINGS_TABLE} e "
            f"JOIN {view} q USING (text_hash) WHERE e.encoder_id = ?",
            params=[encoder_id],
        ).to_arrow_table()
    indexer = pd.Index(found.column("text_hash").to_pylist()).get_indexer(wanted)
    if (indexer < 0).any():
        missing = pd.unique(pd.Series(wanted, dtype=object)[indexer < 0])
        raise MissingEmbeddingError(encoder_id, [str(h) for h in missing])
    dims = pc.unique(found.column("dim")).to_pylist()
    if len(dims) != 1:
        raise TextEncodingError(f"cached rows of {encoder_id!r} have mixed dims {dims}")
    flat = pc.list_flatten(found.column("embedding").combine_chunks())
    matrix = flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return matrix.reshape(found.num_rows, dims[0])[indexer]


def cache_stats(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per (encoder_id, dim): rows, first_created_at, last_created_at."""
    columns = ["encoder_id", "dim", "rows", "first_created_at", "last_created_at"]
    if not table_exists(con, TEXT_EMBEDDINGS_TABLE):
        return pd.DataFrame(columns=columns)
    return con.execute(
        f"SELECT encoder_id, dim, count(*) AS rows, min(created_at) AS first_created_at, "
        f"max(created_at) AS last_created_at FROM {TEXT_EMBEDDINGS_TABLE} "
        "GROUP BY encoder_id, dim ORDER BY encoder_id, dim"
    ).df()[columns]
