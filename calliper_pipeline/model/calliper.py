"""The CaLLiPer model: a location encoder aligned with projected, frozen text embeddings.

Text side: precomputed, frozen sentence embeddings (all-MiniLM-L6-v2, 384-d, L2-normalised)
go through a trainable ``Linear(384 -> 128)``. Following the authors' code the projected text
vector is *not* normalised again (``normalize_text=True`` gives the standard CLIP choice).
Location side: positional encoding + network, output L2-normalised for the logits. A learnable
``logit_scale`` (initialised to log(1/0.07)) scales the cosine similarities.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.model.encodings import build_location_encoder

#: What ``predict`` may return (``EncoderConfig.representation``; see CalliperModel.represent).
REPRESENTATIONS = ("raw", "unit_heads")


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild a trained model (stored beside its weights, as JSON).

    ``centre_m`` is the city centre in ``metric_epsg`` metres used to centre coordinates before
    the metric positional encodings (float32 then keeps sub-millimetre precision).
    ``heads`` is the number of ``encoder.embed_dim``-wide heads (1 = the paper's model); the
    location representation is their concatenation, ``embed_dim * heads`` columns.
    ``head_names`` says what each head was trained against (e.g. ``("own", "r200", ...)``).
    """

    encoder: EncoderConfig
    text_dim: int
    centre_m: tuple[float, float]
    metric_epsg: int
    text_encoder_id: str
    normalize_text: bool = False
    init_temperature: float = 0.07
    city: str = ""
    bounds_m: tuple[float, float, float, float] | None = None  # min_x, min_y, max_x, max_y
    heads: int = 1
    head_names: tuple[str, ...] = ()

    @property
    def out_dim(self) -> int:
        """Columns of the location representation: ``encoder.embed_dim * heads``."""
        return self.encoder.embed_dim * self.heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        d = dict(d)
        d["encoder"] = EncoderConfig(**d["encoder"])
        d["centre_m"] = tuple(d["centre_m"])
        if d.get("bounds_m") is not None:
            d["bounds_m"] = tuple(d["bounds_m"])
        d["head_names"] = tuple(d.get("head_names", ()))
        return cls(**d)


class CalliperModel(nn.Module):
    """Location encoder (shared trunk, ``heads`` output blocks) + text projections + temperatures.

    With ``heads = H`` the network's last layer has ``embed_dim * H`` outputs (block h is head
    h), the text projection is one ``Linear(text_dim, embed_dim * H)`` whose output block h is
    head h's own ``Linear(text_dim -> embed_dim)``, and ``logit_scale`` has one entry per head.
    One fused layer per side equals H separate layers (each block has its own weights, and the
    default init draws each block from the same distribution); ``H = 1`` builds exactly the
    paper's model with the same parameter names, shapes and random draws.
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        if spec.heads < 1:
            raise ValueError(f"heads must be >= 1, got {spec.heads}")
        if spec.encoder.representation not in REPRESENTATIONS:
            raise ValueError(
                f"unknown representation {spec.encoder.representation!r}; "
                f"choose one of {REPRESENTATIONS}"
            )
        self.spec = spec
        self.heads = spec.heads
        self.embed_dim = spec.encoder.embed_dim
        enc_cfg = replace(spec.encoder, embed_dim=spec.out_dim)
        self.location_encoder = build_location_encoder(enc_cfg, centre_m=spec.centre_m)
        self.text_projection = nn.Linear(spec.text_dim, spec.out_dim)
        scale = math.log(1.0 / spec.init_temperature)
        # a 0-d scale for one head keeps the paper's state_dict (and old checkpoints) unchanged
        init = torch.tensor(scale) if spec.heads == 1 else torch.full((spec.heads,), scale)
        self.logit_scale = nn.Parameter(init)

    @property
    def input_space(self) -> str:
        """ "metric" (centred metres) or "wgs84" (lon, lat degrees)."""
        return str(self.location_encoder.input_space)

    @property
    def out_dim(self) -> int:
        """Columns of the location representation (``embed_dim * heads``)."""
        return self.spec.out_dim

    def head_slice(self, head: int) -> slice:
        """Columns of head ``head`` in the (N, embed_dim * heads) representation."""
        if not 0 <= head < self.heads:
            raise IndexError(f"head {head} out of range for {self.heads} head(s)")
        return slice(head * self.embed_dim, (head + 1) * self.embed_dim)

    def head_scale(self, head: int) -> Tensor:
        """Head ``head``'s logit scale (log of 1 / temperature), 0-d."""
        return self.logit_scale if self.heads == 1 else self.logit_scale[head]

    def temperatures(self) -> list[float]:
        """1 / exp(logit_scale) of every head."""
        return [float(t) for t in (1.0 / self.logit_scale.detach().exp()).reshape(-1)]

    def encode_location(self, coords: Tensor) -> Tensor:
        """(N, 2) prepared coordinates -> (N, embed_dim * heads) embeddings (not normalised)."""
        return self.location_encoder(coords)

    def represent(self, coords: Tensor) -> Tensor:
        """The location representation (N, embed_dim * heads) that ``predict`` returns.

        ``spec.encoder.representation``: ``"raw"``, the network's outputs as they are;
        ``"unit_heads"``, each head's ``embed_dim`` columns L2-normalised (the vectors the
        contrastive loss compares; training does not depend on this choice).
        """
        out = self.encode_location(coords)
        kind = self.spec.encoder.representation
        if kind == "raw":
            return out
        if kind == "unit_heads":
            heads = out.reshape(out.shape[0], self.heads, self.embed_dim)
            return F.normalize(heads, dim=-1).reshape(out.shape[0], self.out_dim)
        raise ValueError(f"unknown representation {kind!r}; choose raw or unit_heads")

    def encode_text(self, text_embeddings: Tensor, head: int | None = None) -> Tensor:
        """(N, text_dim) frozen text embeddings -> projected text vectors.

        Args:
            text_embeddings: (N, text_dim).
            head: project with this head's projection, (N, embed_dim); None: every head's,
                concatenated, (N, embed_dim * heads), the same layout as the location side.
        """
        if head is None or self.heads == 1:
            projected = self.text_projection(text_embeddings)
            if self.spec.normalize_text and self.heads > 1:
                return torch.cat(
                    [
                        F.normalize(projected[:, self.head_slice(h)], dim=-1)
                        for h in range(self.heads)
                    ],
                    dim=1,
                )
        else:
            cols = self.head_slice(head)
            w, b = self.text_projection.weight[cols], self.text_projection.bias[cols]
            projected = F.linear(text_embeddings, w, b)
        return F.normalize(projected, dim=-1) if self.spec.normalize_text else projected

    def encode_text_mixture(self, weights: Tensor, text_table: Tensor, head: int) -> Tensor:
        """Head ``head``'s projection of per-sample mixtures of texts, (B, embed_dim).

        The target text embedding of sample i is ``weights[i] @ text_table``; since the
        projection is affine, ``W (w @ T) + b = w @ (T W^T) + b``: the (U, text_dim) table is
        projected once per batch instead of B (B, text_dim) rows.

        Args:
            weights: (B, U) mixture weights over the rows of ``text_table``.
            text_table: (U, text_dim) frozen text embeddings.
        """
        cols = self.head_slice(head)
        w, b = self.text_projection.weight[cols], self.text_projection.bias[cols]
        projected = weights @ (text_table @ w.t()) + b
        return F.normalize(projected, dim=-1) if self.spec.normalize_text else projected

    def logits(self, location_features: Tensor, text_features: Tensor, head: int = 0) -> Tensor:
        """(T, B) logits_per_text of one head from already encoded sides.

        Args:
            location_features: (B, embed_dim * heads) from :meth:`encode_location` (or only
                this head's (B, embed_dim) columns); normalised here.
            text_features: (T, embed_dim) this head's projected texts.
        """
        if location_features.shape[1] != self.embed_dim:
            location_features = location_features[:, self.head_slice(head)]
        loc = F.normalize(location_features, dim=-1)
        # the scale multiplies the (T, embed_dim) side, not the (T, B) product: one pass over
        # the small matrix instead of two (forward and backward) over the large one
        return (self.head_scale(head).exp() * text_features) @ loc.t()

    def forward(self, coords: Tensor, text_embeddings: Tensor, head: int = 0) -> Tensor:
        """logits_per_text (B, B) of head ``head`` for a batch of (coordinate, text) pairs."""
        text = self.encode_text(text_embeddings, head=head if self.heads > 1 else None)
        return self.logits(self.encode_location(coords), text, head)


def prepare_coords(
    spec: ModelSpec,
    input_space: str,
    x_m: np.ndarray | None = None,
    y_m: np.ndarray | None = None,
    lon: np.ndarray | None = None,
    lat: np.ndarray | None = None,
) -> np.ndarray:
    """Coordinates as the location encoder wants them, (N, 2) float32.

    Metric encodings take centred metres, computed in float64 before the cast so that float32
    keeps metre precision; spherical encodings take (lon, lat) in degrees.
    """
    if input_space == "metric":
        if x_m is None or y_m is None:
            raise ValueError("a metric location encoder needs x_m and y_m")
        cx, cy = spec.centre_m
        xy = np.stack([np.asarray(x_m, np.float64) - cx, np.asarray(y_m, np.float64) - cy], 1)
        return xy.astype(np.float32)
    if lon is None or lat is None:
        raise ValueError("a spherical location encoder needs lon and lat")
    return np.stack([np.asarray(lon, np.float64), np.asarray(lat, np.float64)], 1).astype(
        np.float32
    )


@torch.no_grad()
def embed_coords(
    model: CalliperModel, coords: np.ndarray, batch_size: int = 16384, device: str = "cpu"
) -> np.ndarray:
    """Location representations (N, embed_dim * heads) float32 for prepared coords, in eval
    mode (:meth:`CalliperModel.represent`)."""
    was_training = model.training
    model.eval()
    model.to(device)
    out = []
    for start in range(0, len(coords), batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(coords[start : start + batch_size]))
        out.append(model.represent(chunk.to(device)).float().cpu().numpy())
    model.train(was_training)
    if not out:
        return np.zeros((0, model.out_dim), np.float32)
    return np.concatenate(out, 0)


def embed_points(
    model: CalliperModel,
    x_m: np.ndarray | None = None,
    y_m: np.ndarray | None = None,
    lon: np.ndarray | None = None,
    lat: np.ndarray | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """Embed points given in the city's metric CRS (x_m, y_m) and/or WGS84 (lon, lat)."""
    coords = prepare_coords(model.spec, model.input_space, x_m, y_m, lon, lat)
    return embed_coords(model, coords, device=device)


#: Version tag of the file layout written by :func:`save_model`.
MODEL_FORMAT = "calliper-model/2"


def save_model(path: Path, model: CalliperModel, extra: dict[str, Any] | None = None) -> Path:
    """Write weights and spec to one torch file (loadable with :func:`load_model`).

    The file holds only tensors and strings: ``{"format", "spec_json", "extra_json",
    "state_dict"}``, the spec and ``extra`` serialised as JSON, so that it loads with
    ``torch.load(weights_only=True)`` (no pickled objects, no code run on load).

    Args:
        path: destination (parents created); written atomically.
        model: the model to save.
        extra: JSON-serialisable metadata kept beside the weights.
    """
    return save_weights(path, model.spec, model.state_dict(), extra)


def save_weights(
    path: Path,
    spec: ModelSpec,
    state_dict: dict[str, Tensor],
    extra: dict[str, Any] | None = None,
) -> Path:
    """:func:`save_model` from a spec and a state dict (e.g. a kept best-epoch copy)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": MODEL_FORMAT,
        "spec_json": spec.to_json(),
        "extra_json": json.dumps(extra or {}, sort_keys=True),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a crash never leaves a half-written model
    return path


def load_model(path: Path, map_location: str = "cpu") -> CalliperModel:
    """Rebuild a model saved by :func:`save_model` (eval mode).

    Loads with ``weights_only=True``: a file holding pickled objects (a crafted payload, or a
    model written before :data:`MODEL_FORMAT` with its spec as a pickled dict) is refused with
    ``pickle.UnpicklingError`` before anything in it runs.
    """
    payload = torch.load(Path(path), map_location=map_location, weights_only=True)
    # files written before MODEL_FORMAT hold the spec as a dict of primitives (still loadable)
    spec_dict = json.loads(payload["spec_json"]) if "spec_json" in payload else payload["spec"]
    model = CalliperModel(ModelSpec.from_dict(spec_dict))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model


def load_model_extra(path: Path) -> dict[str, Any]:
    """The ``extra`` metadata saved with a model ({} when none), loaded as safely."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    return dict(json.loads(payload.get("extra_json", "{}")))
