"""Label-free measures on a training run's held-out POIs, for the candidate and the champion.

A city without evaluation labels is promoted on what it does have: its own POIs. The
validation split that training held out (``train.val_fraction`` of the points, drawn with
``train.seed``) is scored with the same two measures for the model just trained and for the
version holding ``champion`` at that time:

- ``val_loss``: the training objective's mean InfoNCE on the held-out points (lower is
  better), :func:`training.loop.validation_loss`;
- ``recall_at_1pct``: text-to-location retrieval on the held-out POIs, the share whose own
  grid cell ranks in the top 1 % of the city's cells given the POI's text (higher is better),
  :func:`steps.train.validation_retrieval`.

The incumbent is measured on exactly the candidate's held-out points, targets and cells, so
the two rows compare like with like; it is only measured when it was trained against the same
targets (head names), text encoder and metric CRS (otherwise ``note`` says why not).
:func:`tracking.label_free.promote_label_free` decides on these numbers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

from calliper_pipeline.config import TrainConfig
from calliper_pipeline.model.calliper import CalliperModel
from calliper_pipeline.tracking.label_free import HeldOut, champion_version
from calliper_pipeline.tracking.runs import TrackingConfig
from calliper_pipeline.training.inputs import TrainingInputs, prepare_points
from calliper_pipeline.training.loop import validation_loss

logger = logging.getLogger(__name__)

RetrievalFn = Callable[[CalliperModel], dict[str, float]]


def model_heldout_loss(model: CalliperModel, inputs: TrainingInputs, cfg: TrainConfig) -> float:
    """``model``'s validation InfoNCE on the held-out points of ``inputs`` (its own coords)."""
    bg = inputs.background_xy if inputs.background_xy is not None else np.zeros((0, 2))
    coords = prepare_points(model.spec, inputs.pois, bg)
    try:
        return validation_loss(
            model, coords, inputs.text_index, inputs.text_table, cfg,
            heads=inputs.heads, multi_positive=inputs.multi_positive,
        )  # fmt: skip
    finally:
        model.cpu()  # registered and served from the CPU


def incomparable(incumbent: CalliperModel, inputs: TrainingInputs) -> str:
    """Why ``incumbent`` cannot be scored on ``inputs`` ("" when it can)."""
    a, b = incumbent.spec, inputs.spec
    for what, mine, theirs in (
        ("targets (heads)", b.head_names, a.head_names),
        ("text encoder", b.text_encoder_id, a.text_encoder_id),
        ("text dimension", b.text_dim, a.text_dim),
        ("metric CRS", b.metric_epsg, a.metric_epsg),
    ):
        if mine != theirs:
            return f"trained with another {what}: {theirs} (candidate: {mine})"
    return ""


def heldout_measures(
    candidate: CalliperModel,
    inputs: TrainingInputs,
    cfg: TrainConfig,
    retrieval: RetrievalFn,
    incumbent: tuple[str, CalliperModel] | None,
    candidate_val_loss: float | None = None,
) -> HeldOut:
    """Both measures for the candidate and, where comparable, for ``incumbent`` (version,
    model); ``retrieval(model)`` scores a model on the held-out POIs' cells.
    ``candidate_val_loss``: the candidate's loss on these held-out points when training
    already measured it (its best epoch's validation loss, the weights it returned); a
    pass over every point is then saved. Recomputed when None or not finite."""

    def recall(model: CalliperModel) -> float:
        return float(retrieval(model).get("recall_at_1pct", math.nan))

    known = candidate_val_loss is not None and math.isfinite(candidate_val_loss)
    loss = candidate_val_loss if known else model_heldout_loss(candidate, inputs, cfg)
    assert loss is not None
    out = HeldOut(val_loss=loss, recall_at_1pct=recall(candidate), n_points=_n_val(inputs, cfg))
    if incumbent is None:
        return out
    version, model = incumbent
    note = incomparable(model, inputs)
    if note:
        logger.info("champion v%s not measured on the held-out POIs: %s", version, note)
        return HeldOut(out.val_loss, out.recall_at_1pct, out.n_points, version, note=note)
    return HeldOut(
        out.val_loss, out.recall_at_1pct, out.n_points, version,
        incumbent_val_loss=model_heldout_loss(model, inputs, cfg),
        incumbent_recall_at_1pct=recall(model),
    )  # fmt: skip


def _n_val(inputs: TrainingInputs, cfg: TrainConfig) -> int:
    from calliper_pipeline.training.batches import split_indices

    return len(split_indices(len(inputs.coords), cfg.val_fraction, cfg.seed)[1])


def champion_model(tracking: TrackingConfig, city: str) -> tuple[str, CalliperModel] | None:
    """(version, model) of the version holding ``champion`` for ``city``; None if none does."""
    from calliper_pipeline.steps.assess import load_registered_model
    from calliper_pipeline.tracking.registry import registered_model_name

    version = champion_version(tracking, city)
    if version is None:
        return None
    uri = f"models:/{registered_model_name(city)}/{version}"
    return version, load_registered_model(tracking, uri)


def measure_against_champion(
    candidate: CalliperModel,
    inputs: TrainingInputs,
    cfg: TrainConfig,
    retrieval: RetrievalFn,
    tracking: TrackingConfig,
    city: str,
    candidate_val_loss: float | None = None,
) -> HeldOut:
    """:func:`heldout_measures` against the city's current champion (``candidate_val_loss``:
    see there). A champion that cannot be loaded is noted (the gate then refuses), not
    raised: training has succeeded."""
    try:
        incumbent = champion_model(tracking, city)
    except Exception as exc:  # a broken champion must not fail the candidate's training
        version = champion_version(tracking, city)
        logger.warning("could not load champion v%s of %s: %s", version, city, exc)
        out = heldout_measures(candidate, inputs, cfg, retrieval, None, candidate_val_loss)
        note = f"could not load it: {type(exc).__name__}: {exc}"[:300]
        return HeldOut(out.val_loss, out.recall_at_1pct, out.n_points, version, note=note)
    return heldout_measures(candidate, inputs, cfg, retrieval, incumbent, candidate_val_loss)
