"""The CaLLiPer model: a location encoder aligned with projected, frozen text embeddings.

Text side: precomputed, frozen sentence embeddings (all-MiniLM-L6-v2, 384-d, L2-normalised)
go through a trainable ``Linear(384 -> 128)``. Following the authors' code the projected text
vector is *not* normalised again (``normalize_text=True`` gives the standard CLIP choice).
Location side: positional encoding + network, output L2-normalised for the logits. A learnable
``logit_scale`` (initialised to log(1/0.07)) scales the cosine similarities.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.model.encodings import build_location_encoder


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild a trained model (stored beside its weights).

    ``centre_m`` is the city centre in ``metric_epsg`` metres used to centre coordinates before
    the metric positional encodings (float32 then keeps sub-millimetre precision).
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        d = dict(d)
        d["encoder"] = EncoderConfig(**d["encoder"])
        d["centre_m"] = tuple(d["centre_m"])
        if d.get("bounds_m") is not None:
            d["bounds_m"] = tuple(d["bounds_m"])
        return cls(**d)


class CalliperModel(nn.Module):
    """Location encoder + text projection + temperature."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.location_encoder = build_location_encoder(spec.encoder, centre_m=spec.centre_m)
        self.text_projection = nn.Linear(spec.text_dim, spec.encoder.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / spec.init_temperature)))

    @property
    def input_space(self) -> str:
        """ "metric" (centred metres) or "wgs84" (lon, lat degrees)."""
        return str(self.location_encoder.input_space)

    def encode_location(self, coords: Tensor) -> Tensor:
        """(N, 2) prepared coordinates -> (N, embed_dim) location embeddings (not normalised)."""
        return self.location_encoder(coords)

    def encode_text(self, text_embeddings: Tensor) -> Tensor:
        """(N, text_dim) frozen text embeddings -> (N, embed_dim) projected text vectors."""
        projected = self.text_projection(text_embeddings)
        return F.normalize(projected, dim=-1) if self.spec.normalize_text else projected

    def logits(self, location_features: Tensor, text_features: Tensor) -> Tensor:
        """(B, B) logits_per_text from already encoded sides (location side gets normalised)."""
        loc = F.normalize(location_features, dim=-1)
        return self.logit_scale.exp() * text_features @ loc.t()

    def forward(self, coords: Tensor, text_embeddings: Tensor) -> Tensor:
        """logits_per_text (B, B) for a batch of (coordinate, text embedding) pairs."""
        return self.logits(self.encode_location(coords), self.encode_text(text_embeddings))


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
    """Location embeddings (N, embed_dim) float32 for prepared coords, in eval mode."""
    was_training = model.training
    model.eval()
    model.to(device)
    out = []
    for start in range(0, len(coords), batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(coords[start : start + batch_size]))
        out.append(model.encode_location(chunk.to(device)).float().cpu().numpy())
    model.train(was_training)
    if not out:
        return np.zeros((0, model.spec.encoder.embed_dim), np.float32)
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


def save_model(path: Path, model: CalliperModel, extra: dict[str, Any] | None = None) -> Path:
    """Write weights and spec to one torch file (loadable with :func:`load_model`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "spec": model.spec.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a crash never leaves a half-written model
    return path


def load_model(path: Path, map_location: str = "cpu") -> CalliperModel:
    """Rebuild a model saved by :func:`save_model` (eval mode)."""
    payload = torch.load(Path(path), map_location=map_location, weights_only=False)
    model = CalliperModel(ModelSpec.from_dict(payload["spec"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model
