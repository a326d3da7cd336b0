"""training_inputs on a synthetic city: the paper's objective and neighbourhood targets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calliper_pipeline.config import ObjectiveConfig, RunConfig, TrainConfig
from calliper_pipeline.steps import ingest as ingestion
from calliper_pipeline.store import pois as store
from calliper_pipeline.store.db import connect
from calliper_pipeline.text.cache import embed_texts_cached
from calliper_pipeline.text.encoders import HashingEncoder
from calliper_pipeline.training.inputs import run_texts, train_city, training_inputs
from tests.support.synthetic import make_synthetic_city

Stored = tuple[Any, Any, Path, str]  # connection, city, data root, text encoder id


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    root = tmp_path_factory.mktemp("city")
    city = make_synthetic_city(root, n_pois=400, seed=5, evaluation=False)
    con = connect(root / "w.duckdb")
    ingestion.ingest(con, city, root)
    encoder = HashingEncoder()
    neighbourhood = RunConfig(objective=ObjectiveConfig.neighbourhood(target_radii_m=(300.0,)))
    texts = run_texts(store.read_city_pois(con, city.key), city, neighbourhood)
    embed_texts_cached(con, encoder, texts)
    yield con, city, root, encoder.encoder_id
    con.close()


def test_paper_inputs_have_one_head_and_no_background(stored: Stored) -> None:
    con, city, root, encoder_id = stored
    inputs = training_inputs(con, city, root, encoder_id, RunConfig())
    assert inputs.heads is None and inputs.spec.heads == 1
    assert len(inputs.coords) == len(inputs.pois) == len(inputs.text_index)


def test_neighbourhood_inputs_and_a_short_training(stored: Stored, tmp_path: Path) -> None:
    con, city, root, encoder_id = stored
    obj = ObjectiveConfig.neighbourhood(
        target_radii_m=(300.0,), include_own_text_head=True, background_fraction=0.5
    )
    cfg = RunConfig(objective=obj, train=TrainConfig(epochs=1, batch_size=64, num_threads=1))
    inputs = training_inputs(con, city, root, encoder_id, cfg, cache_dir=tmp_path)
    n_poi = len(inputs.pois)
    assert inputs.background_xy is not None and len(inputs.background_xy) == round(0.5 * n_poi)
    assert len(inputs.coords) == n_poi + len(inputs.background_xy)
    assert inputs.spec.heads == 2 and inputs.spec.head_names == ("own", "r300")
    assert inputs.texts[-1] == obj.empty_text
    assert inputs.heads is not None and inputs.heads[1].weights is not None
    assert (inputs.text_index[n_poi:] == len(inputs.texts) - 1).all()
    result = train_city(inputs, cfg)
    assert result.model.out_dim == 2 * cfg.encoder.embed_dim
    assert np.isfinite(result.best_val_loss)
