"""MLflow layer against a temporary SQLite store: runs, registry, promotion, pyfunc, embed_file.

Two models are logged (``log_model`` is the slow part, ~4 s each); everything else reuses them.
"""

from __future__ import annotations

import os
import struct
import threading
import tomllib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from calliper_pipeline.config import RunConfig, flatten
from calliper_pipeline.errors import ConfigError, ModelInputError
from calliper_pipeline.model.calliper import CalliperModel, embed_points
from calliper_pipeline.tracking import packaging, registry, runs
from calliper_pipeline.tracking.pyfunc import CalliperPyfunc, embedding_columns
from calliper_pipeline.tracking.registry import (
    PromotionDecision,
    RegisteredVersion,
    log_and_register_model,
    promote_if_better,
    resolve_version,
)
from calliper_pipeline.tracking.runs import (
    TrackingConfig,
    default_tracking,
    epoch_logger,
    log_figure_png,
    log_metrics,
    log_table,
    run_url,
    start_training_run,
)
from calliper_pipeline.tracking.serving import embed_file, load_champion, predict_embeddings
from calliper_pipeline.training.checkpoints import EpochStats
from tests.support.models import TINY_BOUNDS_M, tiny_model
from tests.support.paths import REPO_ROOT

CITY = "testville"
BOUNDS = TINY_BOUNDS_M  # London-ish, EPSG:27700
# WGS84 points well inside BOUNDS, and one far outside (Manchester)
INSIDE = pd.DataFrame(
    {"lon": [-0.1276, -0.1, -0.2, -0.05, -0.15], "lat": [51.5072, 51.5, 51.52, 51.48, 51.51]}
)
OUTSIDE = pd.DataFrame({"lon": [-0.1276, -2.2426], "lat": [51.5072, 53.4808]})


def png_bytes() -> bytes:
    """A valid 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@dataclass
class Logged:
    tracking: TrackingConfig
    home: Path
    model1: CalliperModel
    model2: CalliperModel
    run1: str
    run2: str
    v1: RegisteredVersion
    v2: RegisteredVersion
    decisions: list[PromotionDecision]
    champion_after: list[str | None]
    candidate_after: list[str | None]


def champion_of(tracking: TrackingConfig, city: str = CITY, alias: str = "champion") -> str | None:
    version = tracking.client().get_registered_model(f"calliper_{city}").aliases.get(alias)
    return None if version is None else str(version)


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    home = tmp_path_factory.mktemp("mlflow_home")
    workdir = tmp_path_factory.mktemp("cwd")
    old_cwd = Path.cwd()
    os.chdir(workdir)  # anything written relative to the cwd would land here (and fail a test)
    try:
        tracking = default_tracking(home)
        model1 = tiny_model(0, CITY)
        model2 = tiny_model(0, CITY)
        with torch.no_grad():  # a perturbed copy: a different version of the "same" model
            for p in model2.parameters():
                p.add_(0.05 * torch.randn_like(p))
        params = {**flatten(RunConfig()), "notes": "x" * 7000, "bad key!": 1}
        figure = home / "loss_curve.png"
        figure.write_bytes(png_bytes())

        with start_training_run(tracking, CITY, "a" * 64, "dagster-run-1", "abc123", params) as h1:
            log = epoch_logger(h1)
            for epoch in (1, 2, 3):
                log(EpochStats(epoch, 5.0 - epoch, 5.5 - epoch, 0.07 - 0.001 * epoch, 0.5, True))
            log_metrics(h1, {"test_loss": 2.5, "probe.r2": 0.4})
            log_figure_png(h1, figure)
            log_table(h1, pd.DataFrame({"k": [1, 2], "v": [0.5, 0.25]}), "tables/probe.json")
            log_table(h1, pd.DataFrame({"k": [1, 2]}), "tables/probe.csv")
            v1 = log_and_register_model(h1, model1, CITY, INSIDE)
        candidate_after = [champion_of(tracking, alias="candidate")]
        decisions = [promote_if_better(tracking, CITY, v1.version, 0.50, "r2", True, 0.01, True)]
        champion_after = [champion_of(tracking)]

        with start_training_run(tracking, CITY, "b" * 64, None, "abc124", params) as h2:
            epoch_logger(h2)(EpochStats(1, 4.0, 4.2, 0.06, 0.4, True))
            v2 = log_and_register_model(h2, model2, CITY, None)  # default input example
        candidate_after.append(champion_of(tracking, alias="candidate"))
        # deliberately worse than the incumbent (beyond the tolerance): champion stays on v1
        decisions.append(
            promote_if_better(tracking, CITY, v2.version, 0.40, "r2", True, 0.01, True)
        )
        champion_after.append(champion_of(tracking))
        # re-decided with a better score: champion moves to v2
        decisions.append(
            promote_if_better(tracking, CITY, v2.version, 0.60, "r2", True, 0.01, True)
        )
        champion_after.append(champion_of(tracking))
        assert not any(workdir.iterdir()), f"files written into the cwd: {list(workdir.iterdir())}"
        yield Logged(
            tracking,
            home,
            model1,
            model2,
            h1.run_id,
            h2.run_id,
            v1,
            v2,
            decisions,
            champion_after,
            candidate_after,
        )
    finally:
        os.chdir(old_cwd)


# -- runs --------------------------------------------------------------------------------------
def test_run_tags_params_metrics(logged: Logged) -> None:
    client = logged.tracking.client()
    run = client.get_run(logged.run1)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["city"] == CITY
    assert tags["snapshot_hash"] == "a" * 64
    assert tags["dagster_run_id"] == "dagster-run-1"
    assert tags["code_version"] == "abc123"
    assert tags["mlflow.runName"] == f"{CITY}-aaaaaaaa"
    assert "dagster_run_id" not in client.get_run(logged.run2).data.tags

    params = run.data.params
    for key, value in flatten(RunConfig()).items():
        assert params[key] == (repr(value) if isinstance(value, float) else str(value)), key
    assert params["train.lr"] == "0.001"
    assert 0 < len(params["notes"]) <= 6000
    assert params["bad key_"] == "1"

    for key in ("train_loss", "val_loss", "temperature", "epoch_seconds"):
        history = client.get_metric_history(logged.run1, key)
        assert sorted(m.step for m in history) == [1, 2, 3], key
    train = {m.step: m.value for m in client.get_metric_history(logged.run1, "train_loss")}
    assert train == {1: 4.0, 2: 3.0, 3: 2.0}
    assert run.data.metrics["test_loss"] == 2.5


def test_artifacts_live_under_home(logged: Logged) -> None:
    client = logged.tracking.client()
    exp = client.get_experiment_by_name("calliper")
    assert exp is not None
    assert exp.artifact_location == (logged.home / "mlartifacts").as_uri()
    figures = [a.path for a in client.list_artifacts(logged.run1, "figures")]
    assert figures == ["figures/loss_curve.png"]
    local = client.download_artifacts(logged.run1, "figures/loss_curve.png", str(logged.home))
    assert Path(local).read_bytes() == png_bytes()
    tables = {a.path for a in client.list_artifacts(logged.run1, "tables")}
    assert tables == {"tables/probe.json", "tables/probe.csv"}
    assert list((logged.home / "mlartifacts").iterdir())


# -- registry and promotion --------------------------------------------------------------------
def test_versions_and_candidate_alias(logged: Logged) -> None:
    assert (logged.v1.version, logged.v2.version) == ("1", "2")
    assert logged.v1.name == f"calliper_{CITY}"
    assert logged.v2.model_uri == f"models:/calliper_{CITY}/2"
    assert (logged.v1.run_id, logged.v2.run_id) == (logged.run1, logged.run2)
    client = logged.tracking.client()
    assert client.get_model_version(logged.v1.name, "1").run_id == logged.run1
    # candidate was set on exactly each new version in turn
    assert logged.candidate_after == ["1", "2"]
    assert str(client.get_model_version_by_alias(logged.v1.name, "candidate").version) == "2"
    tags = client.get_model_version(logged.v1.name, "1").tags
    assert tags["snapshot_hash"] == "a" * 64
    assert tags["dagster_run_id"] == "dagster-run-1"


def test_champion_moves_only_for_better(logged: Logged) -> None:
    first, worse, better = logged.decisions
    assert first.promoted and first.incumbent_version is None
    assert not worse.promoted
    assert worse.incumbent_version == "1" and worse.incumbent_score == 0.5
    assert worse.candidate_score == 0.4
    assert better.promoted and better.incumbent_version == "1"
    assert logged.champion_after == ["1", "1", "2"]

    client = logged.tracking.client()
    tags1 = client.get_model_version(logged.v1.name, "1").tags
    assert tags1["score.r2"] == "0.5"
    assert tags1["promotion.decision"] == "promoted"
    tags2 = client.get_model_version(logged.v1.name, "2").tags
    assert tags2["score.r2"] == "0.6"  # the last decision overwrote the rejected one
    assert tags2["promotion.decision"] == "promoted"
    assert tags2["promotion.incumbent_version"] == "1"
    assert tags2["promotion.incumbent_score"] == "0.5"
    assert tags2["promotion.candidate_score"] == "0.6"
    run_tags = client.get_run(logged.run2).data.tags
    assert run_tags["promotion.decision"] == "promoted"
    assert run_tags["promotion.version"] == "2"


def test_gate_rules_do_not_move_champion(logged: Logged) -> None:
    """Rejections (failed checks, worse, NaN) leave champion on v2; tolerance is honoured."""
    t, v1 = logged.tracking, logged.v1.version
    d = promote_if_better(t, CITY, v1, 0.99, "r2", True, 0.01, checks_passed=False)
    assert not d.promoted and "checks" in d.reason
    assert champion_of(t) == "2"
    d = promote_if_better(t, CITY, v1, float("nan"), "r2", True, 0.01, True)
    assert not d.promoted and "NaN" in d.reason
    assert t.client().get_model_version(logged.v1.name, v1).tags["promotion.decision"] == (
        "rejected"
    )
    # lower-is-better metric with no score recorded on the incumbent: refuse to compare
    d = promote_if_better(t, CITY, v1, 1.0, "val_loss", False, 0.0, True)
    assert not d.promoted and d.incumbent_score is None and "no tag" in d.reason
    assert champion_of(t) == "2"
    # the champion itself: a no-op that reports promoted
    d = promote_if_better(t, CITY, "2", 0.6, "r2", True, 0.01, True)
    assert d.promoted and champion_of(t) == "2"
    # put v1's r2 within tolerance of v2's 0.6 last, then restore: v1 would win at 0.595
    d = promote_if_better(t, CITY, v1, 0.595, "r2", True, 0.01, True)
    assert d.promoted and champion_of(t) == "1"
    d = promote_if_better(t, CITY, "2", 0.6, "r2", True, 0.01, True)
    assert d.promoted and champion_of(t) == "2"


def test_resolve_version_and_run_url(logged: Logged) -> None:
    t = logged.tracking
    champ = resolve_version(t, f"models:/calliper_{CITY}@champion")
    assert champ == RegisteredVersion(
        f"calliper_{CITY}", "2", f"models:/calliper_{CITY}/2", logged.run2
    )
    assert resolve_version(t, f"models:/calliper_{CITY}/1").run_id == logged.run1
    with pytest.raises(ConfigError):
        resolve_version(t, "runs:/abc/model")
    note = run_url(t, logged.run1)
    assert note is not None and "mlflow ui" in note and t.tracking_uri in note
    assert logged.run1 in note
    http = TrackingConfig("http://127.0.0.1:1")  # nothing listens there
    assert run_url(TrackingConfig(t.tracking_uri), "0" * 32) is None
    assert http.effective_registry_uri == "http://127.0.0.1:1"


# -- loading the champion ----------------------------------------------------------------------
def test_champion_pyfunc(logged: Logged) -> None:
    before = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"))
    pyfunc = load_champion(logged.tracking, CITY)
    assert (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")) == before

    out1 = predict_embeddings(pyfunc, INSIDE)
    out2 = predict_embeddings(pyfunc, INSIDE)
    assert out1.shape == (len(INSIDE), 128)
    assert list(out1.columns) == embedding_columns(128)
    assert list(out1.columns[:2]) == ["e000", "e001"] and out1.columns[-1] == "e127"
    assert (out1.dtypes == np.float32).all()
    pd.testing.assert_frame_equal(out1, out2)  # deterministic (eval mode, no dropout)

    # it is v2 (the perturbed model), and agrees with embedding in metric coordinates
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 27700, always_xy=True).transform(INSIDE.lon, INSIDE.lat)
    expected = embed_points(logged.model2, x_m=np.asarray(x), y_m=np.asarray(y))
    np.testing.assert_allclose(out1.to_numpy(), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(
        expected, embed_points(logged.model1, x_m=np.asarray(x), y_m=np.asarray(y))
    )

    # text side reachable from a registry pull
    model = pyfunc.unwrap_python_model().model
    assert isinstance(model, CalliperModel)
    assert model.text_projection.in_features == 384
    assert model.spec.city == CITY

    with pytest.raises(ModelInputError, match=r"1 of 2 points lie outside.*\[1\]") as info:
        predict_embeddings(pyfunc, OUTSIDE)
    # also what MLflow's scoring server turns into HTTP 400 with this message
    assert isinstance(info.value, MlflowException)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert info.value.get_http_status_code() == 400
    assert 'params={"allow_outside": true}' in info.value.message
    out = predict_embeddings(pyfunc, OUTSIDE, allow_outside=True)
    assert out.shape == (2, 128) and np.isfinite(out.to_numpy()).all()

    array = pyfunc.predict(INSIDE, params={"as_array": True})
    assert isinstance(array, np.ndarray) and array.dtype == np.float32
    np.testing.assert_array_equal(array, out1.to_numpy())


def test_log_model_writes_signature_and_requirements(logged: Logged) -> None:
    from mlflow.models import get_model_info

    info = get_model_info_scoped(logged.tracking, logged.v1.model_uri, get_model_info)
    sig = info.signature
    assert sig.inputs.input_names() == ["lon", "lat"]
    assert [t.name for t in sig.inputs.input_types()] == ["double", "double"]
    assert sig.outputs.input_names() == embedding_columns(128)
    assert {t.name for t in sig.outputs.input_types()} == {"float"}
    assert sig.params is not None
    assert [(p["name"], p["type"], p["default"]) for p in sig.params.to_dict()] == [
        ("allow_outside", "boolean", False),
        ("as_array", "boolean", False),
    ]
    # exactly what the shipped code imports: no more (cloudpickle comes with mlflow), no less
    path = get_model_info_scoped(
        logged.tracking, logged.v1.model_uri, mlflow.pyfunc.get_model_dependencies
    )
    assert Path(path).read_text().split() == list(registry.PIP_REQUIREMENTS)


def get_model_info_scoped(tracking: TrackingConfig, uri: str, fn):  # type: ignore[no-untyped-def]
    with runs.mlflow_uris(tracking):
        return fn(uri)


def test_pip_requirements_match_pyproject() -> None:
    pins = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = {p.split("==")[0]: p for p in pins}
    for req in registry.PIP_REQUIREMENTS:
        name = req.split("==")[0].split(">")[0]
        if name in pinned:
            assert req == pinned[name]
    names = {r.split("==")[0] for r in registry.PIP_REQUIREMENTS}
    assert (
        names == packaging.third_party_imports() == {"mlflow", "torch", "pyproj", "pandas", "numpy"}
    )


# -- embed_file --------------------------------------------------------------------------------
def test_embed_file_csv_to_parquet(logged: Logged, tmp_path: Path) -> None:
    pts = INSIDE.assign(point_id=[f"00{i}" for i in range(len(INSIDE))], name=list("abcde"))
    src = tmp_path / "points.csv"
    pts[["point_id", "lon", "lat", "name"]].to_csv(src, index=False)
    dst = tmp_path / "out" / "embeddings.parquet"
    uri = f"models:/calliper_{CITY}@champion"
    n = embed_file(uri, src, dst, batch_size=2, show_progress=False, tracking=logged.tracking)
    assert n == len(pts)
    out = pd.read_parquet(dst)
    assert list(out.columns) == ["point_id", "lon", "lat", "name", *embedding_columns(128)]
    assert out["point_id"].tolist() == ["000", "001", "002", "003", "004"]  # ids kept as text
    assert out["lon"].tolist() == pts["lon"].tolist() and out["lat"].dtype == np.float64
    direct = predict_embeddings(load_champion(logged.tracking, CITY), INSIDE)
    # other batch sizes than the direct call: equal up to float32 summation order
    emb = out[embedding_columns(128)].to_numpy()
    np.testing.assert_allclose(emb, direct.to_numpy(), rtol=1e-5, atol=1e-6)
    assert (out[embedding_columns(128)].dtypes == np.float32).all()

    # Parquet in, a pinned version, passthrough types kept
    src_pq = tmp_path / "points.parquet"
    pts.assign(k=np.arange(5)).to_parquet(src_pq, index=False)
    dst2 = tmp_path / "emb2.parquet"
    n = embed_file(
        logged.v2.model_uri,
        src_pq,
        dst2,
        batch_size=3,
        show_progress=True,
        tracking=logged.tracking,
    )
    out2 = pd.read_parquet(dst2)
    assert n == 5 and out2["k"].tolist() == [0, 1, 2, 3, 4]
    assert list(out2.columns[:5]) == ["lon", "lat", "point_id", "name", "k"]
    emb2 = out2[embedding_columns(128)].to_numpy()
    np.testing.assert_allclose(emb2, direct.to_numpy(), rtol=1e-5, atol=1e-6)


def test_embed_file_errors(logged: Logged, tmp_path: Path) -> None:
    uri = f"models:/calliper_{CITY}@champion"
    src = tmp_path / "far.csv"
    pd.concat([INSIDE, OUTSIDE], ignore_index=True).to_csv(src, index=False)
    dst = tmp_path / "far.parquet"
    with pytest.raises(ModelInputError, match=r"far\.csv.*1 of 3 points.*\[6\]"):
        embed_file(uri, src, dst, batch_size=4, show_progress=False, tracking=logged.tracking)
    assert not dst.exists() and not list(tmp_path.glob("*.tmp"))
    n = embed_file(uri, src, dst, show_progress=False, allow_outside=True, tracking=logged.tracking)
    assert n == 7 and len(pd.read_parquet(dst)) == 7

    nan = tmp_path / "nan.csv"
    nan.write_text("lon,lat\n-0.1,51.5\n,51.5\n-0.1,oops\n")
    with pytest.raises(ModelInputError, match=r"2 of 3 rows.*\[1, 2\]"):
        embed_file(
            uri, nan, tmp_path / "nan.parquet", show_progress=False, tracking=logged.tracking
        )
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("x,y\n1,2\n")
    with pytest.raises(ModelInputError, match="lon"):
        embed_file(
            uri, nocol, tmp_path / "x.parquet", show_progress=False, tracking=logged.tracking
        )
    with pytest.raises(ConfigError):
        embed_file(uri, src, tmp_path / "y.parquet", show_progress=False)  # no tracking given


# -- without a store ---------------------------------------------------------------------------
def test_pyfunc_input_validation() -> None:
    wrapper = CalliperPyfunc.from_model(tiny_model(1, CITY))
    pts = INSIDE.set_index(pd.Index([10, 11, 12, 13, 14]))
    out = wrapper.predict(None, pts)
    assert list(out.index) == [10, 11, 12, 13, 14] and out.shape == (5, 128)
    with pytest.raises(ModelInputError, match="lat"):
        wrapper.predict(None, pts[["lon"]])
    with pytest.raises(ModelInputError, match=r"1 of 5 rows .*\[12\]"):
        wrapper.predict(None, pts.assign(lat=[51.5, 51.5, np.nan, 51.5, 51.5]))
    with pytest.raises(ModelInputError, match="WGS84"):
        wrapper.predict(None, pts.assign(lon=[-0.1, 200.0, -0.1, -0.1, -0.1]))
    with pytest.raises(RuntimeError):
        CalliperPyfunc().predict(None, pts)


def test_failed_run_and_concurrent_loggers(logged: Logged) -> None:
    tracking = logged.tracking  # a new SQLite store costs ~10 s of migrations: reuse the module's
    with pytest.raises(ValueError), start_training_run(tracking, "a", "h" * 8, None, "c", {}) as h:
        raise ValueError("boom")
    assert tracking.client().get_run(h.run_id).info.status == "FAILED"

    handles = [start_training_run(tracking, c, "h" * 8, None, "c", {"x": c}) for c in "bc"]

    def train(handle: runs.RunHandle, offset: float) -> None:
        log = epoch_logger(handle)
        for e in range(1, 6):
            log(EpochStats(e, offset + e, offset, 0.07, 0.1, False))

    threads = [threading.Thread(target=train, args=(h, i * 100.0)) for i, h in enumerate(handles)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    client = MlflowClient(tracking.tracking_uri)
    for i, h in enumerate(handles):
        h.end()
        hist = {m.step: m.value for m in client.get_metric_history(h.run_id, "train_loss")}
        assert hist == {e: i * 100.0 + e for e in range(1, 6)}
        assert client.get_run(h.run_id).info.status == "FINISHED"
