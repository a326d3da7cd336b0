"""The ``pois`` asset on bad input: one-line Failures, quarantine metadata, degenerate warnings.

Cases of the bad-input corpus (tests/support/bad_inputs.py) materialised through Dagster: an
unusable file fails the materialisation with exactly the CLI's one-line message (no library
traceback chained to it), bad rows show as quarantine counts in the metadata, and a degenerate
city passes the blocking checks but fails the WARN-severity ``pois_not_degenerate`` check.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import dagster as dg
import pytest

from assets import build_city_assets
from assets.resources import local_resources
from calliper_pipeline import settings
from tests.support import bad_inputs
from tests.support.bad_inputs import KEY

CASES = {c.name: c for c in bad_inputs.cases()}


def _materialise(name: str, tmp_path: Path) -> tuple[dg.ExecuteInProcessResult, Path]:
    case = CASES[name]
    path = case.write(tmp_path)
    graph = build_city_assets({KEY: bad_inputs.city(path, **case.options)})
    s = settings.Settings(data_root=tmp_path, home=tmp_path / "home")
    result = dg.materialize(
        [graph.snapshot, *graph.assets, *graph.checks],
        selection=[dg.AssetKey("pois")],
        partition_key=KEY,
        resources=local_resources(s, text_encoder="hashing"),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    return result, path


@pytest.mark.parametrize("name", ["csv_semicolon_delimiter", "csv_swapped_lat_lon"])
def test_unusable_file_fails_with_the_one_line_message(name: str, tmp_path: Path) -> None:
    result, path = _materialise(name, tmp_path)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    data = failure.step_failure_data
    assert data.user_failure_data is not None
    description = data.user_failure_data.description
    assert description is not None and "\n" not in description
    assert re.fullmatch(CASES[name].error_pattern(path), description), description
    assert data.error is not None and data.error.cause is None  # no chained library stack


def test_quarantine_and_cleaning_show_in_the_metadata(tmp_path: Path) -> None:
    result, _ = _materialise("csv_nul_and_control_characters", tmp_path)
    assert result.success
    (mat,) = result.asset_materializations_for_node("pois")
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["dagster/row_count"] == bad_inputs.N_GOOD - 1
    assert meta["quarantined_missing_category"] == 1
    assert meta["cleaned_control_characters_stripped"] == 4
    assert "warnings" not in meta
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["pois_not_degenerate"] is True


def test_degenerate_city_warns_but_passes_the_blocking_checks(tmp_path: Path) -> None:
    result, _ = _materialise("degenerate_three_rows", tmp_path)
    assert result.success
    (mat,) = result.asset_materializations_for_node("pois")
    assert len(mat.metadata["warnings"].value) == 3
    evaluations = {c.check_name: c for c in result.get_asset_check_evaluations()}
    warn = evaluations.pop("pois_not_degenerate")
    assert warn.passed is False and warn.severity == dg.AssetCheckSeverity.WARN
    assert warn.metadata["warnings"].value == [
        "3 POIs, fewer than one training batch (1,024)",
        "one category only ('cafe'): nothing to contrast",
        "all 3 POIs lie at 1 distinct place(s) (to the metre)",
    ]
    blocking = {k: v.passed for k, v in evaluations.items() if k != "pois_category_mix_stable"}
    assert blocking == {
        "pois_not_empty": True,
        "pois_have_unique_ids": True,
        "pois_within_city_bounds": True,
        "pois_have_descriptions": True,
    }


def test_calliper_run_prints_the_failed_step_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobs.cli.parser import main

    for name in [v for v in os.environ if v.startswith(("CALLIPER_", "MLFLOW_", "DAGSTER_"))]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    case = CASES["csv_semicolon_delimiter"]
    path = case.write(tmp_path)
    toml = tmp_path / "corpus.toml"
    toml.write_text(bad_inputs.city_toml(path), encoding="utf-8")
    argv = ["run", "--tiny", "--city", KEY, "--cities", str(toml), "--data-root", str(tmp_path)]
    rc = main([*argv, "--home", str(tmp_path / "home")])
    err = capsys.readouterr().err
    assert rc == 1
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    pattern = "calliper run: error: pois: " + case.error_pattern(path)
    assert re.fullmatch(pattern, errors[0]), errors[0]
