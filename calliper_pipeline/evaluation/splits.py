"""Train / validation / test splits of an evaluation set: the paper's random split and
spatial blocks.

Two protocols, both returning row positions ``(train, val, test)`` as int64 arrays:

- ``"random"`` (:func:`fixed_split`, the paper's): ``train_test_split(test_size=0.2,
  random_state=42)`` over the rows in file order, then 10 % of the remainder as validation
  (``random_state=42``). One split for every probe seed.
- ``"blocks"`` (:func:`block_split`, beside the paper, as CityRep): a ``grid`` x ``grid`` grid
  of equal rectangular blocks over the bounding box of the points (metres in the city's metric
  CRS, e.g. EPSG:27700 for London). Whole blocks go to test and to validation, so no block is
  on two sides and a probe cannot interpolate between labelled neighbours. A fresh assignment
  per probe seed, drawn from ``numpy.random.default_rng(seed)``: it depends only on the
  coordinates and the seed, so every encoder and baseline sees the same split for a seed.

Drawing the blocks: the non-empty blocks are put in a random order and the shortest prefix
whose row count is closest to the target goes to test (target ``test_fraction`` of the rows);
each block is equally likely to be drawn whatever its size, and the test share is the target
up to half a block's rows. Validation is drawn the same way from the remaining blocks (target
``val_fraction`` of the remaining rows). About ``test_fraction`` of the non-empty blocks end in
test when the blocks hold similar numbers of points.
"""

from __future__ import annotations

import numpy as np

from calliper_pipeline.config import ProbeConfig

RANDOM = "random"  # the paper's protocol: one random split for every seed
BLOCKS = "blocks"  # spatial blocks: whole grid blocks to test/validation, one draw per seed
PROTOCOLS = (RANDOM, BLOCKS)

Split = tuple[np.ndarray, np.ndarray, np.ndarray]


def fixed_split(n: int, cfg: ProbeConfig | None = None) -> Split:
    """The paper's random split: (train, val, test) row indices, int64, in sklearn's order.

    London LUC (6,697 rows) gives 4,821 / 536 / 1,340; SDM (4,994 rows) 3,595 / 400 / 999.

    Args:
        n: number of rows.
        cfg: ``test_fraction``, ``val_fraction`` and ``split_seed`` (the paper's by default).

    Raises:
        ValueError: fewer than 3 rows.
    """
    cfg = cfg or ProbeConfig()
    if n < 3:
        raise ValueError(f"need at least 3 rows to split, got {n}")
    rows = np.arange(n, dtype=np.int64)
    from sklearn.model_selection import train_test_split  # ~1.5 s to import: when used

    rest, test = train_test_split(rows, test_size=cfg.test_fraction, random_state=cfg.split_seed)
    train, val = train_test_split(rest, test_size=cfg.val_fraction, random_state=cfg.split_seed)
    return np.asarray(train), np.asarray(val), np.asarray(test)


def block_ids(x_m: np.ndarray, y_m: np.ndarray, grid: int = 10) -> np.ndarray:
    """(N,) int64 block of each point in a ``grid`` x ``grid`` grid over the points' extent.

    Blocks are equal rectangles tiling the bounding box of the points (metres, metric CRS);
    block ``row * grid + col`` with ``col`` along x (east) and ``row`` along y (north). Points
    on the maximum edge go to the last block; an axis of zero extent has one block.

    Raises:
        ValueError: ``grid`` < 1, no points, mismatched or non-finite coordinates.
    """
    x = np.asarray(x_m, np.float64).ravel()
    y = np.asarray(y_m, np.float64).ravel()
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    if x.shape != y.shape or len(x) == 0:
        raise ValueError(f"need matching non-empty coordinates, got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("coordinates contain NaN or infinite values")
    cells = [_axis_cells(v, grid) for v in (x, y)]
    return cells[1] * grid + cells[0]


def _axis_cells(v: np.ndarray, grid: int) -> np.ndarray:
    lo, extent = v.min(), v.max() - v.min()
    if extent <= 0:
        return np.zeros(len(v), np.int64)
    return np.clip(np.floor((v - lo) / (extent / grid)).astype(np.int64), 0, grid - 1)


def _draw_blocks(
    blocks: np.ndarray, counts: np.ndarray, target: float, keep: int, rng: np.random.Generator
) -> np.ndarray:
    """The prefix of a random order of ``blocks`` whose rows come closest to ``target``.

    At least one block is drawn and at least ``keep`` are left over.
    """
    order = rng.permutation(len(blocks))
    cum = np.cumsum(counts[order])[: len(blocks) - keep]
    k = int(np.argmin(np.abs(cum - target))) + 1
    return blocks[order[:k]]


def block_split(
    x_m: np.ndarray,
    y_m: np.ndarray,
    seed: int,
    grid: int = 10,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
) -> Split:
    """Spatial-block split: (train, val, test) row indices, int64, each sorted ascending.

    Args:
        x_m, y_m: (N,) point coordinates, metres in the city's metric CRS (e.g. EPSG:27700).
        seed: the probe seed; the same seed and points give the same split.
        grid: blocks per axis (``grid`` x ``grid`` blocks over the points' bounding box).
        test_fraction: target share of the rows in test blocks.
        val_fraction: target share of the remaining (non-test) rows in validation blocks.

    Raises:
        ValueError: bad coordinates or fractions, or fewer than 3 non-empty blocks.
    """
    if not (0 < test_fraction < 1 and 0 < val_fraction < 1):
        raise ValueError(f"fractions must lie in (0, 1), got {test_fraction}, {val_fraction}")
    ids = block_ids(x_m, y_m, grid)
    blocks, counts = np.unique(ids, return_counts=True)
    if len(blocks) < 3:
        raise ValueError(
            f"need at least 3 non-empty blocks for a block split, got {len(blocks)} "
            f"({grid} x {grid} grid over {len(ids)} points)"
        )
    rng = np.random.default_rng(seed)
    test_blocks = _draw_blocks(blocks, counts, test_fraction * len(ids), 2, rng)
    rest = ~np.isin(blocks, test_blocks)
    n_rest = int(counts[rest].sum())
    val_blocks = _draw_blocks(blocks[rest], counts[rest], val_fraction * n_rest, 1, rng)
    test = np.isin(ids, test_blocks)
    val = np.isin(ids, val_blocks)
    rows = np.arange(len(ids), dtype=np.int64)
    return rows[~(test | val)], rows[val], rows[test]


def protocol_split(
    protocol: str,
    x_m: np.ndarray,
    y_m: np.ndarray,
    seed: int,
    cfg: ProbeConfig | None = None,
) -> Split:
    """(train, val, test) rows of one probe seed's run under ``protocol``.

    ``"random"``: :func:`fixed_split` (the same for every seed); ``"blocks"``:
    :func:`block_split` with ``cfg.block_grid``, ``cfg.block_test_fraction`` and
    ``cfg.val_fraction``.

    Args:
        protocol: ``"random"`` or ``"blocks"``.
        x_m, y_m: (N,) coordinates, metres in the metric CRS (only ``"blocks"`` reads them).
        seed: the probe seed.
        cfg: probe configuration (the paper's defaults).
    """
    cfg = cfg or ProbeConfig()
    if protocol == RANDOM:
        return fixed_split(len(np.asarray(x_m).ravel()), cfg)
    if protocol == BLOCKS:
        return block_split(
            x_m, y_m, seed, cfg.block_grid, cfg.block_test_fraction, cfg.val_fraction
        )
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
