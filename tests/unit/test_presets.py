"""presets.run_config: the one RunConfig builder, and the CLI and Dagster doors that feed it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from assets.config import TrainingConfig
from calliper_pipeline import presets
from calliper_pipeline.config import DescriptionConfig, ObjectiveConfig, RunConfig
from calliper_pipeline.errors import ConfigError
from jobs.cli import commands
from jobs.cli.parser import build_parser


def test_paper_preset_is_the_library_default() -> None:
    assert presets.run_config(presets.PAPER) == RunConfig()
    assert presets.run_config(presets.PAPER).objective.heads == 1


def test_default_preset_uses_four_neighbourhood_heads() -> None:
    cfg = presets.run_config()
    assert presets.DEFAULT == "default" and cfg == presets.run_config(presets.DEFAULT)
    assert cfg.objective.name == "neighbourhood"
    assert cfg.objective.target_radii_m == (200.0, 500.0, 1000.0, 2000.0)
    assert cfg.objective.heads == 4 and cfg.objective.background_fraction == 1.0
    # fewer epochs than the paper's 100, with early stopping (the numbers are tuned elsewhere)
    assert cfg.train.epochs < RunConfig().train.epochs
    assert cfg.train.early_stopping_patience is not None
    # everything else is the paper's
    assert cfg.encoder == RunConfig().encoder and cfg.probe == RunConfig().probe
    assert presets.preset_names() == ["default", "paper"]


def test_flat_overrides_reach_their_section() -> None:
    cfg = presets.run_config(
        presets.PAPER,
        {"epochs": 3, "device": "cuda", "lr": 0.01, "hidden_dim": 64, "objective": "neighbourhood"},
    )
    assert (cfg.train.epochs, cfg.train.device, cfg.train.lr) == (3, "cuda", 0.01)
    assert cfg.encoder.hidden_dim == 64 and cfg.objective.name == "neighbourhood"
    # untouched fields keep the preset's values
    assert cfg.train.batch_size == RunConfig().train.batch_size
    assert cfg.encoder.num_layers == RunConfig().encoder.num_layers


def test_dotted_overrides_and_lists_become_tuples() -> None:
    cfg = presets.run_config(
        presets.DEFAULT,
        {
            "objective.sources": ["a", "b"],
            "train.val_fraction": 0.2,
            "target_radii_m": [100.0, 300.0],
            "probe.seeds": [1, 2],
        },
    )
    assert cfg.objective.sources == ("a", "b")
    assert cfg.objective.target_radii_m == (100.0, 300.0) and cfg.objective.heads == 2
    assert cfg.train.val_fraction == 0.2 and cfg.probe.seeds == (1, 2)
    assert cfg.objective.name == "neighbourhood"  # the preset's, not the paper's
    hash(cfg)  # frozen and hashable: no list slipped through


def test_none_values_are_ignored() -> None:
    assert presets.run_config(presets.DEFAULT, {"epochs": None, "device": None}) == (
        presets.run_config(presets.DEFAULT)
    )
    assert presets.run_config(presets.PAPER, None) == RunConfig()


@pytest.mark.parametrize(
    "preset, overrides",
    [
        ("nope", {}),
        (presets.PAPER, {"epoch": 3}),  # flat name not in FIELDS
        (presets.PAPER, {"train.nope": 1}),  # unknown field of a section
        (presets.PAPER, {"nope.epochs": 1}),  # unknown section
    ],
)
def test_unknown_preset_or_setting_raises(preset: str, overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        presets.run_config(preset, overrides)


def test_cli_options_and_dagster_config_build_the_same_run_config() -> None:
    args = build_parser().parse_args(
        ["train", "--preset", "paper", "--epochs", "3", "--lr", "0.01", "--variant",
         "calliper_plus"]
    )  # fmt: skip
    from_cli = commands.run_config(args)
    from_dagster = TrainingConfig(
        preset="paper", epochs=3, lr=0.01, description_variant="calliper_plus"
    ).run_config()
    expected = presets.run_config(
        presets.PAPER, {"epochs": 3, "lr": 0.01, "description_variant": "calliper_plus"}
    )
    assert from_cli == from_dagster == expected
    assert expected.description == DescriptionConfig(variant="calliper_plus")
    assert (expected.train.epochs, expected.train.lr) == (3, 0.01)
    assert expected.objective == ObjectiveConfig()


def test_cli_and_dagster_defaults_agree() -> None:
    args = build_parser().parse_args(["train"])
    assert commands.training_overrides(args) == {}
    assert commands.run_config(args) == TrainingConfig().run_config() == presets.run_config()


def test_cli_flags_map_to_flat_fields() -> None:
    args = build_parser().parse_args(
        ["train", "--threads", "1", "--early-stopping", "2", "--clip-normalize", "--pe", "theory"]
    )
    assert commands.training_overrides(args) == {
        "num_threads": 1,
        "early_stopping_patience": 2,
        "normalize_text": True,
        "pe": "theory",
    }
    cfg = commands.run_config(args)
    default = presets.run_config()
    assert cfg == replace(
        default,
        train=replace(default.train, num_threads=1, early_stopping_patience=2, normalize_text=True),
        encoder=replace(default.encoder, pe="theory"),
    )


def test_every_cli_training_option_is_a_dagster_training_field() -> None:
    """``calliper run`` hands the CLI's overrides to TrainingConfig: none may be dropped."""
    args = build_parser().parse_args(
        ["run", "--epochs", "2", "--batch-size", "64", "--lr", "0.01", "--seed", "3",
         "--device", "cpu", "--bf16", "--early-stopping", "2", "--threads", "1", "--pe", "theory",
         "--network", "mlp", "--min-lambda-m", "50", "--max-lambda-m", "5000",
         "--clip-normalize"]
    )  # fmt: skip
    overrides = commands.training_overrides(args)
    assert set(overrides) == set(presets.FIELDS) - {
        "description_variant", "hidden_dim", "num_layers", "frequency_num", "objective",
        "target_radii_m", "background_fraction", "multi_positive",
    }  # fmt: skip
    assert set(overrides) <= set(TrainingConfig.model_fields)
    from_dagster = TrainingConfig(preset=args.preset, **overrides).run_config()
    assert from_dagster == commands.run_config(args)
    assert from_dagster.train.normalize_text is True and from_dagster.encoder.network == "mlp"
