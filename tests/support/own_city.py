"""Bring-your-own-city end-to-end runs: a city file and a POI file as a user writes them,
through ``calliper run --tiny`` twice on one CALLIPER_HOME (v1: no champion yet; v2: the same
settings retrained, measured against v1 on its held-out POIs by the label-free gate), then
``calliper embed`` from the champion. Shared by the e2e tests of each input format."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from calliper_pipeline.tracking.label_free import GATE
from calliper_pipeline.tracking.runs import TrackingConfig, default_tracking
from jobs.cli.parser import main


@dataclass
class Own:
    root: Path
    home: Path
    paths: list[str]
    statuses: list[int]
    out: dict[str, str]

    @property
    def tracking(self) -> TrackingConfig:
        return default_tracking(self.home / "mlflow")

    def run(self, *argv: str) -> tuple[int, str]:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            status = main([*argv, *self.paths])
        return status, buf.getvalue()


@contextlib.contextmanager
def own_city_runs(root: Path, key: str, data: Path, toml: Path, runs: int = 2) -> Iterator[Own]:
    """``runs`` (1 or 2) ``calliper run --tiny`` of city ``key`` (the second with
    ``--retrain``; the last with ``--results root/results.md``), with the hashing text encoder
    and no CALLIPER_/MLFLOW_/DAGSTER_ variables from the caller's environment."""
    home = root / "home"
    paths = ["--city", key, "--home", str(home), "--data-root", str(data), "--cities", str(toml)]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for name in list(os.environ):
            if name.startswith(("CALLIPER_", "MLFLOW_", "DAGSTER_")):
                mp.delenv(name)
        mp.setenv("CALLIPER_TEXT_ENCODER", "hashing")  # read by the Dagster resources
        own = Own(root, home, paths, [], {})
        # the second run retrains (nothing changed, so it would reuse v1) to meet the gate
        results = ["--results", str(root / "results.md")]
        plan = [(1, results)] if runs == 1 else [(1, []), (2, ["--retrain", *results])]
        for i, extra in plan:
            status, out = own.run("run", "--tiny", *extra)
            own.statuses.append(status)
            own.out[f"run {i}"] = out
        yield own


def check_label_free_champion(own: Own, model: str, runs: int = 2) -> None:
    """Every version promoted by the label-free gate, v1 with no incumbent; v2 (the same
    settings, when ``runs`` is 2) not worse than v1."""
    client = own.tracking.client()
    aliases = {k: str(v) for k, v in client.get_registered_model(model).aliases.items()}
    assert aliases == {"candidate": str(runs), "champion": str(runs)}
    versions = [client.get_model_version(model, str(v)) for v in range(1, runs + 1)]
    for mv in versions:
        assert mv.tags["promotion.gate"] == GATE and mv.tags["promotion.decision"] == "promoted"
        assert mv.description.startswith(f"Champion gate: {GATE}. Promoted to 'champion'")
    assert "no incumbent" in versions[0].description
    if runs == 1:
        return
    v2 = versions[1]
    # v2 was measured against v1 on v2's held-out POIs: the same settings, the same numbers
    assert v2.tags["heldout.incumbent_version"] == "1"
    assert "not worse than champion v1" in v2.description
    assert float(v2.tags["heldout.val_loss"]) == pytest.approx(
        float(v2.tags["heldout.incumbent_val_loss"]), rel=1e-5
    )


def check_embed_keeps_input_columns(own: Own, model: str, lon: float, lat: float) -> None:
    """``calliper embed`` of three points near (lon, lat) from the champion: the input's
    columns first, unchanged, then e000..e511."""
    points = pd.DataFrame(
        {
            "site": ["a", "b", "c"],
            "lon": [lon, lon + 0.01, lon - 0.02],
            "lat": [lat, lat, lat + 0.01],
            "note": ["x", "y", "z"],
        }
    )
    src, dst = own.root / "points.csv", own.root / "emb.parquet"
    points.to_csv(src, index=False)
    status, out = own.run("embed", "--model", f"models:/{model}@champion", "--input", str(src),
                          "--output", str(dst))  # fmt: skip
    assert status == 0 and f"3 points embedded with models:/{model}@champion" in out
    emb = pd.read_parquet(dst)
    assert list(emb.columns[:4]) == ["site", "lon", "lat", "note"]
    assert emb["lon"].tolist() == points["lon"].tolist()
    assert emb["lat"].tolist() == points["lat"].tolist()
    assert list(emb.columns[4:]) == [f"e{i:03d}" for i in range(512)]  # default preset
    assert emb.iloc[:, 4:].notna().all().all()
