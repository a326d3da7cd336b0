"""Feature builders for the baselines every results table shows next to a trained encoder.

Each returns an (N, D) float32 array, one row per query point, to feed
:func:`~calliper_pipeline.evaluation.protocol.evaluate_features` raw (the protocol does not
standardise). :func:`baseline_results` evaluates all four for a city under every protocol
(features -> probes -> one tidy table).

- :func:`raw_coordinate_features`: min-max scaled metric coordinates (D = 2).
- :func:`positional_encoding_features`: the positional encoding alone: no network, no training,
  no POIs (grid: D = 4 * frequency_num = 128).
- :func:`untrained_encoder_features`: the paper's encoder (encoding + network) at its seeded
  random initialisation, in eval mode (D = embed_dim = 128).
- :func:`poi_count_features`: log1p counts of POIs of each category within each radius.

Coordinates are metres in the city's metric CRS (``x_m``, ``y_m``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from scipy.spatial import cKDTree
from torch import nn

from calliper_pipeline.config import EncoderConfig, ProbeConfig
from calliper_pipeline.evaluation.data import LabelledPoints
from calliper_pipeline.evaluation.probes import seeded
from calliper_pipeline.evaluation.protocol import FeatureFn, evaluate_feature_fn
from calliper_pipeline.progress import LogFn, emit

DEFAULT_RADII_M = (200.0, 500.0, 1000.0, 2000.0)

# the encoder labels of the baseline rows (stored in the evaluation table: keep them stable)
RAW_COORDINATES = "baseline: raw coordinates (min-max)"
POSITIONAL_ENCODING = "baseline: grid positional encoding alone"
UNTRAINED_ENCODER = "baseline: untrained grid + FCNet"
POI_COUNTS = "baseline: POI category counts (200-2000 m, log1p)"


def _xy(x_m: np.ndarray, y_m: np.ndarray) -> np.ndarray:
    x = np.asarray(x_m, np.float64).ravel()
    y = np.asarray(y_m, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x_m and y_m differ in length: {x.shape} vs {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("coordinates contain NaN or infinite values")
    return np.stack([x, y], axis=1)


def raw_coordinate_features(
    x_m: np.ndarray,
    y_m: np.ndarray,
    ref_x: np.ndarray | None = None,
    ref_y: np.ndarray | None = None,
) -> np.ndarray:
    """(N, 2) coordinates min-max scaled per axis with the range of a reference set.

    The reference defaults to the points themselves (the simple choice: each evaluation set is
    scaled by its own extent, test points included; only coordinates are used, no labels), so
    values lie in [0, 1]. Pass ``ref_x``/``ref_y`` (e.g. the city's POIs or boundary) to share
    one scale across sets; points outside the reference extent then fall outside [0, 1].
    """
    xy = _xy(x_m, y_m)
    if ref_x is None and ref_y is None:
        ref = xy
    elif ref_x is not None and ref_y is not None:
        ref = _xy(ref_x, ref_y)
    else:
        raise ValueError("give both ref_x and ref_y, or neither")
    if len(ref) == 0:
        raise ValueError("empty reference set")
    lo, hi = ref.min(axis=0), ref.max(axis=0)
    if (hi <= lo).any():
        raise ValueError(f"reference extent is zero along an axis: min {lo}, max {hi}")
    return ((xy - lo) / (hi - lo)).astype(np.float32)


@torch.no_grad()
def _encode(
    module: nn.Module,
    x_m: np.ndarray,
    y_m: np.ndarray,
    centre_m: tuple[float, float],
    batch_size: int,
) -> np.ndarray:
    """Run a metric location module on centred float32 metres, in eval mode, in chunks."""
    space = getattr(module, "input_space", "metric")
    if str(space) != "metric":
        raise ValueError(f"this baseline feeds metric coordinates; the module takes {space}")
    # centre in float64 first: raw eastings (~500,000 m) lose metre precision in float32
    xy = (_xy(x_m, y_m) - np.asarray(centre_m, np.float64)).astype(np.float32)
    module.eval()
    chunks = [
        module(torch.from_numpy(xy[s : s + batch_size])).float().numpy()
        for s in range(0, len(xy), batch_size)
    ]
    if not chunks:
        raise ValueError("no points to encode")
    return np.ascontiguousarray(np.concatenate(chunks, axis=0), dtype=np.float32)


def positional_encoding_features(
    x_m: np.ndarray,
    y_m: np.ndarray,
    encoder_cfg: EncoderConfig,
    centre_m: tuple[float, float],
    batch_size: int = 65_536,
) -> np.ndarray:
    """(N, D) positional encoding alone (grid: D = 4 * frequency_num), as the authors compute it.

    Args:
        centre_m: the city centre (x, y) metres the encoding module centres on; it is subtracted
            here before the float32 cast, as the module's contract requires.
    """
    # imported here so the raw and count baselines work without the location package
    from calliper_pipeline.model.encodings import build_positional_encoding

    module = build_positional_encoding(encoder_cfg, centre_m=centre_m)
    return _encode(module, x_m, y_m, centre_m, batch_size)


def untrained_encoder_features(
    x_m: np.ndarray,
    y_m: np.ndarray,
    encoder_cfg: EncoderConfig,
    centre_m: tuple[float, float],
    seed: int = 42,
    batch_size: int = 65_536,
) -> np.ndarray:
    """(N, embed_dim) output of the paper's encoder at its random initialisation (eval mode).

    The weights are drawn after ``torch.manual_seed(seed)`` (the caller's RNG state is
    restored afterwards), so the baseline is reproducible.
    """
    from calliper_pipeline.model.encodings import build_location_encoder

    with seeded(seed):
        module = build_location_encoder(encoder_cfg, centre_m=centre_m)
    return _encode(module, x_m, y_m, centre_m, batch_size)


def poi_count_feature_names(
    categories: Sequence[str], radii_m: Sequence[float] = DEFAULT_RADII_M
) -> list[str]:
    """Column names of :func:`poi_count_features`: radius-major, ``"<category>@<radius>m"``."""
    return [f"{c}@{r:g}m" for r in radii_m for c in categories]


def poi_count_features(
    x_m: np.ndarray,
    y_m: np.ndarray,
    poi_x_m: np.ndarray,
    poi_y_m: np.ndarray,
    poi_category: np.ndarray,
    categories: Sequence[str] | None = None,
    radii_m: Sequence[float] = DEFAULT_RADII_M,
    workers: int = 1,
) -> np.ndarray:
    """(N, len(radii_m) * len(categories)) log1p counts of POIs per category within each radius.

    A POI counts when its Euclidean distance in the metric CRS is <= the radius. Columns are
    radius-major (all categories at the first radius, then the next; see
    :func:`poi_count_feature_names`). ``categories`` fixes the column order (default: the sorted
    distinct POI categories); POIs of other categories are ignored. One k-d tree per category
    answers each radius with counts only (``return_length``), so no neighbour lists are built.

    Args:
        workers: scipy query threads (-1: all cores).
    """
    queries = _xy(x_m, y_m)
    pois = _xy(poi_x_m, poi_y_m)
    cats = np.asarray(poi_category, dtype=object).ravel()
    if len(cats) != len(pois):
        raise ValueError(f"{len(cats)} POI categories for {len(pois)} POI coordinates")
    if any(c is None or (isinstance(c, float) and np.isnan(c)) for c in cats):
        raise ValueError("POI categories contain missing values")
    cats = cats.astype(str)
    cols = list(categories) if categories is not None else sorted(set(cats.tolist()))
    radii = [float(r) for r in radii_m]
    if not cols or not radii or min(radii) <= 0:
        raise ValueError("need at least one category and positive radii")
    out = np.zeros((len(queries), len(radii) * len(cols)), dtype=np.float32)
    for j, cat in enumerate(cols):
        members = pois[cats == cat]
        if len(members) == 0:
            continue
        tree = cKDTree(members)
        for i, r in enumerate(radii):
            counts = tree.query_ball_point(queries, r, return_length=True, workers=workers)
            out[:, i * len(cols) + j] = np.log1p(counts)
    return out


class EvaluationSetsLike(Protocol):
    """A city's downstream sets (e.g. ``steps.assess.EvaluationSets``); either may be None."""

    @property
    def landuse(self) -> LabelledPoints | None: ...

    @property
    def socioeconomic(self) -> LabelledPoints | None: ...


def baseline_feature_fns(
    pois: pd.DataFrame,
    encoder_cfg: EncoderConfig,
    centre_m: tuple[float, float],
    init_seed: int = 42,
    count_radii_m: Sequence[float] = DEFAULT_RADII_M,
) -> dict[str, FeatureFn]:
    """The four baselines as feature functions, by their encoder label.

    Args:
        pois: the city's POIs with ``x_m``, ``y_m`` (metres, the metric CRS of the points)
            and ``category``; only the counts baseline reads them.
        encoder_cfg: the encoder whose positional encoding / network the baselines use.
        centre_m: the model's centre (x, y), metres.
        init_seed: torch seed of the untrained network's weights.
        count_radii_m: radii of the POI counts, metres.
    """
    categories = sorted(pois["category"].astype(str).unique())
    px, py = pois["x_m"].to_numpy(), pois["y_m"].to_numpy()
    pc = pois["category"].astype(str).to_numpy()
    return {
        RAW_COORDINATES: lambda p: raw_coordinate_features(p.x_m, p.y_m),
        POSITIONAL_ENCODING: lambda p: positional_encoding_features(
            p.x_m, p.y_m, encoder_cfg, centre_m
        ),
        UNTRAINED_ENCODER: lambda p: untrained_encoder_features(
            p.x_m, p.y_m, encoder_cfg, centre_m, seed=init_seed
        ),
        POI_COUNTS: lambda p: poi_count_features(
            p.x_m, p.y_m, px, py, pc, categories, radii_m=count_radii_m
        ),
    }


def baseline_results(
    sets: EvaluationSetsLike,
    pois: pd.DataFrame,
    encoder_cfg: EncoderConfig,
    probe_cfg: ProbeConfig,
    centre_m: tuple[float, float],
    init_seed: int = 42,
    log: LogFn | None = None,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """Every baseline of a city through the probes under every protocol: one tidy table.

    The rows are :meth:`~calliper_pipeline.evaluation.protocol.EvaluationResult.to_frame`'s
    (encoder, protocol, task, probe, metric, mean, std, n_seeds, mean_x100, std_x100), the four
    baselines one after the other; ``probe_cfg.protocols`` picks the protocols and
    ``probe_cfg.count_radii_m`` the count radii. About half a minute per baseline on one core.

    Args:
        sets: the city's land-use and socio-economic points (either may be None).
        pois: the city's POIs (``x_m``, ``y_m`` metres in the points' metric CRS, ``category``).
        encoder_cfg: the encoder configuration the positional-encoding baselines follow.
        probe_cfg: probe configuration.
        centre_m: the model's centre (x, y), metres in the metric CRS.
        init_seed: torch seed of the untrained network (the training seed).
        log: one line per baseline evaluated; None: quiet.
        device: where the probes train.

    Raises:
        ValueError: the city has neither set.
    """
    if sets.landuse is None and sets.socioeconomic is None:
        raise ValueError("the city has no evaluation set: no baseline to evaluate")
    builders = baseline_feature_fns(pois, encoder_cfg, centre_m, init_seed, probe_cfg.count_radii_m)
    frames = []
    for name, fn in builders.items():
        t0 = time.perf_counter()
        result = evaluate_feature_fn(
            fn, sets.landuse, sets.socioeconomic, probe_cfg, name=name, device=device
        )
        frames.append(result.to_frame())
        emit(log, f"evaluated {name} in {time.perf_counter() - t0:.1f} s")
    return pd.concat(frames, ignore_index=True)
