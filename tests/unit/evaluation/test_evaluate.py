"""Evaluation protocol: metrics by hand, the fixed split, probes, early stopping, seeding,
DataLoader parity, the evaluation-set loaders, and the real London sets (skipped if absent)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pyproj import Transformer
from shapely.geometry import Point
from torch.utils.data import DataLoader, TensorDataset

from calliper_pipeline.cities.spec import CitySpec as City
from calliper_pipeline.cities.spec import ColumnMap, EvaluationSpec, SnapshotSpec, get_city
from calliper_pipeline.config import ProbeConfig
from calliper_pipeline.evaluation.data import (
    EvaluationDataError,
    LabelledPoints,
    MissingEvaluationSetError,
    has_landuse,
    has_socioeconomic,
    load_landuse,
    load_socioeconomic,
)
from calliper_pipeline.evaluation.metrics import classification_metrics, distribution_metrics
from calliper_pipeline.evaluation.probes import (
    EarlyStopping,
    _batched_loss,
    _draw_loader_seed,
    _loader_permutation,
    build_probe,
    fit_probe,
    seeded,
)
from calliper_pipeline.evaluation.protocol import FRAME_COLUMNS, evaluate_features, evaluate_task
from calliper_pipeline.evaluation.splits import fixed_split
from tests.support.paths import data_root

# lr 1e-2 keeps the learning tests short; the protocol itself is checked by the parity tests
FAST = ProbeConfig(seeds=(0,), max_epochs=40, patience=5, lr=0.01)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """The probes' ops are tiny: one intra-op thread is fastest, above all on shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _points(feats_n: int, targets: np.ndarray, task: str) -> LabelledPoints:
    n_classes = int(targets.max()) + 1 if task == "luc" else targets.shape[1]
    zeros = np.zeros(feats_n)
    return LabelledPoints(
        ids=np.arange(feats_n),
        x_m=zeros,
        y_m=zeros,
        lon=zeros,
        lat=zeros,
        targets=targets,
        class_names=tuple(f"c{i}" for i in range(n_classes)),
        task=task,
    )


def _blobs(n: int, xor: bool, seed: int = 0) -> tuple[np.ndarray, LabelledPoints]:
    """Points around (+-2, +-2): labels by the sign of x (separable) or of x*y (XOR)."""
    rng = np.random.default_rng(seed)
    centres = rng.choice([-2.0, 2.0], size=(n, 2))
    x = (centres + rng.normal(scale=0.4, size=(n, 2))).astype(np.float32)
    label = (centres[:, 0] * centres[:, 1] > 0) if xor else (centres[:, 0] > 0)
    return x, _points(n, label.astype(np.int64), "luc")


# ---------------------------------------------------------------- metrics by hand


def test_classification_metrics_by_hand() -> None:
    # class 0: P 1/2 R 1/2 F1 1/2; class 1: P 2/3 R 1 F1 4/5; class 2: P 1 R 1/2 F1 2/3
    m = classification_metrics(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0]))
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert m["f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)


def test_classification_metrics_zero_division_is_zero() -> None:
    # class 3 is predicted but never true: P 0, R 0/0 -> 0, F1 0; class 0: F1 2/3
    m = classification_metrics(np.array([0, 0]), np.array([0, 3]))
    assert m["f1"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["recall"] == pytest.approx(0.5 / 2)


def test_distribution_metrics_by_hand() -> None:
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    q = np.array([[0.25, 0.25, 0.5], [0.8, 0.1, 0.1]])
    m = distribution_metrics(p, q)
    assert m["l1"] == pytest.approx((1.0 + 0.4) / 2)
    assert m["chebyshev"] == pytest.approx((0.5 + 0.2) / 2)
    # row 1: 0.5 ln 2 + 0.5 ln 2 + 0 (0 log 0 = 0); row 2: ln(1 / 0.8)
    assert m["kl"] == pytest.approx((math.log(2) + math.log(1.25)) / 2)
    assert distribution_metrics(p, p) == {"l1": 0.0, "chebyshev": 0.0, "kl": 0.0}


def test_kl_clamps_zero_predictions() -> None:
    m = distribution_metrics(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), eps=1e-12)
    assert m["kl"] == pytest.approx(-math.log(1e-12))


def test_kl_matches_torch_kl_div_of_log_softmax() -> None:
    """The notebooks' KL: F.kl_div(log_softmax(out), target).sum(1), averaged."""
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(size=(20, 9)))
    target = torch.softmax(torch.from_numpy(rng.normal(size=(20, 9))), 1)
    target[0, :3] = 0.0
    target = target / target.sum(1, keepdim=True)
    ref = F.kl_div(F.log_softmax(logits, 1), target, reduction="none").sum(1).mean().item()
    ours = distribution_metrics(target.numpy(), torch.softmax(logits, 1).numpy())["kl"]
    assert ours == pytest.approx(ref, rel=1e-9)


# ---------------------------------------------------------------- split


@pytest.mark.parametrize(("n", "sizes"), [(6697, (4821, 536, 1340)), (4994, (3595, 400, 999))])
def test_fixed_split_sizes_disjoint_and_deterministic(n: int, sizes: tuple[int, ...]) -> None:
    train, val, test = fixed_split(n)
    assert (len(train), len(val), len(test)) == sizes
    assert len(np.unique(np.concatenate([train, val, test]))) == n
    again = fixed_split(n, ProbeConfig())
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))


# ---------------------------------------------------------------- probes


def test_probe_shapes() -> None:
    assert isinstance(build_probe("linear", 128, 10), torch.nn.Linear)
    mlp = build_probe("mlp", 128, 10, hidden=64)
    assert mlp(torch.zeros(3, 128)).shape == (3, 10)
    assert sum(p.numel() for p in mlp.parameters()) == 128 * 64 + 64 + 64 * 10 + 10
    with pytest.raises(ValueError):
        build_probe("svm", 2, 2)


def test_both_probes_learn_a_separable_task() -> None:
    x, pts = _blobs(500, xor=False)
    runs = evaluate_task(x, pts, FAST)
    assert all(r.metrics["accuracy"] > 0.9 for r in runs)


def test_mlp_learns_xor_and_linear_probe_cannot() -> None:
    x, pts = _blobs(500, xor=True)
    acc = {r.probe: r.metrics["accuracy"] for r in evaluate_task(x, pts, FAST)}
    assert acc["mlp"] > 0.9
    assert acc["linear"] < 0.8  # a line can at best cut off one of the four quadrants


# ---------------------------------------------------------------- early stopping


def test_early_stopping_restores_best_weights_injected() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    stopper = EarlyStopping(patience=3)
    losses = [3.0, 2.0, 1.0, 1.0, 4.0, 5.0, 0.5]  # an equal loss is not an improvement
    stopped_at = None
    for epoch, loss in enumerate(losses, start=1):
        with torch.no_grad():
            model.weight.fill_(float(epoch))  # the weights "of" each epoch
        if stopper.step(loss, model, epoch):
            stopped_at = epoch
            break
    assert stopped_at == 6 and stopper.best_epoch == 3 and stopper.best_loss == 1.0
    stopper.restore(model)
    assert model.weight.item() == 3.0


def test_early_stopping_without_finite_loss_raises() -> None:
    stopper = EarlyStopping(patience=1)
    assert stopper.step(float("nan"), torch.nn.Linear(1, 1), 1)
    with pytest.raises(RuntimeError):
        stopper.restore(torch.nn.Linear(1, 1))


def test_fit_probe_returns_the_best_validation_weights() -> None:
    x, pts = _blobs(400, xor=True, seed=3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(pts.targets)
    cfg = ProbeConfig(max_epochs=30, patience=3)
    with seeded(5):
        model = build_probe("linear", 2, 2)
        fit = fit_probe(model, "luc", (xt[:250], yt[:250]), (xt[250:], yt[250:]), cfg)
    assert fit.best_val_loss == min(fit.val_losses) == fit.val_losses[fit.best_epoch - 1]
    assert fit.epochs_run in (cfg.max_epochs, fit.best_epoch + cfg.patience)
    restored = _batched_loss(model, "luc", xt[250:], yt[250:], cfg.batch_size)
    assert restored == pytest.approx(fit.best_val_loss, abs=1e-7)


# ---------------------------------------------------------------- seeding


def test_runs_repeat_exactly_and_leave_the_callers_rng_alone() -> None:
    x, pts = _blobs(500, xor=True, seed=4)
    cfg = ProbeConfig(seeds=(42, 24), max_epochs=6, patience=3, probes=("mlp",))
    torch.manual_seed(123)
    state, np_state = torch.get_rng_state(), np.random.get_state()
    a, b = evaluate_task(x, pts, cfg), evaluate_task(x, pts, cfg)
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert [r.metrics for r in a] == [r.metrics for r in b]
    assert [r.fit.val_losses for r in a] == [r.fit.val_losses for r in b]
    assert a[0].fit.val_losses != a[1].fit.val_losses  # seeds 42 and 24 differ


def test_shuffles_follow_dataloader_draw_for_draw() -> None:
    """Our epoch order equals DataLoader(shuffle=True) with an unshuffled val loader beside it."""
    n = 300
    torch.manual_seed(7)
    train = DataLoader(TensorDataset(torch.arange(n)), batch_size=128, shuffle=True)
    val = DataLoader(TensorDataset(torch.arange(50)), batch_size=128)
    expected = []
    for _ in range(3):
        expected.append(torch.cat([b[0] for b in train]))
        for _ in val:
            pass
    torch.manual_seed(7)
    for epoch in range(3):
        assert torch.equal(_loader_permutation(n), expected[epoch])
        _draw_loader_seed()


def test_fit_matches_a_dataloader_reference_loop() -> None:
    """Same seed and data: the notebook-style DataLoader loop and fit_probe agree exactly."""
    x, pts = _blobs(700, xor=True, seed=8)
    xt, yt = torch.from_numpy(x), torch.from_numpy(pts.targets)
    tr, va = (xt[:500], yt[:500]), (xt[500:], yt[500:])
    cfg = ProbeConfig(max_epochs=4, patience=100)
    torch.manual_seed(42)
    ref = build_probe("mlp", 2, 2)
    opt = torch.optim.Adam(ref.parameters(), lr=cfg.lr)
    train_loader = DataLoader(TensorDataset(*tr), batch_size=128, shuffle=True)
    val_loader = DataLoader(TensorDataset(*va), batch_size=128)
    ref_losses = []
    for _ in range(cfg.max_epochs):
        ref.train()
        for xb, yb in train_loader:
            opt.zero_grad()
            F.cross_entropy(ref(xb), yb).backward()
            opt.step()
        ref.eval()
        with torch.no_grad():
            ref_losses.append(np.mean([F.cross_entropy(ref(a), b).item() for a, b in val_loader]))
    with seeded(42):
        ours = build_probe("mlp", 2, 2)
        fit = fit_probe(ours, "luc", tr, va, cfg)
    assert list(fit.val_losses) == [float(v) for v in ref_losses]


# ---------------------------------------------------------------- evaluate_features / result


def test_evaluate_features_frame_and_optional_tasks() -> None:
    x, luc = _blobs(400, xor=False, seed=2)
    rng = np.random.default_rng(0)
    props = rng.dirichlet(np.ones(4), size=300).astype(np.float32)
    sdm = _points(300, props, "sdm")
    sdm_x = np.log(props) + rng.normal(scale=0.1, size=props.shape).astype(np.float32)
    # the toy points share one location: the random protocol only (blocks: tests/unit)
    cfg = ProbeConfig(seeds=(1, 2), max_epochs=4, patience=3, protocols=("random",))
    res = evaluate_features(x, luc, sdm_x, sdm, cfg, name="toy")
    frame = res.to_frame()
    assert list(frame.columns[: len(FRAME_COLUMNS)]) == list(FRAME_COLUMNS)
    assert len(frame) == 2 * 4 + 2 * 3 and (frame["n_seeds"] == 2).all()
    assert set(frame["task"]) == {"luc", "sdm"} and (frame["encoder"] == "toy").all()
    row = frame.query("task == 'sdm' and probe == 'mlp' and metric == 'l1'").iloc[0]
    assert row["mean_x100"] == pytest.approx(100 * row["mean"])
    assert res.mean_x100("sdm", "mlp", "l1") == pytest.approx(row["mean_x100"])
    assert res.split_sizes["luc"] == tuple(len(i) for i in fixed_split(400))
    only_luc = evaluate_features(x, luc, None, None, replace(cfg, seeds=(1,), max_epochs=2))
    assert set(only_luc.to_frame()["task"]) == {"luc"}
    with pytest.raises(ValueError):
        evaluate_features(None, None, None, None, cfg)
    with pytest.raises(ValueError):
        evaluate_features(x, luc, None, sdm, cfg)
    with pytest.raises(ValueError):
        evaluate_features(x[:10], luc, None, None, cfg)


# ---------------------------------------------------------------- evaluation-set loaders


def _toy_city(tmp_path: Path, landuse: bool = True, socio: bool = True) -> City:
    spec = EvaluationSpec(
        landuse_path="eval/landuse.geojson" if landuse else None,
        socioeconomic_path="eval/socio.geojson" if socio else None,
    )
    snap = SnapshotSpec(path="pois.csv", columns=ColumnMap(category="c", lon="lon", lat="lat"))
    return City(key="toy", name="Toy", snapshot=snap, metric_epsg=27700, evaluation=spec)


def _write(tmp_path: Path, name: str, frame: gpd.GeoDataFrame) -> None:
    (tmp_path / "eval").mkdir(exist_ok=True)
    frame.to_file(tmp_path / "eval" / name, driver="GeoJSON")


def test_loaders_reproject_and_label(tmp_path: Path) -> None:
    lonlat = [(-0.1, 51.5), (0.0, 51.45), (-0.2, 51.6)]
    geom = [Point(p) for p in lonlat]
    lu = gpd.GeoDataFrame({"landuse_id": [7, 3, 7], "landuse": ["b", "a", "b"]}, geometry=geom)
    _write(tmp_path, "landuse.geojson", lu.set_crs(4326))
    drift = [[0.5, 0.25, 0.25], [0.2, 0.2, 0.6001], [0.1, 0.1, 0.8]]
    se = gpd.GeoDataFrame(
        {"lsoa21cd": ["A", "B", "C"]}
        | {f"ns-sec_{i + 1}": [r[i] for r in drift] for i in (2, 0, 1)},  # shuffled columns
        geometry=geom,
    )
    _write(tmp_path, "socio.geojson", se.set_crs(4326))
    city = _toy_city(tmp_path)
    luc = load_landuse(city, tmp_path, 27700)
    ex, ey = Transformer.from_crs(4326, 27700, always_xy=True).transform(*zip(*lonlat, strict=True))
    np.testing.assert_allclose(luc.x_m, ex, atol=1e-6)
    np.testing.assert_allclose(luc.y_m, ey, atol=1e-6)
    np.testing.assert_allclose(luc.lon, [p[0] for p in lonlat], atol=1e-12)
    assert luc.targets.tolist() == [1, 0, 1] and luc.class_names == ("a", "b")
    assert luc.targets.dtype == np.int64 and luc.x_m.dtype == np.float64
    sdm = load_socioeconomic(city, tmp_path, 27700)
    assert sdm.class_names == ("ns-sec_1", "ns-sec_2", "ns-sec_3")
    assert sdm.targets.dtype == np.float32 and sdm.targets.shape == (3, 3)
    np.testing.assert_allclose(sdm.targets.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(sdm.targets[0], [0.5, 0.25, 0.25], atol=1e-7)
    assert sdm.ids.tolist() == ["A", "B", "C"] and sdm.task == "sdm"


def test_socioeconomic_rows_far_from_one_raise(tmp_path: Path) -> None:
    se = gpd.GeoDataFrame(
        {"lsoa21cd": ["A"], "ns-sec_1": [0.5], "ns-sec_2": [0.3]},
        geometry=[Point(-0.1, 51.5)],
        crs=4326,
    )
    _write(tmp_path, "socio.geojson", se)
    with pytest.raises(EvaluationDataError, match="sum to"):
        load_socioeconomic(_toy_city(tmp_path), tmp_path, 27700)


def test_missing_sets_raise(tmp_path: Path) -> None:
    city = _toy_city(tmp_path, landuse=False, socio=False)
    assert not has_landuse(city) and not has_socioeconomic(city)
    with pytest.raises(MissingEvaluationSetError):
        load_landuse(city, tmp_path, 27700)
    with pytest.raises(MissingEvaluationSetError):
        load_socioeconomic(city, tmp_path, 27700)
    with pytest.raises(FileNotFoundError):
        load_landuse(_toy_city(tmp_path), tmp_path, 27700)


# ---------------------------------------------------------------- real London sets


@pytest.fixture(scope="module")
def london() -> tuple[LabelledPoints, LabelledPoints]:
    city = get_city("london")
    root = data_root()
    assert city.evaluation is not None
    if not (root / str(city.evaluation.landuse_path)).is_file():
        pytest.skip(f"London evaluation data not found under {root}")
    return load_landuse(city, root, 27700), load_socioeconomic(city, root, 27700)


def test_london_sets(london: tuple[LabelledPoints, LabelledPoints]) -> None:
    luc, sdm = london
    assert (len(luc), len(sdm)) == (6697, 4994)
    assert tuple(map(len, fixed_split(len(luc)))) == (4821, 536, 1340)
    assert tuple(map(len, fixed_split(len(sdm)))) == (3595, 400, 999)
    assert luc.n_classes == 10 and set(luc.targets.tolist()) == set(range(10))
    assert np.bincount(luc.targets).tolist()[:3] == [895, 895, 895]
    assert sdm.targets.shape == (4994, 9)
    np.testing.assert_allclose(sdm.targets.sum(1), 1.0, atol=1e-6)
    assert len(set(sdm.ids.tolist())) == 4994
    for pts in (luc, sdm):
        assert pts.x_m.min() > 503_000 and pts.x_m.max() < 562_000
        assert pts.y_m.min() > 155_800 and pts.y_m.max() < 201_000
        assert pts.lon.min() > -0.52 and pts.lat.max() < 51.7
