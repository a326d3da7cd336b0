"""Text-to-location retrieval: a planted region is found for its own description; metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pyproj import CRS
from torch import Tensor, nn

from calliper_pipeline.cities.cells import hexagon_grid, with_cell_columns
from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.evaluation.retrieval import (
    assign_cells,
    cell_embeddings,
    recall_metrics,
    retrieval_metrics,
    retrieve,
    retrieve_to_files,
    score_cells,
    true_cell_ranks,
)
from calliper_pipeline.model.calliper import CalliperModel, ModelSpec, prepare_coords
from calliper_pipeline.text.encoders import HashingEncoder

CENTRE = (503_000.0, 172_500.0)
REGIONS = (
    "A place of cafe, a type of eating and drinking",
    "A place of parking, a type of road and rail transport",
    "A place of schools, a type of education",
    "A place of parks, a type of recreational and leisure",
)


class QuadrantEncoder(nn.Module):
    """Fixed location encoder: one-hot of the quadrant (around the centre) a point lies in."""

    input_space = "metric"

    def forward(self, coords: Tensor) -> Tensor:
        east, north = coords[:, 0] >= 0, coords[:, 1] >= 0
        quadrant = east.long() + 2 * north.long()  # 0 SW, 1 SE, 2 NW, 3 NE
        return nn.functional.one_hot(quadrant, 4).float()


def _spec(encoder_id: str, text_dim: int = 384, embed_dim: int = 4) -> ModelSpec:
    cfg = EncoderConfig(pe="direct", network="mlp", hidden_dim=8, num_layers=1, embed_dim=embed_dim)
    return ModelSpec(
        encoder=cfg,
        text_dim=text_dim,
        centre_m=CENTRE,
        metric_epsg=27700,
        text_encoder_id=encoder_id,
    )


@pytest.fixture(scope="module")
def text_encoder() -> HashingEncoder:
    return HashingEncoder(dim=384)


@pytest.fixture(scope="module")
def planted(text_encoder: HashingEncoder) -> CalliperModel:
    """Quadrant q's location vector is e_q; the projection maps REGIONS[q]'s embedding to e_q."""
    model = CalliperModel(_spec(text_encoder.encoder_id))
    model.location_encoder = QuadrantEncoder()  # type: ignore[assignment]  # a fixed stand-in
    with torch.no_grad():
        model.text_projection.weight.copy_(torch.from_numpy(text_encoder.encode(list(REGIONS))))
        model.text_projection.bias.zero_()
    return model.eval()


@pytest.fixture(scope="module")
def cells():
    grid = hexagon_grid((500_000.0, 170_000.0, 506_000.0, 175_000.0), 350.0, CRS.from_epsg(27700))
    return with_cell_columns(grid.drop(columns=["cell_id", "x_m", "y_m"]))


def _quadrant(cells) -> np.ndarray:
    return (cells["x_m"].to_numpy() >= CENTRE[0]) + 2 * (cells["y_m"].to_numpy() >= CENTRE[1])


def test_planted_region_ranks_first(planted, text_encoder, cells) -> None:
    quadrant = _quadrant(cells)
    for q, text in enumerate(REGIONS):
        scores, top = retrieve(planted, text_encoder, text, cells, top_k=10)
        assert scores.shape == (len(cells),)
        inside, outside = scores[quadrant == q], scores[quadrant != q]
        assert inside.max() - inside.min() < 1e-6  # every cell of the region scores the same
        assert inside.min() > outside.max() + 0.05
        assert list(top.columns) == ["cell_id", "x_m", "y_m", "lon", "lat", "score", "rank"]
        assert (quadrant[top["cell_id"].to_numpy()] == q).all()
        assert top["rank"].tolist() == list(range(1, 11))


def test_score_cells_input_forms_agree(planted, text_encoder, cells) -> None:
    xy = (cells["x_m"].to_numpy(), cells["y_m"].to_numpy())
    by_xy = score_cells(planted, text_encoder, list(REGIONS), x_m=xy[0], y_m=xy[1])
    coords = prepare_coords(planted.spec, "metric", *xy)
    by_coords = score_cells(planted, text_encoder, list(REGIONS), coords)
    emb = cell_embeddings(planted, cells)
    by_emb = score_cells(planted, text_encoder, list(REGIONS), location_embeddings=emb)
    assert by_xy.shape == (4, len(cells))
    np.testing.assert_allclose(by_xy, by_coords, atol=1e-6)
    np.testing.assert_allclose(by_xy, by_emb, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)


def test_wrong_text_encoder_is_refused(planted, cells) -> None:
    with pytest.raises(ConfigError, match="trained with text encoder"):
        retrieve(planted, HashingEncoder(dim=384, seed=1), REGIONS[0], cells)


def test_retrieve_to_files(tmp_path: Path, planted, text_encoder, cells) -> None:
    png, csv = tmp_path / "q" / "cafe.png", tmp_path / "q" / "cafe.csv"
    _, top = retrieve_to_files(planted, text_encoder, REGIONS[0], cells, png, csv, top_k=5)
    assert png.stat().st_size > 10_000
    written = pd.read_csv(csv)
    assert len(written) == 5 and (written["query"] == REGIONS[0]).all()
    np.testing.assert_allclose(written["score"], top["score"])


def _angle_model(angles_deg: list[float]) -> tuple[CalliperModel, np.ndarray]:
    """Identity text projection in 2-D; cell c's embedding is the unit vector at angles_deg[c]."""
    model = CalliperModel(_spec("", text_dim=2, embed_dim=2))
    with torch.no_grad():
        model.text_projection.weight.copy_(torch.eye(2))
        model.text_projection.bias.zero_()
    rad = np.deg2rad(angles_deg)
    return model, np.stack([np.cos(rad), np.sin(rad)], 1).astype(np.float32)


def _unit(deg: float) -> list[float]:
    return [float(np.cos(np.deg2rad(deg))), float(np.sin(np.deg2rad(deg)))]


def test_ranks_and_metrics_on_hand_made_example() -> None:
    # 10 cells at 0, 10, ..., 90 degrees; a POI's score for cell c is cos(angle_c - query).
    model, cells = _angle_model([10.0 * c for c in range(10)])
    texts = np.array([_unit(0), _unit(0), _unit(90)], np.float32)
    truth = np.array([0, 3, 0])  # ranks: best cell; 3 cells closer; every other cell closer
    ranks = true_cell_ranks(model, texts, truth, cells)
    np.testing.assert_array_equal(ranks, [1.0, 4.0, 10.0])
    np.testing.assert_array_equal(true_cell_ranks(model, texts, truth, cells, chunk_size=1), ranks)
    m = retrieval_metrics(model, texts, truth, cells, pcts=(1, 5, 10, 40, 50))
    assert m["recall@1%"] == m["recall@5%"] == m["recall@10%"] == pytest.approx(1 / 3)
    assert m["recall@40%"] == pytest.approx(2 / 3) and m["recall@50%"] == pytest.approx(2 / 3)
    assert m["median_rank"] == 4.0 and m["median_rank_pct"] == pytest.approx(40.0)
    assert m["mean_reciprocal_rank"] == pytest.approx((1 + 1 / 4 + 1 / 10) / 3)
    assert m["n_pois"] == 3 and m["n_cells"] == 10


def test_ties_pessimistic_or_average() -> None:
    model, cells = _angle_model([0.0, 0.0, 0.0, 90.0])
    texts = np.array([_unit(0)], np.float32)
    assert true_cell_ranks(model, texts, np.array([1]), cells).tolist() == [3.0]
    assert true_cell_ranks(model, texts, np.array([1]), cells, ties="average").tolist() == [2.0]
    with pytest.raises(ValueError):
        true_cell_ranks(model, texts, np.array([-1]), cells)


@pytest.mark.parametrize("ties", ["pessimistic", "average"])
def test_shared_texts_are_ranked_once_each_with_the_same_ranks(ties: str) -> None:
    # 200 cells at 40 distinct angles (so many exact ties); 500 POIs share 7 texts
    rng = np.random.default_rng(0)
    model, cells = _angle_model(list(rng.integers(0, 40, 200) * 9.0))
    table = np.array([_unit(a) for a in (0, 33, 90, 181, 270, 300, 359)], np.float32)
    rows = rng.integers(0, len(table), 500)
    truth = rng.integers(0, len(cells), 500)
    per_poi = true_cell_ranks(model, table[rows], truth, cells, ties=ties)  # type: ignore[arg-type]
    shared = true_cell_ranks(model, table, truth, cells, ties=ties, text_index=rows, chunk_size=3)  # type: ignore[arg-type]
    np.testing.assert_array_equal(shared, per_poi)
    assert per_poi.min() >= 1 and per_poi.max() <= 200 and len(np.unique(per_poi)) > 20
    with pytest.raises(ValueError, match="text_index"):
        true_cell_ranks(model, table, truth, cells, text_index=rows + 7)


def test_recall_uses_at_least_one_cell() -> None:
    m = recall_metrics(np.array([1.0, 2.0, 151.0, 152.0]), n_cells=15_041)
    assert m["recall@1%"] == 0.75  # top 1 % of 15,041 cells = 151 cells
    assert recall_metrics(np.array([1.0, 2.0]), n_cells=10)["recall@5%"] == 0.5


def test_assign_cells(cells) -> None:
    idx = assign_cells(cells["x_m"].to_numpy() + 30.0, cells["y_m"].to_numpy() - 20.0, cells)
    np.testing.assert_array_equal(idx, np.arange(len(cells)))
    far = assign_cells(np.array([0.0, 503_000.0]), np.array([0.0, 172_500.0]), cells, 500.0)
    assert far[0] == -1 and far[1] >= 0
