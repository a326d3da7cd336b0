"""Reusing a registered model when nothing it was trained from has changed.

A training run's *key* is a SHA-256 (16 hex digits) of everything that decides its weights: the
flattened run configuration (except where and on how many threads it trains), the snapshot
hash of the city's POIs, the text encoder and the code version. Every registered version
carries its key as the model-version tag ``training_key`` and its outcome (history, figures,
retrieval) as the run artifact ``outcome/outcome.json``. A Dagster re-materialisation whose key
matches a registered version of a finished run returns that version instead of training again
(and says so); a changed snapshot, setting, encoder or commit changes the key. Code with
uncommitted changes (``.dirty``: tracked files under
:data:`calliper_pipeline.provenance.CODE_PATHS`; docs do not count) or of unknown version has
no key: it always trains.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow

from calliper_pipeline.config import RunConfig, flatten
from calliper_pipeline.tracking.registry import RegisteredVersion, registered_model_name
from calliper_pipeline.tracking.runs import RunHandle, TrackingConfig, mlflow_uris, run_url
from calliper_pipeline.training.checkpoints import EpochStats

if TYPE_CHECKING:
    from calliper_pipeline.steps.train import TrainingOutcome

logger = logging.getLogger(__name__)

TRAINING_KEY_TAG = "training_key"
OUTCOME_DIR = "outcome"
OUTCOME_FILE = "outcome.json"
#: Settings that change where and how fast a model trains, not what it learns.
RUNTIME_ONLY = frozenset({"train.device", "train.num_threads"})


def training_key(
    run_cfg: RunConfig, snapshot_hash: str, text_encoder_id: str, code_version: str
) -> str | None:
    """The key of a training run (see the module doc), or None when the code is not a
    clean, known commit."""
    if code_version.endswith(".dirty") or "+g" not in code_version:
        return None
    settings = {k: str(v) for k, v in flatten(run_cfg).items() if k not in RUNTIME_ONLY}
    payload = {
        "settings": settings,
        "snapshot_hash": snapshot_hash,
        "text_encoder": text_encoder_id,
        "code_version": code_version,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def record(handle: RunHandle, outcome: TrainingOutcome, key: str | None) -> None:
    """Store ``outcome`` on its run and ``key`` on its registered version."""
    out = asdict(outcome)
    out["curve_png"] = outcome.curve_png.name
    for transient in ("heldout", "run_cfg", "sizing", "reused"):  # of this training only
        out.pop(transient, None)
    path = outcome.curve_png.parent / OUTCOME_FILE
    path.write_text(json.dumps(out, default=str), encoding="utf-8")
    handle.client.log_artifact(handle.run_id, str(path), OUTCOME_DIR)
    if key is not None:
        v = outcome.version
        handle.client.set_model_version_tag(v.name, v.version, TRAINING_KEY_TAG, key)


def find(
    tracking: TrackingConfig, city_key: str, key: str | None, out_dir: Path
) -> TrainingOutcome | None:
    """The newest registered version of ``city_key`` trained with ``key`` (its outcome and
    training curve downloaded to ``out_dir``), or None."""
    from calliper_pipeline.steps.train import TrainingOutcome

    if key is None:
        return None
    client = tracking.client()
    name = registered_model_name(city_key)
    found = client.search_model_versions(f"name = '{name}' and tags.{TRAINING_KEY_TAG} = '{key}'")
    for mv in sorted(found, key=lambda m: int(m.version), reverse=True):
        if not mv.run_id or client.get_run(mv.run_id).info.status != "FINISHED":
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        with mlflow_uris(tracking):
            folder = Path(
                mlflow.artifacts.download_artifacts(
                    run_id=mv.run_id, artifact_path=OUTCOME_DIR, dst_path=str(out_dir)
                )
            )
            data: dict[str, Any] = json.loads((folder / OUTCOME_FILE).read_text("utf-8"))
            curve = mlflow.artifacts.download_artifacts(
                run_id=mv.run_id, artifact_path=f"figures/{data['curve_png']}",
                dst_path=str(out_dir),
            )  # fmt: skip
        data.update(
            version=RegisteredVersion(**data["version"]),
            history=tuple(EpochStats(**h) for h in data["history"]),
            curve_png=Path(curve),
            run_url=run_url(tracking, mv.run_id),
        )
        return TrainingOutcome(**data)
    return None
