"""Ablation grids (selection, per-seed configurations) and the ablation table's formatting."""

from __future__ import annotations

import pandas as pd
import pytest

from calliper_pipeline import presets
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.experiments import grid, table


def test_select_whole_grid_and_named_subset_in_the_given_order() -> None:
    everything = grid.select("fidelity")
    assert everything == grid.FIDELITY
    names = [v.name for v in everything]
    assert len(set(names)) == len(names) and {"paper", "default"} <= set(names)
    chosen = grid.select("fidelity", " default , paper")
    assert [v.name for v in chosen] == ["default", "paper"]
    assert grid.select("fidelity", "") == grid.FIDELITY


@pytest.mark.parametrize("grid_name, names", [("fidelity", "paper,nope"), ("nope", None)])
def test_select_rejects_unknown_names(grid_name: str, names: str | None) -> None:
    with pytest.raises(ConfigError, match="nope"):
        grid.select(grid_name, names)


def test_variant_config_is_its_preset_with_overrides_seed_and_extra() -> None:
    (names,) = grid.select("fidelity", "paper+names")
    cfg = names.run_config(3, {"epochs": 1})
    assert cfg.train.seed == 3 and cfg.train.epochs == 1
    assert cfg.description.variant == "calliper_plus"
    assert cfg.objective.sources == (grid.PRIMARY_SOURCE,)
    assert cfg == presets.run_config(presets.PAPER, {**names.overrides, "seed": 3, "epochs": 1})
    (default,) = grid.select("fidelity", "default")
    assert default.run_config(0) == presets.run_config(presets.DEFAULT, {"seed": 0})


def _rows(config: str, seed: int, f1: float, l1: float, std: float = 0.02) -> pd.DataFrame:
    """One stored cell: MLP F1 / L1 under both protocols (blocks = random - 0.1)."""
    return pd.DataFrame(
        {
            "config": config,
            "train_seed": seed,
            "protocol": ["random", "random", "blocks", "blocks", "random"],
            "task": ["luc", "sdm", "luc", "sdm", "luc"],
            "probe": ["mlp", "mlp", "mlp", "mlp", "linear"],
            "metric": ["f1", "l1", "f1", "l1", "f1"],
            "mean": [f1, l1, f1 - 0.1, l1 - 0.1, f1 / 2],
            "std": std,
            "dim": 512,
            "seconds": 10.0 * (seed + 1),
        }
    )


@pytest.fixture
def rows() -> pd.DataFrame:
    return pd.concat(
        [
            _rows("default", 0, 0.30, 0.50),
            _rows("default", 1, 0.32, 0.54),
            _rows("counts", 0, 0.20, 0.60, std=0.0123),
            _rows("pe", 0, 0.10, 0.70),
        ],
        ignore_index=True,
    )


def test_summary_gives_mean_and_std_over_training_seeds(rows: pd.DataFrame) -> None:
    wide = table.summary(rows, ["pe", "default"])
    assert list(wide["configuration"]) == ["pe", "default", "counts"]  # order, then the rest
    assert list(wide.columns) == [
        "configuration", "D", "training seeds", *(c[-1] for c in table.COLUMNS), "s / run",
    ]  # fmt: skip
    default = wide.set_index("configuration").loc["default"]
    assert default["D"] == 512 and default["training seeds"] == 2
    assert default["LUC MLP F1 (random)"] == "31.00 ± 1.41"
    assert default["SDM MLP L1 (random)"] == "52.00 ± 2.83"
    assert default["LUC MLP F1 (blocks)"] == "21.00 ± 1.41"
    assert default["LUC lin F1 (random)"] == "15.50 ± 0.71"
    assert default["LUC lin F1 (blocks)"] == "-"  # no such rows
    assert default["s / run"] == "15"  # mean of 10 s and 20 s
    counts = wide.set_index("configuration").loc["counts"]
    # one training seed: ± the probe seeds' std
    assert counts["LUC MLP F1 (random)"] == "20.00 ± 1.23"
    assert table.summary(rows.iloc[0:0]).empty


def test_machine_lines_for_default_and_its_baselines(rows: pd.DataFrame) -> None:
    lines = table.machine_lines(rows, "default", "counts", "pe", "london")
    assert lines == [
        "london-mlp: luc_f1=31.00 sdm_l1=52.00 seeds=2",
        "london-counts-mlp: luc_f1=20.00 sdm_l1=60.00",
        "london-pe-mlp: luc_f1=10.00 sdm_l1=70.00",
        "london-block-mlp: luc_f1=21.00 sdm_l1=42.00 seeds=2",
        "london-block-counts-mlp: luc_f1=10.00 sdm_l1=50.00",
        "london-block-pe-mlp: luc_f1=0.00 sdm_l1=60.00",
    ]
    missing = table.machine_lines(rows, "default", "absent", "pe", "x")[1]
    assert missing == "x-counts-mlp: luc_f1=nan sdm_l1=nan"


def test_to_markdown_table() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y ± z"]})
    assert table.to_markdown(frame) == "| a | b |\n|---|---|\n| 1 | x |\n| 2 | y ± z |\n"
    assert table.to_markdown(pd.DataFrame()) == "(no rows)\n"
