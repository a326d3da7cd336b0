"""What a tracking store holds, for people pulling models: every registered model with its
versions, aliases, the key metrics of each alias's version, and the exact URIs to paste
(``calliper models``).

The tracking URI is reported absolute (``sqlite:////abs/path/mlflow.db``), so a recipe that
uses it works from any directory; a local store that does not exist is refused
(:func:`~calliper_pipeline.tracking.runs.require_existing_store`), never created.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from calliper_pipeline.tracking.runs import (
    TrackingConfig,
    absolute_tracking_uri,
    require_existing_store,
)

#: Shown label -> MLflow run metric (logged by training and the evaluation steps).
KEY_METRICS: dict[str, str] = {
    "luc_f1": "luc.mlp.f1",
    "sdm_l1": "sdm.mlp.l1",
    "luc_f1_blocks": "blocks.luc.mlp.f1",
    "sdm_l1_blocks": "blocks.sdm.mlp.l1",
    "best_val_loss": "best_val_loss",
}


@dataclass(frozen=True)
class AliasEntry:
    """One alias of a registered model and what its version scored."""

    alias: str
    version: str
    model_uri: str  # models:/name@alias (moves with the alias)
    version_uri: str  # models:/name/N (pinned)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelEntry:
    """One registered model of the store."""

    name: str
    tracking_uri: str
    versions: list[str]
    aliases: list[AliasEntry]

    @property
    def champion_uri(self) -> str | None:
        return next((a.model_uri for a in self.aliases if a.alias == "champion"), None)


def _run_metrics(client: MlflowClient, run_id: str | None) -> dict[str, float]:
    if not run_id:
        return {}
    try:
        logged = client.get_run(run_id).data.metrics
    except MlflowException:
        return {}
    out = {}
    for label, key in KEY_METRICS.items():
        value = logged.get(key)
        if value is not None and not math.isnan(value):
            out[label] = float(value)
    return out


def list_models(tracking: TrackingConfig, city: str | None = None) -> list[ModelEntry]:
    """Every registered model (only ``calliper_<city>`` with ``city``), sorted by name.

    Raises ConfigError for a local SQLite store that does not exist.
    """
    require_existing_store(tracking)
    client = tracking.client()
    uri = absolute_tracking_uri(tracking.tracking_uri)
    entries = []
    for rm in client.search_registered_models(max_results=1000):
        if city is not None and rm.name != f"calliper_{city}":
            continue
        versions = client.search_model_versions(f"name = '{rm.name}'", max_results=10_000)
        by_version = {str(v.version): v for v in versions}
        aliases = []
        for alias, version in sorted(rm.aliases.items()):
            mv = by_version.get(str(version))
            aliases.append(
                AliasEntry(
                    alias=alias,
                    version=str(version),
                    model_uri=f"models:/{rm.name}@{alias}",
                    version_uri=f"models:/{rm.name}/{version}",
                    metrics=_run_metrics(client, mv.run_id if mv is not None else None),
                )
            )
        entries.append(
            ModelEntry(
                name=rm.name,
                tracking_uri=uri,
                versions=sorted(by_version, key=int),
                aliases=aliases,
            )
        )
    return sorted(entries, key=lambda e: e.name)


def to_json(entries: list[ModelEntry]) -> str:
    """The entries as a JSON list (``champion_uri`` included)."""
    return json.dumps(
        [{**asdict(e), "champion_uri": e.champion_uri} for e in entries], indent=2, sort_keys=True
    )


def _fmt_metrics(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in metrics.items()) or "-"


def to_text(entries: list[ModelEntry], tracking_uri: str) -> str:
    """A plain table per model, then the lines to paste into Python."""
    lines = [f"tracking URI: {tracking_uri}"]
    if not entries:
        lines.append("no registered models")
        return "\n".join(lines)
    for e in entries:
        lines += ["", f"{e.name}  versions {', '.join(e.versions)}"]
        if not e.aliases:
            lines.append("  (no aliases)")
        width = max((len(a.alias) for a in e.aliases), default=0)
        for a in e.aliases:
            lines.append(
                f"  @{a.alias:<{width}} -> v{a.version:<4} {a.model_uri:<40} "
                f"{_fmt_metrics(a.metrics)}"
            )
    first = next((e for e in entries if e.champion_uri), entries[0])
    if not first.versions:
        return "\n".join(lines)
    uri = first.champion_uri or f"models:/{first.name}/{first.versions[-1]}"
    lines += [
        "",
        "load it from any directory:",
        "  import mlflow",
        f'  mlflow.set_tracking_uri("{tracking_uri}")',
        f'  model = mlflow.pyfunc.load_model("{uri}")',
    ]
    return "\n".join(lines)
