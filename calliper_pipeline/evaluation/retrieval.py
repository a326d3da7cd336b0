"""Text-to-location retrieval: which cells of a city match a description best.

A query text goes through the frozen text encoder and the model's trained projection
(``encode_text``); every cell centroid goes through the location encoder. The score of a cell is
the cosine similarity of the two (both sides L2-normalised; for one query, the ranking equals
that of the model's training logits, which normalise the location side only).

:func:`retrieval_metrics` turns this into an evaluation: for held-out POIs, how highly is the
cell they lie in ranked among all cells, given only their description? Chance level is
recall@k% = k % and a median rank of about half the cells.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from calliper_pipeline.cities.cells import COL_CELL_ID, MapLayers
from calliper_pipeline.constants import COL_LAT, COL_LON, COL_X, COL_Y
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.model.calliper import CalliperModel, embed_coords, embed_points

if TYPE_CHECKING:
    import geopandas as gpd

    from calliper_pipeline.text.encoders import TextEncoder

TieRule = Literal["pessimistic", "average"]
DEFAULT_RECALL_PCTS: tuple[float, ...] = (1.0, 5.0, 10.0)


def _model_device(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cell_embeddings(model: CalliperModel, cells: pd.DataFrame, device: str = "cpu") -> np.ndarray:
    """(C, D) L2-normalised float32 location embeddings of the cells' centroids.

    Uses ``x_m``/``y_m`` or ``lon``/``lat`` as the model's location encoder needs.
    """
    raw = embed_points(
        model,
        x_m=cells[COL_X].to_numpy() if COL_X in cells else None,
        y_m=cells[COL_Y].to_numpy() if COL_Y in cells else None,
        lon=cells[COL_LON].to_numpy() if COL_LON in cells else None,
        lat=cells[COL_LAT].to_numpy() if COL_LAT in cells else None,
        device=device,
    )
    return _normalise(raw)


@torch.no_grad()
def _project_texts(
    model: CalliperModel, text_embeddings: np.ndarray | torch.Tensor
) -> torch.Tensor:
    """(N, text_dim) frozen text embeddings -> (N, D) unit vectors via ``model.encode_text``."""
    device = _model_device(model)
    text = torch.as_tensor(text_embeddings, dtype=torch.float32, device=device)
    if text.ndim != 2 or text.shape[1] != model.spec.text_dim:
        raise ValueError(
            f"text embeddings must have shape (N, {model.spec.text_dim}), got {tuple(text.shape)}"
        )
    was_training = model.training
    model.eval()
    try:
        return F.normalize(model.encode_text(text).float(), dim=-1)
    finally:
        model.train(was_training)


def query_vectors(
    model: CalliperModel, text_encoder: TextEncoder, queries: Sequence[str]
) -> np.ndarray:
    """(Q, D) unit query vectors: text encoder, then the model's text projection.

    Raises:
        ConfigError: the model was trained against a different text encoder.
    """
    trained_with = model.spec.text_encoder_id
    if trained_with and trained_with != text_encoder.encoder_id:
        raise ConfigError(
            f"model was trained with text encoder {trained_with!r}; "
            f"queries were encoded with {text_encoder.encoder_id!r}"
        )
    emb = text_encoder.encode(list(queries))
    return _project_texts(model, emb).cpu().numpy()


def score_cells(
    model: CalliperModel,
    text_encoder: TextEncoder,
    query: str | Sequence[str],
    coords: np.ndarray | None = None,
    *,
    x_m: np.ndarray | None = None,
    y_m: np.ndarray | None = None,
    lon: np.ndarray | None = None,
    lat: np.ndarray | None = None,
    location_embeddings: np.ndarray | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """Cosine similarity of each query to each cell.

    Cells are given one way: ``coords`` (C, 2) already prepared for the model
    (:func:`calliper_pipeline.model.calliper.prepare_coords`), raw ``x_m``/``y_m`` metres or
    ``lon``/``lat`` degrees, or precomputed ``location_embeddings`` (C, D) (reuse them across
    queries: embedding 15k cells costs more than scoring them).

    Returns:
        (C,) float32 for one query string, (Q, C) for a sequence of queries.
    """
    if location_embeddings is not None:
        loc = _normalise(location_embeddings)
    elif coords is not None:
        loc = _normalise(embed_coords(model, np.asarray(coords, np.float32), device=device))
    else:
        loc = _normalise(embed_points(model, x_m=x_m, y_m=y_m, lon=lon, lat=lat, device=device))
    single = isinstance(query, str)
    queries = [query] if isinstance(query, str) else list(query)
    scores = query_vectors(model, text_encoder, queries) @ loc.T
    return scores[0] if single else scores


def top_cells(cells: pd.DataFrame, scores: np.ndarray, top_k: int = 20) -> pd.DataFrame:
    """The ``top_k`` best-scoring cells: cell_id, x_m, y_m, lon, lat, score, rank (1 = best)."""
    order = np.argsort(-np.asarray(scores), kind="stable")[: max(top_k, 0)]
    top = cells.iloc[order][[COL_CELL_ID, COL_X, COL_Y, COL_LON, COL_LAT]].reset_index(drop=True)
    top["score"] = np.asarray(scores, np.float64)[order]
    top["rank"] = np.arange(1, len(top) + 1)
    return pd.DataFrame(top)


def retrieve(
    model: CalliperModel,
    text_encoder: TextEncoder,
    query: str,
    cells: pd.DataFrame,
    top_k: int = 20,
    *,
    location_embeddings: np.ndarray | None = None,
    device: str = "cpu",
) -> tuple[np.ndarray, pd.DataFrame]:
    """Score every cell for ``query``: ((C,) scores, the :func:`top_cells` table)."""
    if location_embeddings is None:
        location_embeddings = cell_embeddings(model, cells, device=device)
    scores = score_cells(model, text_encoder, query, location_embeddings=location_embeddings)
    return scores, top_cells(cells, scores, top_k)


def retrieve_to_files(
    model: CalliperModel,
    text_encoder: TextEncoder,
    query: str,
    cells: gpd.GeoDataFrame,
    png_path: Path | str,
    csv_path: Path | str,
    top_k: int = 20,
    *,
    layers: MapLayers | None = None,
    location_embeddings: np.ndarray | None = None,
    device: str = "cpu",
    width_px: int | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """:func:`retrieve`, then write the heatmap PNG (``width_px`` wide; None: the maps'
    default) and the top cells as CSV (with the query)."""
    from calliper_pipeline.maps.embedding_maps import retrieval_heatmap  # matplotlib on drawing

    scores, top = retrieve(
        model,
        text_encoder,
        query,
        cells,
        top_k,
        location_embeddings=location_embeddings,
        device=device,
    )
    map_kwargs = layers.as_kwargs() if layers is not None else {}
    if width_px is not None:
        map_kwargs["width_px"] = width_px
    fig = retrieval_heatmap(cells, scores, query, top_k=top_k, path=png_path, **map_kwargs)
    fig.clear()
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    top.assign(query=query).to_csv(csv_path, index=False)
    return scores, top


def _ranks_by_poi(
    model: CalliperModel, texts: np.ndarray | torch.Tensor, idx: torch.Tensor,
    loc: torch.Tensor, chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(at least, above) counts with one text row per POI, ``chunk_size`` POIs at a time."""
    at_least, above = [], []
    for start in range(0, len(idx), chunk_size):
        query = _project_texts(model, texts[start : start + chunk_size])
        if not bool(torch.isfinite(query).all()):
            raise ValueError("projected text embeddings contain NaN or inf")
        scores = query @ loc.T
        true = scores.gather(1, idx[start : start + chunk_size, None])
        at_least.append((scores >= true).sum(1).double())  # the true cell, ties, better cells
        above.append((scores > true).sum(1).double())
    return torch.cat(at_least), torch.cat(above)


def _ranks_by_text(
    model: CalliperModel, table: np.ndarray | torch.Tensor, rows: np.ndarray, idx: torch.Tensor,
    loc: torch.Tensor, chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The same counts when POIs share texts: each distinct text is projected and scored
    against the cells once, its scores sorted, and each of its POIs' true scores located by
    binary search (O(U C log C + N log C) instead of O(N C D) for N POIs, U texts, C cells)."""
    at_least = torch.empty(len(rows), dtype=torch.float64, device=idx.device)
    above = torch.empty_like(at_least)
    order = np.argsort(rows, kind="stable")
    used, first = np.unique(rows[order], return_index=True)
    bounds = np.append(first, len(rows))
    for start in range(0, len(used), chunk_size):
        query = _project_texts(model, table[used[start : start + chunk_size]])
        if not bool(torch.isfinite(query).all()):
            raise ValueError("projected text embeddings contain NaN or inf")
        scores = query @ loc.T  # (texts of the chunk, cells)
        ordered = scores.sort(dim=1).values
        n_cells = scores.shape[1]
        for j in range(len(query)):  # the POIs of one text: a binary search in its scores
            pois = torch.as_tensor(order[bounds[start + j] : bounds[start + j + 1]])
            pois = pois.to(idx.device)
            true = scores[j, idx[pois]]
            row = ordered[j]
            at_least[pois] = (n_cells - torch.searchsorted(row, true, right=False)).double()
            above[pois] = (n_cells - torch.searchsorted(row, true, right=True)).double()
    return at_least, above


@torch.no_grad()
def true_cell_ranks(
    model: CalliperModel,
    text_embeddings: np.ndarray | torch.Tensor,
    poi_cell_index: np.ndarray,
    cell_location_embeddings: np.ndarray | torch.Tensor,
    ties: TieRule = "pessimistic",
    chunk_size: int = 1024,
    text_index: np.ndarray | None = None,
) -> np.ndarray:
    """Rank (1 = best) of each POI's true cell among all cells, scored by its description.

    Args:
        text_embeddings: (N, text_dim) frozen text embeddings of the POIs' descriptions, or
            with ``text_index`` a (U, text_dim) table of distinct texts.
        poi_cell_index: (N,) row of each POI's cell in ``cell_location_embeddings``.
        cell_location_embeddings: (C, D) location embeddings of the cells (normalised here).
        ties: cells scoring exactly as the true cell count as ranked above it ("pessimistic",
            so a constant model cannot look good) or half of them do ("average").
        chunk_size: POIs (or distinct texts) scored at once ((chunk, C) float32 scores).
        text_index: (N,) row of each POI's text in ``text_embeddings``. POIs sharing a text
            are then scored once per text (the same ranks, far faster when texts repeat, as
            category descriptions do).

    Returns:
        (N,) float64 ranks in [1, C] (x.5 values possible with ``ties="average"``).
    """
    if ties not in ("pessimistic", "average"):
        raise ValueError(f"ties must be 'pessimistic' or 'average', got {ties!r}")
    device = _model_device(model)
    loc = F.normalize(torch.as_tensor(cell_location_embeddings, dtype=torch.float32), dim=-1)
    loc = loc.to(device)
    idx = torch.as_tensor(np.asarray(poi_cell_index), dtype=torch.long, device=device)
    n = len(text_embeddings) if text_index is None else len(text_index)
    if idx.shape != (n,):
        raise ValueError(f"poi_cell_index must have shape ({n},), got {tuple(idx.shape)}")
    if n and (int(idx.min()) < 0 or int(idx.max()) >= len(loc)):
        raise ValueError(f"poi_cell_index must lie in [0, {len(loc)}) (unassigned POIs?)")
    if not bool(torch.isfinite(loc).all()):
        raise ValueError("cell location embeddings contain NaN or inf")
    if not n:
        return np.zeros(0, np.float64)
    if text_index is None:
        at_least, above = _ranks_by_poi(model, text_embeddings, idx, loc, chunk_size)
    else:
        rows = np.asarray(text_index, dtype=np.int64)
        if rows.min() < 0 or rows.max() >= len(text_embeddings):
            raise ValueError(f"text_index must lie in [0, {len(text_embeddings)})")
        at_least, above = _ranks_by_text(model, text_embeddings, rows, idx, loc, chunk_size)
    if ties == "pessimistic":
        return at_least.cpu().numpy()
    return (above + 1.0 + (at_least - above - 1.0) / 2.0).cpu().numpy()


def recall_metrics(
    ranks: np.ndarray, n_cells: int, pcts: Sequence[float] = DEFAULT_RECALL_PCTS
) -> dict[str, float]:
    """recall@k% (share of ranks within the top ceil(k% of cells), at least one cell), the
    median rank, the median rank as % of cells, and the mean reciprocal rank."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if n_cells < 1 or not len(ranks):
        raise ValueError("need at least one cell and one ranked POI")
    out: dict[str, float] = {}
    for pct in pcts:
        n_top = max(1, math.ceil(pct * n_cells / 100.0 - 1e-9))
        out[f"recall@{pct:g}%"] = float(np.mean(ranks <= n_top))
    median = float(np.median(ranks))
    out["median_rank"] = median
    out["median_rank_pct"] = 100.0 * median / n_cells
    out["mean_reciprocal_rank"] = float(np.mean(1.0 / ranks))
    out["n_pois"] = float(len(ranks))
    out["n_cells"] = float(n_cells)
    return out


def retrieval_metrics(
    model: CalliperModel,
    text_embeddings: np.ndarray | torch.Tensor,
    poi_cell_index: np.ndarray,
    cell_location_embeddings: np.ndarray | torch.Tensor,
    pcts: Sequence[float] = DEFAULT_RECALL_PCTS,
    ties: TieRule = "pessimistic",
    chunk_size: int = 1024,
    text_index: np.ndarray | None = None,
) -> dict[str, float]:
    """Text-to-location retrieval quality on held-out POIs (see :func:`true_cell_ranks`, also
    for ``text_index``).

    Returns:
        ``recall@1%``, ``recall@5%``, ``recall@10%`` (shares in [0, 1]), ``median_rank``,
        ``median_rank_pct``, ``mean_reciprocal_rank``, ``n_pois``, ``n_cells``.
    """
    ranks = true_cell_ranks(
        model, text_embeddings, poi_cell_index, cell_location_embeddings, ties, chunk_size,
        text_index,
    )  # fmt: skip
    return recall_metrics(ranks, len(cell_location_embeddings), pcts)


def assign_cells(
    x_m: np.ndarray, y_m: np.ndarray, cells: pd.DataFrame, max_distance_m: float | None = None
) -> np.ndarray:
    """(N,) int64 row of the cell whose centroid is nearest each point (metres, cells' CRS).

    Points farther than ``max_distance_m`` from every centroid get -1 (e.g. outside the grid).
    """
    tree = cKDTree(np.column_stack([cells[COL_X].to_numpy(), cells[COL_Y].to_numpy()]))
    pts = np.column_stack([np.asarray(x_m, np.float64), np.asarray(y_m, np.float64)])
    dist, row = tree.query(pts, k=1)
    row = np.asarray(row, dtype=np.int64)
    if max_distance_m is not None:
        row[np.asarray(dist) > max_distance_m] = -1
    return row
