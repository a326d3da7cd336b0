"""FLOP counts of the training step (multiply-add = 2 FLOP; elementwise work not counted except
the positional encoding's, which is all elementwise).

Two counts per POI and step:

- **nominal**: what the paper's step does: positional encoding, FCNet forward and backward,
  the text projection of every POI's text (forward and weight gradient: the text embeddings
  are frozen inputs), and the (B, B) logits (forward and both input gradients). The issue's
  "~4.5 MFLOP per POI per step" is this count; achieved FLOP/s on it is comparable to the
  paper code's and to any plain implementation (like MFU).
- **executed**: what this implementation computes: the positional encoding is computed once
  per run, and with U distinct texts <= B the projection runs on U texts and the scores are
  (U, B) (``loss.clip_loss_grouped``).
"""

from __future__ import annotations

from dataclasses import dataclass

from calliper_pipeline.config import EncoderConfig

PE_FLOP_PER_ANGLE = 8  # table gathers + adds, fine term (2 mul + add), sin, cos: ~8 operations


@dataclass(frozen=True)
class StepFlops:
    """FLOP per POI of one training step (forward + backward) and of a forward pass."""

    pe: float
    fcnet_forward: float
    fcnet_backward: float
    projection: float  # forward + weight gradient
    logits: float  # forward + backward

    @property
    def train(self) -> float:
        return self.pe + self.fcnet_forward + self.fcnet_backward + self.projection + self.logits

    @property
    def forward(self) -> float:
        """Forward only (validation): PE, FCNet forward, a third of projection and logits."""
        return self.pe + self.fcnet_forward + self.projection / 2 + self.logits / 3


def fcnet_macs(cfg: EncoderConfig, in_dim: int) -> tuple[int, int]:
    """(MACs per POI of the forward pass, of the first layer alone) of the FCNet."""
    h = cfg.hidden_dim
    first = in_dim * h
    return first + cfg.num_layers * 2 * h * h + h * cfg.embed_dim, first


def pe_out_dim(cfg: EncoderConfig) -> int:
    return 4 * cfg.frequency_num  # grid: sin and cos of 2 axes at S scales


def step_flops(
    cfg: EncoderConfig,
    batch: int,
    text_dim: int = 384,
    distinct_texts: int | None = None,
    nominal: bool = True,
) -> StepFlops:
    """FLOP per POI of one training step of the grid + FCNet model.

    Args:
        cfg: encoder configuration (grid PE, FCNet).
        batch: POIs per batch B.
        text_dim: frozen text embedding size D.
        distinct_texts: U, the distinct texts (executed count only; None: U = B).
        nominal: the paper's step (see the module docstring) or what this code executes.
    """
    in_dim = pe_out_dim(cfg)
    fwd, first = fcnet_macs(cfg, in_dim)
    e = cfg.embed_dim
    # backward: weight gradients of every layer, input gradients of all but the first
    fcnet_bwd = 2 * fwd + 2 * (fwd - first)
    u = batch if nominal or distinct_texts is None else min(distinct_texts, batch)
    pe = 0.0 if not nominal else 2 * cfg.frequency_num * PE_FLOP_PER_ANGLE
    projection = 2 * 2 * text_dim * e * u / batch  # forward + weight gradient, per POI
    logits = 3 * 2 * u * e  # (U, B) scores: forward + 2 input gradients, per POI
    return StepFlops(
        pe=pe,
        fcnet_forward=2.0 * fwd,
        fcnet_backward=float(fcnet_bwd),
        projection=projection,
        logits=float(logits),
    )
