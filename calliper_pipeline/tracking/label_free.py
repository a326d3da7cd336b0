"""The label-free champion gate: promotion on held-out POIs, for cities without labels.

A city with land-use or socio-economic labels is promoted on them
(:func:`.registry.promote_if_better`). A city without any has its own POIs: training holds out
a validation split, and :mod:`calliper_pipeline.steps.heldout` scores the candidate and the
version holding ``champion`` on exactly those points (validation InfoNCE loss; text-to-location
recall@1 % of cells). :func:`record_heldout` stores the numbers as tags of the candidate
version (``heldout.*``); :func:`promote_label_free` decides on them:

- promote when the blocking checks passed and there is no champion yet;
- otherwise compare with the champion the candidate was measured against, and promote when it
  is not worse beyond the tolerances on both measures: ``val_loss <= incumbent + loss_tol`` and
  ``recall_at_1pct >= incumbent - recall_tol``;
- refuse when checks failed, a candidate number is NaN or missing, the champion moved after the
  candidate was measured, or the champion could not be measured (other targets, text encoder
  or CRS; move the alias by hand if intended).

The decision is written like the labelled gate's (``promotion.*`` tags with
``promotion.gate = held-out POIs``, on the version and its run) and as the model version's
description, which names the gate and the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from calliper_pipeline.constants import HELDOUT_LOSS_TOLERANCE, HELDOUT_RECALL_TOLERANCE
from calliper_pipeline.tracking.registry import (
    CHAMPION_ALIAS,
    PromotionDecision,
    record_decision,
    registered_model_name,
)
from calliper_pipeline.tracking.runs import TrackingConfig

GATE = "held-out POIs"
METRIC = "heldout.val_loss"  # the decision's scores; recall@1% is in the reason and tags
#: Defaults of the tolerances (also the Launchpad's): nats of InfoNCE, fraction of POIs.
LOSS_TOLERANCE = HELDOUT_LOSS_TOLERANCE
RECALL_TOLERANCE = HELDOUT_RECALL_TOLERANCE
_TAGS = ("val_loss", "recall_at_1pct", "n_points", "incumbent_version", "incumbent_val_loss",
         "incumbent_recall_at_1pct", "note")  # fmt: skip


@dataclass(frozen=True)
class HeldOut:
    """The held-out measures of a candidate, and of the champion it was compared with."""

    val_loss: float
    recall_at_1pct: float
    n_points: int
    incumbent_version: str | None = None
    incumbent_val_loss: float | None = None
    incumbent_recall_at_1pct: float | None = None
    note: str = ""  # why the incumbent was not measured ("" when it was, or there is none)

    def tags(self) -> dict[str, str]:
        """``heldout.<field>`` tags ("none" for a missing value)."""
        return {
            f"heldout.{k}": "none" if getattr(self, k) is None else str(getattr(self, k))
            for k in _TAGS
        }

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> HeldOut | None:
        """The measures recorded on a version (None when it has none)."""
        if "heldout.val_loss" not in tags:
            return None

        def num(key: str) -> float | None:
            raw = tags.get(f"heldout.{key}", "none")
            return None if raw == "none" else float(raw)

        version = tags.get("heldout.incumbent_version", "none")
        return cls(
            val_loss=_nan(num("val_loss")),
            recall_at_1pct=_nan(num("recall_at_1pct")),
            n_points=int(num("n_points") or 0),
            incumbent_version=None if version == "none" else version,
            incumbent_val_loss=num("incumbent_val_loss"),
            incumbent_recall_at_1pct=num("incumbent_recall_at_1pct"),
            note=tags.get("heldout.note", ""),
        )


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def champion_version(tracking: TrackingConfig, city: str) -> str | None:
    """The version holding ``champion`` of ``calliper_<city>`` (None: no model or no alias)."""
    from mlflow.exceptions import MlflowException

    try:
        model = tracking.client().get_registered_model(registered_model_name(city))
    except MlflowException:
        return None
    holder = model.aliases.get(CHAMPION_ALIAS)
    return None if holder is None else str(holder)


def record_heldout(tracking: TrackingConfig, city: str, version: str, measures: HeldOut) -> None:
    """Write ``measures`` as ``heldout.*`` tags of the version."""
    client = tracking.client()
    name = registered_model_name(city)
    for key, value in measures.tags().items():
        client.set_model_version_tag(name, version, key, value)


def decide_label_free(
    version: str,
    measures: HeldOut | None,
    holder: str | None,
    checks_passed: bool,
    loss_tolerance: float = LOSS_TOLERANCE,
    recall_tolerance: float = RECALL_TOLERANCE,
) -> PromotionDecision:
    """The gate's rules (module docstring) without touching the registry. The decision's
    scores are the validation losses (candidate, incumbent)."""
    loss = math.nan if measures is None else measures.val_loss
    if holder == version:
        return PromotionDecision(True, f"v{version} already holds '{CHAMPION_ALIAS}'", loss,
                                 holder, loss)  # fmt: skip
    if not checks_passed:
        return PromotionDecision(False, "sanity checks failed", loss, holder, None)
    if measures is None:
        reason = f"v{version} has no held-out measures (heldout.* tags): train it again"
        return PromotionDecision(False, reason, loss, holder, None)
    recall = measures.recall_at_1pct
    if math.isnan(loss) or math.isnan(recall):
        reason = f"candidate held-out val loss {loss:.4g} / recall@1% {recall:.4g} is NaN"
        return PromotionDecision(False, reason, loss, holder, None)
    mine = f"held-out val loss {loss:.4f}, recall@1% {recall:.3f} on {measures.n_points:,} points"
    if holder is None:
        return PromotionDecision(True, f"no incumbent '{CHAMPION_ALIAS}'; {mine}", loss, None,
                                 None)  # fmt: skip
    if measures.incumbent_version != holder:
        against = measures.incumbent_version
        reason = (
            f"'{CHAMPION_ALIAS}' is v{holder} but v{version} was measured against "
            f"{'no champion' if against is None else f'v{against}'}: train again to compare"
        )
        return PromotionDecision(False, reason, loss, holder, None)
    inc_loss, inc_recall = measures.incumbent_val_loss, measures.incumbent_recall_at_1pct
    if inc_loss is None or inc_recall is None:
        reason = f"champion v{holder} could not be measured ({measures.note}); move it by hand"
        return PromotionDecision(False, reason, loss, holder, None)
    loss_ok = loss <= inc_loss + loss_tolerance
    recall_ok = math.isnan(inc_recall) or recall >= inc_recall - recall_tolerance
    promoted = loss_ok and recall_ok
    verdict = "not worse than" if promoted else "worse than"
    reason = (
        f"candidate {mine} is {verdict} champion v{holder} (val loss {inc_loss:.4f}, "
        f"recall@1% {inc_recall:.3f}; needs val loss <= {inc_loss + loss_tolerance:.4f} "
        f"[{'ok' if loss_ok else 'fails'}] and recall@1% >= {inc_recall - recall_tolerance:.3f} "
        f"[{'ok' if recall_ok else 'fails'}], tolerances {loss_tolerance:g} and "
        f"{recall_tolerance:g})"
    )
    return PromotionDecision(promoted, reason, loss, holder, inc_loss)


def promote_label_free(
    tracking: TrackingConfig,
    city: str,
    version: str | int,
    checks_passed: bool,
    loss_tolerance: float = LOSS_TOLERANCE,
    recall_tolerance: float = RECALL_TOLERANCE,
) -> PromotionDecision:
    """The label-free gate on ``version`` of ``calliper_<city>``: decide on its ``heldout.*``
    tags (:func:`decide_label_free`), record the decision and the description, and move
    ``champion`` when promoted."""
    client = tracking.client()
    name = registered_model_name(city)
    version = str(version)
    mv = client.get_model_version(name, version)
    measures = HeldOut.from_tags(dict(mv.tags))
    holder = champion_version(tracking, city)
    decision = decide_label_free(
        version, measures, holder, checks_passed, loss_tolerance, recall_tolerance
    )
    record_decision(client, name, version, mv.run_id, METRIC, decision, gate=GATE)
    if decision.promoted and holder != version:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    return decision
