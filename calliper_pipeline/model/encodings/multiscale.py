"""Multi-scale sinusoidal encodings of metric coordinates (Space2Vec grid and theory).

For unit directions ``u_d`` and wavelengths ``lambda_s`` (metres) the features are
``sin(a_ds)`` and ``cos(a_ds)`` with the angle (radians)

    a_ds = (u_d . p) / lambda_s,   p = raw coordinates in metres (e.g. British National Grid),

exactly as the CaLLiPer authors compute them in float64 on *raw* coordinates. Raw eastings are
~5e5 m, and a float32 angle of 5e5 / 100 m = 5e3 rad is only good to ~3e-4, so the model is fed
*centred* coordinates ``q = p - c`` (``c``: the city centre, float64) and the encoding adds back
the phase the centring removed:

    a_ds = (u_d . q) / lambda_s + phi_ds,   phi_ds = ((u_d . c) / lambda_s) mod 2 pi,

with ``phi`` computed once in float64. The result equals the authors' encoding of the raw point.

Float32 arithmetic on the centred angle alone still loses ~1.5e-5 rad at 26 km from the centre
(an angle of 260 rad has a float32 spacing of 3e-5), so the phase is tabulated on a lattice:
``q = k * STEP + r`` with integer ``k`` (|k| <= TABLE_HALF_STEPS) and |r| <= STEP / 2, and

    a_ds = T_x[k_x, d, s] + T_y[k_y, d, s] + (u_d . r) / lambda_s,

where the tables hold ``(k * STEP * u_d / lambda_s + phi_ds)`` reduced to [-pi, pi) in float64
and stored as float32. Every float32 term is then below ~7 rad, so the computed angle is good to
~5e-7 rad; what remains is the float32 rounding of the *input* itself (1 mm at 16-32 km from the
centre, i.e. <= 1e-5 rad at lambda = 100 m). Beyond the table (|q| > 131 km) the formula stays
exact and precision degrades gracefully to that of plain float32. Float64 input is encoded in
float64 throughout (no table).

The tables and constants are non-persistent buffers rebuilt from float64 masters on every
``.to()`` / ``.float()`` / ``.half()``, so a cast never rounds them; ``centre_m`` is a persistent
float64 buffer and loading a state dict saved with another centre raises :class:`ConfigError`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Final, Self

import numpy as np
import torch
from torch import Tensor

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.model.encodings.base import InputSpace, PositionalEncoding, check_coords

TABLE_STEP_M: Final = 128.0  # lattice step, metres; a power of two keeps k * STEP exact
TABLE_HALF_STEPS: Final = 1024  # the table covers |q| <= 1024 * 128 m = 131 km per axis


def geometric_wavelengths(
    min_lambda_m: float, max_lambda_m: float, frequency_num: int
) -> np.ndarray:
    """Wavelengths ``lambda_s = min * (max / min) ** (s / (S - 1))``, s = 0..S-1, smallest first.

    Computed as the authors do (``min * exp(s * log(max / min) / (S - 1))`` in float64), which
    reproduces their features bit for bit.

    Args:
        min_lambda_m: smallest wavelength, metres (> 0).
        max_lambda_m: largest wavelength, metres (>= min_lambda_m).
        frequency_num: number of scales S (>= 1; S = 1 gives just ``min_lambda_m``).

    Returns:
        (S,) float64 array of wavelengths in metres.
    """
    if frequency_num < 1:
        raise ConfigError(f"frequency_num must be >= 1, got {frequency_num}")
    if not 0 < min_lambda_m <= max_lambda_m:
        raise ConfigError(
            f"need 0 < min_lambda_m <= max_lambda_m, got {min_lambda_m} and {max_lambda_m}"
        )
    if frequency_num == 1:
        return np.array([float(min_lambda_m)])
    increment = math.log(float(max_lambda_m) / float(min_lambda_m)) / (frequency_num - 1.0)
    return float(min_lambda_m) * np.exp(np.arange(frequency_num, dtype=np.float64) * increment)


def _wrap_to_pi(angle: np.ndarray) -> np.ndarray:
    """Reduce radians to [-pi, pi) in float64."""
    return np.remainder(angle + math.pi, 2.0 * math.pi) - math.pi


def _project(coords: Tensor, directions: Tensor) -> Tensor:
    """``coords . u_d`` for each direction, (..., 2) x (D, 2) -> (..., D).

    Elementwise rather than a matmul, which autocast would run in bf16/fp16.
    """
    return coords[..., 0:1] * directions[:, 0] + coords[..., 1:2] * directions[:, 1]


class MultiScaleSinusoidal(PositionalEncoding):
    """Sin/cos of centred-metre projections onto unit directions at geometric wavelengths.

    Subclasses set ``directions`` (D unit vectors) and ``scale_major`` (feature order: scale,
    direction, sin/cos when True; direction, scale, sin/cos when False). ``out_dim = 2 * D * S``.

    Args:
        min_lambda_m: smallest wavelength, metres.
        max_lambda_m: largest wavelength, metres.
        frequency_num: number of scales S.
        centre_m: the city centre (x, y) in metres subtracted from the input, float64.
    """

    input_space: ClassVar[InputSpace] = "metric"
    persistent_constants: ClassVar[frozenset[str]] = frozenset({"centre_m"})
    directions: ClassVar[tuple[tuple[float, float], ...]]
    scale_major: ClassVar[bool]
    centre_m: Tensor  # (2,) float64, metres (persistent)
    directions64: Tensor  # (D, 2) unit vectors
    inv_lambda64: Tensor  # (S,) 1/m
    phase64: Tensor  # (D, S) rad, the centre's phase
    directions32: Tensor
    inv_lambda32: Tensor
    table_x: Tensor  # (2 * TABLE_HALF_STEPS + 1, D, S) float32 rad
    table_y: Tensor

    def __init__(
        self,
        min_lambda_m: float = 100.0,
        max_lambda_m: float = 10_000.0,
        frequency_num: int = 32,
        centre_m: tuple[float, float] = (0.0, 0.0),
    ):
        super().__init__()
        self._wavelengths = geometric_wavelengths(min_lambda_m, max_lambda_m, frequency_num)
        self._centre = (float(centre_m[0]), float(centre_m[1]))
        self.out_dim = 2 * len(self.directions) * frequency_num
        self._register_constants()

    @classmethod
    def from_config(cls, cfg: EncoderConfig, centre_m: tuple[float, float] = (0.0, 0.0)) -> Self:
        """Build from ``cfg.min_lambda_m``, ``cfg.max_lambda_m`` and ``cfg.frequency_num``."""
        return cls(cfg.min_lambda_m, cfg.max_lambda_m, cfg.frequency_num, centre_m)

    @property
    def wavelengths_m(self) -> tuple[float, ...]:
        """The S wavelengths in metres, smallest first."""
        return tuple(float(v) for v in self._wavelengths)

    @property
    def centre(self) -> tuple[float, float]:
        """The centre (x, y) in metres that input coordinates are relative to."""
        return self._centre

    def _constants(self) -> dict[str, Tensor]:
        """All buffers, computed in float64 from the masters (then cast where stated)."""
        u = np.asarray(self.directions, dtype=np.float64)  # (D, 2)
        inv = 1.0 / self._wavelengths  # (S,) 1/m
        centre = np.asarray(self._centre, dtype=np.float64)
        phase = np.remainder((u @ centre)[:, None] * inv, 2.0 * math.pi)  # (D, S) rad
        steps = np.arange(-TABLE_HALF_STEPS, TABLE_HALF_STEPS + 1) * TABLE_STEP_M  # (K,) m
        lattice = steps[:, None, None] * inv  # (K, 1, S) rad per unit direction component
        table_x = _wrap_to_pi(lattice * u[None, :, 0, None] + phase)  # (K, D, S)
        table_y = _wrap_to_pi(lattice * u[None, :, 1, None])  # (K, D, S)
        f64, f32 = torch.float64, torch.float32
        return {
            "centre_m": torch.tensor(centre, dtype=f64),
            "directions64": torch.tensor(u, dtype=f64),
            "inv_lambda64": torch.tensor(inv, dtype=f64),
            "phase64": torch.tensor(phase, dtype=f64),
            "directions32": torch.tensor(u, dtype=f32),
            "inv_lambda32": torch.tensor(inv, dtype=f32),
            "table_x": torch.tensor(table_x, dtype=f32),
            "table_y": torch.tensor(table_y, dtype=f32),
        }

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        saved = state_dict.get(prefix + "centre_m")
        if saved is not None and saved.numel() == 2:  # a wrong shape is torch's own error
            saved_xy = [float(v) for v in saved.detach().double().cpu().reshape(2).tolist()]
            if max(abs(a - b) for a, b in zip(saved_xy, self._centre, strict=True)) > 1e-6:  # m
                raise ConfigError(
                    f"state dict was saved with centre_m={tuple(saved_xy)} but this "
                    f"{self.name!r} encoding was built with centre_m={self._centre}; build it "
                    "with the saved centre (coordinates must be centred on it)"
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        lam = self._wavelengths
        return (
            f"name={self.name!r}, scales={len(lam)}, lambda_m=[{lam[0]:g}, {lam[-1]:g}], "
            f"centre_m={self._centre}, out_dim={self.out_dim}"
        )

    def angles(self, coords: Tensor) -> Tensor:
        """Angles ``a_ds`` in radians, (..., D, S): float64 for float64 input, else float32.

        Args:
            coords: (..., 2) centred metres ``(x - centre_x, y - centre_y)``.
        """
        if coords.dtype == torch.float64:
            projected = _project(coords, self.directions64)  # (..., D) metres
            return projected.unsqueeze(-1) * self.inv_lambda64 + self.phase64
        coords = coords.float()
        with torch.no_grad():
            k = torch.round(coords * (1.0 / TABLE_STEP_M))
            # NaN would make an invalid index (a device assert on CUDA): use row 0, the
            # remainder stays NaN and so does the output.
            k = torch.nan_to_num(k, nan=0.0).clamp(-TABLE_HALF_STEPS, TABLE_HALF_STEPS)
        remainder = coords - k * TABLE_STEP_M  # exact in float32, |r| <= 64 m inside the table
        index = (k + TABLE_HALF_STEPS).long()
        coarse = self.table_x[index[..., 0]] + self.table_y[index[..., 1]]  # (..., D, S)
        fine = _project(remainder, self.directions32).unsqueeze(-1) * self.inv_lambda32
        return coarse + fine

    def forward(self, coords: Tensor) -> Tensor:
        """Encode centred metres.

        Args:
            coords: (N, 2) or (..., 2) centred metres, float32 (float64 is computed in float64;
                half precision is computed in float32).

        Returns:
            (N, out_dim) features in [-1, 1], dtype of ``coords``.
        """
        check_coords(coords)
        angle = self.angles(coords)  # (..., D, S)
        if self.scale_major:
            angle = angle.transpose(-1, -2)  # (..., S, D)
        features = torch.stack((torch.sin(angle), torch.cos(angle)), dim=-1)
        return features.flatten(-3).to(coords.dtype)
