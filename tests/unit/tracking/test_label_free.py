"""The label-free champion gate: candidates of a city without evaluation labels are compared
with the champion on the candidate's held-out POIs (validation loss, recall@1%).

The module fixture trains real (tiny) models of a synthetic city without labels: v1 (no
champion yet), v2 with a learning rate too small to learn anything (measured against v1), v3
with v1's exact settings (so the same model: measured equal to v1).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from calliper_pipeline import presets
from calliper_pipeline.config import RunConfig
from calliper_pipeline.steps.embed import embed
from calliper_pipeline.steps.ingest import ingest_profiled
from calliper_pipeline.steps.train import TrainingOutcome, train_and_register
from calliper_pipeline.store.db import connect
from calliper_pipeline.text.encoders import build_text_encoder
from calliper_pipeline.tracking import label_free
from calliper_pipeline.tracking.label_free import HeldOut, decide_label_free
from calliper_pipeline.tracking.registry import CHAMPION_ALIAS, registered_model_name
from calliper_pipeline.tracking.runs import TrackingConfig, default_tracking
from calliper_pipeline.training.inputs import training_inputs
from tests.support.synthetic import make_synthetic_city

KEY = "nolabels"
NAME = registered_model_name(KEY)
TINY = {"epochs": 4, "batch_size": 128, "hidden_dim": 32, "num_layers": 1, "frequency_num": 8,
        "num_threads": 1}  # fmt: skip


@dataclass
class Trained:
    tracking: TrackingConfig
    outcomes: dict[int, TrainingOutcome]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    root = tmp_path_factory.mktemp("label_free")
    city = make_synthetic_city(root / "city", n_pois=600, seed=2, key=KEY, evaluation=False)
    encoder = build_text_encoder("hashing")
    tracking = default_tracking(root / "mlflow")
    outcomes: dict[int, TrainingOutcome] = {}
    with connect(root / "warehouse.duckdb") as con:
        ingest_profiled(con, city, root)
        embed(con, city, encoder)
        for v, lr in ((1, None), (2, 1e-9), (3, None)):
            cfg: RunConfig = presets.run_config("paper", {**TINY, **({"lr": lr} if lr else {})})
            inputs = training_inputs(con, city, root, encoder.encoder_id, cfg)
            out = train_and_register(
                inputs, city, root, cfg, tracking, root / "runs" / str(v),
                dagster_run_id=None, code_version="test",
            )  # fmt: skip
            assert out.version.version == str(v)
            outcomes[v] = out
            if v == 1:
                label_free.promote_label_free(tracking, KEY, "1", checks_passed=True)
    yield Trained(tracking, outcomes)


def _version(t: Trained, v: int) -> Any:  # an MLflow ModelVersion
    return t.tracking.client().get_model_version(NAME, str(v))


def test_first_version_is_promoted_with_no_champion(trained: Trained) -> None:
    h1 = trained.outcomes[1].heldout
    assert h1 is not None and h1.incumbent_version is None
    assert math.isfinite(h1.val_loss) and 0.0 <= h1.recall_at_1pct <= 1.0
    assert h1.n_points == 60  # 10 % of 600 POIs (the paper preset has no background points)
    # training's best validation loss is reused, not recomputed: the same number (and the
    # recomputation, which measures the champion in the next test, agrees with it)
    assert h1.val_loss == trained.outcomes[1].best_val_loss
    mv = _version(trained, 1)
    assert mv.tags["promotion.decision"] == "promoted"
    assert mv.tags["promotion.gate"] == label_free.GATE
    assert mv.description.startswith(f"Champion gate: {label_free.GATE}. Promoted")
    assert "no incumbent" in mv.description


def test_candidate_is_measured_against_the_champion_on_its_own_heldout_pois(
    trained: Trained,
) -> None:
    h1, h2, h3 = (trained.outcomes[v].heldout for v in (1, 2, 3))
    assert h2 is not None and h3 is not None and h1 is not None
    assert h2.incumbent_version == "1" and h3.incumbent_version == "1"
    # the champion scored on the candidate's points is v1's own held-out figure
    assert h2.incumbent_val_loss == pytest.approx(h1.val_loss, rel=1e-5)
    assert h2.incumbent_recall_at_1pct == pytest.approx(h1.recall_at_1pct)
    # the same settings train the same model: v3 measures exactly like v1
    assert h3.val_loss == pytest.approx(h1.val_loss, rel=1e-5)
    assert HeldOut.from_tags(dict(_version(trained, 2).tags)) == h2


def test_a_worse_candidate_is_refused(trained: Trained) -> None:
    h2 = trained.outcomes[2].heldout
    assert h2 is not None and h2.incumbent_val_loss is not None
    assert h2.val_loss > h2.incumbent_val_loss + label_free.LOSS_TOLERANCE  # it learnt nothing
    decision = label_free.promote_label_free(trained.tracking, KEY, "2", checks_passed=True)
    assert not decision.promoted and "worse than champion v1" in decision.reason
    assert "[fails]" in decision.reason
    client = trained.tracking.client()
    assert str(client.get_registered_model(NAME).aliases[CHAMPION_ALIAS]) == "1"
    mv = _version(trained, 2)
    assert mv.tags["promotion.decision"] == "rejected"
    assert mv.description.startswith(f"Champion gate: {label_free.GATE}. Not promoted")


def test_a_candidate_not_worse_is_promoted(trained: Trained) -> None:
    decision = label_free.promote_label_free(trained.tracking, KEY, "3", checks_passed=True)
    assert decision.promoted and "not worse than champion v1" in decision.reason
    client = trained.tracking.client()
    assert str(client.get_registered_model(NAME).aliases[CHAMPION_ALIAS]) == "3"
    # v2 was measured against v1, not v3: it cannot be promoted on stale numbers
    stale = label_free.promote_label_free(trained.tracking, KEY, "2", checks_passed=True)
    assert not stale.promoted and "measured against v1" in stale.reason


H = HeldOut(val_loss=3.0, recall_at_1pct=0.30, n_points=100, incumbent_version="1",
            incumbent_val_loss=3.0, incumbent_recall_at_1pct=0.30)  # fmt: skip


@pytest.mark.parametrize(
    ("measures", "holder", "checks", "promoted", "says"),
    [
        (H, "1", True, True, "not worse"),
        (replace(H, val_loss=3.019), "1", True, True, "not worse"),  # within 0.02
        (replace(H, val_loss=3.03), "1", True, False, "val loss <= 3.0200 [fails]"),
        (replace(H, recall_at_1pct=0.289), "1", True, False, "recall@1% >= 0.290 [fails]"),
        (H, "1", False, False, "sanity checks failed"),
        (replace(H, val_loss=math.nan), "1", True, False, "NaN"),
        (replace(H, incumbent_version=None), None, True, True, "no incumbent"),
        (
            replace(H, incumbent_val_loss=None, note="other text encoder"),
            "1",
            True,
            False,
            "other text encoder",
        ),
        (None, "1", True, False, "no held-out measures"),
        (H, "7", True, False, "measured against v1"),
        (H, "2", True, True, "already holds"),
    ],
)
def test_decision_rules(
    measures: HeldOut | None, holder: str | None, checks: bool, promoted: bool, says: str
) -> None:
    decision = decide_label_free("2", measures, holder, checks)
    assert decision.promoted is promoted and says in decision.reason, decision.reason


def test_tags_round_trip(tmp_path: Path) -> None:
    assert HeldOut.from_tags(H.tags()) == H
    bare = HeldOut(val_loss=2.5, recall_at_1pct=0.5, n_points=10)
    assert HeldOut.from_tags(bare.tags()) == bare
    assert HeldOut.from_tags({}) is None
