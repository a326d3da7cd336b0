"""The model registry: logging and registering a CaLLiPer pyfunc, aliases, the promotion gate,
resolving ``models:/`` URIs.

Conventions (ARCHITECTURE.md section 3): registered model ``calliper_<city>``; aliases, never
stages: ``candidate`` set on exactly the version ``log_model`` returned, ``champion`` moved only
by :func:`promote_if_better`, which records its decision as model-version tags
(``score.<metric>``, ``promotion.*``) and on the training run.

Model packaging: the pyfunc carries the saved model (artifact ``model``, a folder holding what
:func:`calliper_pipeline.model.calliper.save_model` wrote), the part of the ``calliper_pipeline``
package that inference imports (``code_paths``, see
:func:`calliper_pipeline.tracking.packaging.inference_modules`: the model and the pyfunc
wrapper, nothing of ingest, training, evaluation or this module), so the model loads wherever
the pinned :data:`PIP_REQUIREMENTS` are installed, even without this package, and explicit pip
requirements (inferring them costs ~5 s per ``log_model``).
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import RunTag
from mlflow.models import Model, ModelSignature, infer_signature

from calliper_pipeline.cities.geo import transformer
from calliper_pipeline.constants import WGS84_EPSG
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.model.calliper import CalliperModel, save_model
from calliper_pipeline.tracking.packaging import copy_inference_code
from calliper_pipeline.tracking.pyfunc import (
    LAT,
    LON,
    MODEL_ARTIFACT_KEY,
    WEIGHTS_FILE,
    CalliperPyfunc,
)
from calliper_pipeline.tracking.runs import (
    RunHandle,
    TrackingConfig,
    absolute_tracking_uri,
    mlflow_uris,
    set_run_tags,
)
from calliper_pipeline.tracking.runs import tag_value as _tag_value

#: Pip requirements logged with every model: exactly the distributions the shipped inference
#: code imports (``packaging.third_party_imports``; a test checks both that and that the pins
#: are pyproject.toml's). ``mlflow`` loads the pyfunc (and brings ``cloudpickle``, which
#: unpickles it); ``calliper_pipeline`` itself travels as code (``code_paths``).
PIP_REQUIREMENTS: tuple[str, ...] = (
    "mlflow==3.17.2",
    "torch==2.13.0",
    "pyproj==3.7.2",
    "pandas==2.3.3",
    "numpy==2.4.6",
)
CANDIDATE_ALIAS = "candidate"
CHAMPION_ALIAS = "champion"
MODEL_ARTIFACT_NAME = "model"  # name of the logged model within the run
_COPIED_RUN_TAGS = ("city", "snapshot_hash", "dagster_run_id", "code_version")


@dataclass(frozen=True)
class RegisteredVersion:
    """One registered model version; ``model_uri`` pins the version (``models:/name/N``)."""

    name: str
    version: str
    model_uri: str
    run_id: str | None


@dataclass(frozen=True)
class PromotionDecision:
    """What :func:`promote_if_better` decided (also written as tags)."""

    promoted: bool
    reason: str
    candidate_score: float
    incumbent_version: str | None
    incumbent_score: float | None


def registered_model_name(city: str) -> str:
    """``calliper_<city>``."""
    return f"calliper_{city}"


def model_aliases(tracking: TrackingConfig, name: str) -> dict[str, str]:
    """Every alias of registered model ``name`` and the version holding it, e.g.
    ``{"candidate": "3", "champion": "2"}`` (sorted by alias)."""
    aliases = tracking.client().get_registered_model(name).aliases
    return {alias: str(aliases[alias]) for alias in sorted(aliases)}


# ---------------------------------------------------------------------------------------------
# Logging and registering the model
# ---------------------------------------------------------------------------------------------
def default_input_example(model: CalliperModel, n: int = 5) -> pd.DataFrame:
    """A few WGS84 points around the model's centre (inside its bounds), for the signature."""
    spec = model.spec
    cx, cy = spec.centre_m
    if spec.bounds_m is not None:
        min_x, min_y, max_x, max_y = spec.bounds_m
        cx, cy = (min_x + max_x) / 2.0, (min_y + max_y) / 2.0
        dx, dy = (max_x - min_x) / 4.0, (max_y - min_y) / 4.0
    else:
        dx = dy = 1000.0
    offsets = np.array([[0, 0], [-1, -1], [1, -1], [-1, 1], [1, 1]], np.float64)[:n]
    to_wgs84 = transformer(int(spec.metric_epsg), WGS84_EPSG)
    lon, lat = to_wgs84.transform(cx + offsets[:, 0] * dx, cy + offsets[:, 1] * dy)
    return pd.DataFrame({LON: np.asarray(lon, np.float64), LAT: np.asarray(lat, np.float64)})


def _signature(
    model: CalliperModel, input_example: pd.DataFrame | None
) -> tuple[pd.DataFrame, ModelSignature]:
    """The input example as float64 ``lon, lat`` and the signature of a real prediction on it."""
    if input_example is None:
        input_example = default_input_example(model)
    example = pd.DataFrame(
        {
            LON: np.asarray(input_example[LON], np.float64),
            LAT: np.asarray(input_example[LAT], np.float64),
        }
    )
    output = CalliperPyfunc.from_model(model).predict(None, example)
    return example, infer_signature(
        example, output, params={"allow_outside": False, "as_array": False}
    )


def _log_pyfunc(
    handle: RunHandle, model: CalliperModel, city: str, example: pd.DataFrame, sig: ModelSignature
) -> str:
    """Log the pyfunc in the run and register it as ``calliper_<city>``; returns the version."""
    name = registered_model_name(city)
    with tempfile.TemporaryDirectory(prefix="calliper-log-model-") as tmp:
        tmp_path = Path(tmp)
        save_model(tmp_path / "model" / WEIGHTS_FILE, model)
        code = copy_inference_code(tmp_path / "code")
        # The LoggedModel is created here, in the run's experiment: left to Model.log it would
        # go to MLflow's global "active experiment" (Default, artifacts in ./mlruns).
        client = handle.client
        logged = client.create_logged_model(
            experiment_id=handle.experiment_id,
            name=MODEL_ARTIFACT_NAME,
            source_run_id=handle.run_id,
            params=dict(client.get_run(handle.run_id).data.params),
            tags={"city": city},
        )
        with mlflow_uris(handle.tracking):
            info = Model.log(
                artifact_path=None,
                name=MODEL_ARTIFACT_NAME,
                flavor=mlflow.pyfunc,
                run_id=handle.run_id,
                python_model=CalliperPyfunc(),
                artifacts={MODEL_ARTIFACT_KEY: str(tmp_path / "model")},
                code_paths=[str(code)],
                pip_requirements=list(PIP_REQUIREMENTS),
                signature=sig,
                input_example=example,
                registered_model_name=name,
                model_id=logged.model_id,
            )
    if info.registered_model_version is None:
        raise RuntimeError(f"log_model did not register a version of {name}")
    return str(info.registered_model_version)


def log_and_register_model(
    handle: RunHandle,
    model: CalliperModel,
    city: str,
    input_example: pd.DataFrame | None = None,
) -> RegisteredVersion:
    """Log ``model`` as a pyfunc in the run, register it as ``calliper_<city>`` and put the alias
    ``candidate`` on exactly the version created here.

    The signature (inputs ``lon``, ``lat`` double; outputs ``e000``... float32; param
    ``allow_outside`` boolean) is inferred from a real prediction on ``input_example`` (default:
    :func:`default_input_example`), which must lie inside the model's bounds.
    """
    name = registered_model_name(city)
    example, sig = _signature(model, input_example)
    version = _log_pyfunc(handle, model, city, example, sig)
    client = handle.client
    client.set_registered_model_alias(name, CANDIDATE_ALIAS, version)
    uri = absolute_tracking_uri(handle.tracking.tracking_uri)
    model_uri = f"models:/{name}/{version}"
    client.update_model_version(name, version, description=pull_recipe(uri, model_uri))
    client.update_registered_model(
        name, description=pull_recipe(uri, f"models:/{name}@{CHAMPION_ALIAS}")
    )
    run_tags = client.get_run(handle.run_id).data.tags
    for key in _COPIED_RUN_TAGS:
        if key in run_tags:
            client.set_model_version_tag(name, version, key, run_tags[key])
    set_run_tags(handle, {"registered_model": name, "registered_version": version})
    return RegisteredVersion(name=name, version=version, model_uri=model_uri, run_id=handle.run_id)


def pull_recipe(tracking_uri: str, model_uri: str) -> str:
    """How to load ``model_uri`` from any directory (the registry descriptions hold this)."""
    return (
        f"CaLLiPer location encoder: WGS84 lon, lat -> embedding columns e000...\n\n"
        f"Tracking URI: {tracking_uri}\n\n"
        "```python\n"
        "import mlflow\n"
        f'mlflow.set_tracking_uri("{tracking_uri}")\n'
        f'model = mlflow.pyfunc.load_model("{model_uri}")\n'
        "```\n\n"
        "A fresh environment first installs the model's requirements: "
        f'`mlflow.pyfunc.get_model_dependencies("{model_uri}")` names the file.'
    )


# ---------------------------------------------------------------------------------------------
# Promotion
# ---------------------------------------------------------------------------------------------
def _fmt(score: float | None) -> str:
    return "none" if score is None else repr(float(score))


def _tag_float(tags: Mapping[str, str], key: str) -> float | None:
    raw = tags.get(key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _incumbent(
    client: MlflowClient, name: str, version: str, metric: str
) -> tuple[str | None, float | None]:
    """The version holding ``champion`` and its recorded ``score.<metric>`` (None: none/unset;
    the score is not read when ``version`` itself is the champion)."""
    holder = client.get_registered_model(name).aliases.get(CHAMPION_ALIAS)
    if holder is None:
        return None, None
    holder = str(holder)
    if holder == version:
        return holder, None
    tags = client.get_model_version(name, holder).tags
    return holder, _tag_float(tags, f"score.{metric}")


def _decide(
    version: str,
    score: float,
    metric: str,
    incumbent: tuple[str | None, float | None],
    higher_is_better: bool,
    tolerance: float,
    checks_passed: bool,
) -> PromotionDecision:
    """The gate's rules (see :func:`promote_if_better`), without touching the registry."""
    inc_version, inc_score = incumbent
    if inc_version == version:
        reason = f"v{version} already holds '{CHAMPION_ALIAS}'"
        return PromotionDecision(True, reason, score, inc_version, score)
    if not checks_passed:
        return PromotionDecision(False, "sanity checks failed", score, inc_version, inc_score)
    if math.isnan(score):
        reason = f"candidate {metric} is NaN"
        return PromotionDecision(False, reason, score, inc_version, inc_score)
    if inc_version is None:
        reason = f"no incumbent '{CHAMPION_ALIAS}'; {metric}={score:.6g}"
        return PromotionDecision(True, reason, score, None, None)
    if inc_score is None:
        reason = (
            f"incumbent v{inc_version} has no tag score.{metric}; cannot compare "
            f"(set the tag or move the '{CHAMPION_ALIAS}' alias by hand)"
        )
        return PromotionDecision(False, reason, score, inc_version, None)
    bound = inc_score - tolerance if higher_is_better else inc_score + tolerance
    promoted = score >= bound if higher_is_better else score <= bound
    verdict = "beats or matches" if promoted else "does not reach"
    reason = (
        f"candidate {metric}={score:.6g} {verdict} incumbent v{inc_version} "
        f"{inc_score:.6g} (needs {'>=' if higher_is_better else '<='} {bound:.6g}, "
        f"tolerance {tolerance:g})"
    )
    return PromotionDecision(promoted, reason, score, inc_version, inc_score)


#: The gate :func:`promote_if_better` applies (the label-free one: :mod:`.label_free`).
LABEL_GATE = "evaluation labels"


def decision_description(gate: str, decision: PromotionDecision) -> str:
    """The model version's description of a gate decision: which gate, what it decided, why."""
    verdict = f"promoted to '{CHAMPION_ALIAS}'" if decision.promoted else "not promoted"
    return f"Champion gate: {gate}. {verdict[0].upper()}{verdict[1:]}: {decision.reason}."


def record_decision(
    client: MlflowClient,
    name: str,
    version: str,
    run_id: str | None,
    metric: str,
    decision: PromotionDecision,
    gate: str = LABEL_GATE,
) -> None:
    """Write the decision as version tags, on the version's run, and as the version's
    description (:func:`decision_description`)."""
    decision_tags = {
        "promotion.gate": gate,
        "promotion.decision": "promoted" if decision.promoted else "rejected",
        "promotion.reason": _tag_value(decision.reason),
        "promotion.metric": metric,
        "promotion.candidate_score": _fmt(decision.candidate_score),
        "promotion.incumbent_version": decision.incumbent_version or "none",
        "promotion.incumbent_score": _fmt(decision.incumbent_score),
    }
    client.set_model_version_tag(name, version, f"score.{metric}", _fmt(decision.candidate_score))
    for key, value in decision_tags.items():
        client.set_model_version_tag(name, version, key, value)
    if run_id:
        run_tags = {**decision_tags, "promotion.version": version}
        items = [RunTag(k, v) for k, v in run_tags.items()]
        client.log_batch(run_id, tags=items, synchronous=True)
    # the decision goes first; the pull recipe registered with the version stays below it
    current = client.get_model_version(name, version).description or ""
    if current.startswith("Champion gate:"):  # an earlier decision: replace it
        current = current.split("\n\n", 1)[1] if "\n\n" in current else ""
    text = decision_description(gate, decision) + (f"\n\n{current}" if current else "")
    client.update_model_version(name, version, description=text)


def promote_if_better(
    tracking: TrackingConfig,
    city: str,
    version: str | int,
    candidate_score: float,
    metric: str,
    higher_is_better: bool,
    tolerance: float,
    checks_passed: bool,
) -> PromotionDecision:
    """The promotion gate: move ``champion`` to ``version`` if it is at least as good.

    The incumbent is the version holding ``champion``; its score is its tag ``score.<metric>``
    (written by this function for every version it decides on). Promote when ``checks_passed``
    and there is no incumbent, or ``candidate >= incumbent - tolerance`` (higher is better) /
    ``candidate <= incumbent + tolerance`` (lower is better). A NaN candidate score, or an
    incumbent without a recorded score for ``metric``, is not promoted (move the alias by hand
    if that is intended). The decision is written as version tags ``score.<metric>``,
    ``promotion.decision`` (promoted/rejected), ``promotion.reason``, ``promotion.metric``,
    ``promotion.candidate_score``, ``promotion.incumbent_version``,
    ``promotion.incumbent_score``, ``promotion.gate`` (:data:`LABEL_GATE`) and the same
    ``promotion.*`` tags on the version's run; the version's description names the gate and
    the reason. Cities without labels use :func:`.label_free.promote_label_free`.
    Not atomic across concurrent promotions of the same city (one pipeline run per city).
    """
    client = tracking.client()
    name = registered_model_name(city)
    version = str(version)
    run_id = client.get_model_version(name, version).run_id  # fails for an unknown version
    incumbent = _incumbent(client, name, version, metric)
    decision = _decide(
        version,
        float(candidate_score),
        metric,
        incumbent,
        higher_is_better,
        tolerance,
        checks_passed,
    )
    record_decision(client, name, version, run_id, metric, decision)
    if decision.promoted and incumbent[0] != version:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    return decision


# ---------------------------------------------------------------------------------------------
# Resolving
# ---------------------------------------------------------------------------------------------
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/]+))/?$")


def resolve_version(tracking: TrackingConfig, uri: str) -> RegisteredVersion:
    """``models:/name/N`` or ``models:/name@alias`` -> the concrete version (aliases move;
    record ``model_uri`` of the result to reload exactly this version later)."""
    match = _MODELS_URI.match(uri)
    if match is None:
        raise ConfigError(
            f"not a registered-model URI (models:/name/N or models:/name@alias): {uri}"
        )
    client = tracking.client()
    name = match["name"]
    if match["alias"] is not None:
        mv = client.get_model_version_by_alias(name, match["alias"])
    else:
        mv = client.get_model_version(name, match["version"])
    return RegisteredVersion(
        name=name,
        version=str(mv.version),
        model_uri=f"models:/{name}/{mv.version}",
        run_id=mv.run_id,
    )
