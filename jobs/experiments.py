"""``calliper experiment``: run or resume an ablation grid and write its table.

The grid's cells are stored in the city's DuckDB file as they finish (a stopped grid
resumes), logged to MLflow as child runs of one parent run per grid, and summarised as a
Markdown section of ``--results`` (e.g. docs/results.md) with the command, commit, machine and
the grep-able lines for the default configuration and its strongest baselines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from calliper_pipeline import presets
from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.evaluation.baselines import POSITIONAL_ENCODING
from calliper_pipeline.experiments import grid as grids
from calliper_pipeline.experiments import runner, table
from calliper_pipeline.provenance import git_commit, machine_description
from calliper_pipeline.settings import REPO_ROOT, Settings
from calliper_pipeline.text.encoders import build_text_encoder

logger = logging.getLogger("calliper.experiments")

COUNTS_ALL = runner.counts_name(None)
PE = POSITIONAL_ENCODING


def section(
    rows: Any, city: CitySpec, experiment: str, variants: tuple[grids.Variant, ...], command: str,
    wall_s: float,
) -> str:  # fmt: skip
    """The Markdown section: the ablation table, the levers and the machine-readable lines."""
    order = [v.name for v in variants] + sorted(
        c for c in set(rows["config"]) if str(c).startswith(runner.BASELINE_PREFIX)
    )
    wide = table.summary(rows, order)
    levers = "\n".join(f"- **{v.name}**: {v.lever}" for v in variants)
    lines = table.machine_lines(rows, presets.DEFAULT, COUNTS_ALL, PE, city.key)
    return (
        f"### Ablation `{experiment}` ({city.name})\n\n"
        f"Command: `{command}`; commit {git_commit(REPO_ROOT)}; {machine_description()}; "
        f"this invocation {wall_s / 60:.1f} min.\n\n"
        "x100, mean ± std over training seeds (one seed: ± the probe seeds' std); each "
        "training seed probed with 5 probe seeds. random = the paper's split; blocks = 10 x 10 "
        "spatial blocks, ~20 % test, a fresh draw per probe seed. LUC: higher is better; SDM "
        "L1: lower is better.\n\n"
        f"{table.to_markdown(wide)}\n{levers}\n\n```\n" + "\n".join(lines) + "\n```\n"
    )


def run(
    city: CitySpec, s: Settings, grid: str = "fidelity", names: str | None = None,
    seeds: tuple[int, ...] = (0, 1, 2), experiment: str = "fidelity",
    encoder_name: str = "minilm", with_baselines: bool = True, results_path: Path | None = None,
    tracking: Any = None, overrides: Mapping[str, Any] | None = None, command: str = "",
) -> int:  # fmt: skip
    """Run the grid's missing cells, log them to MLflow and write the section; exit status."""
    from calliper_pipeline.tracking.experiments import log_grid
    from jobs.cli.results import write_section

    start = time.perf_counter()
    variants = grids.select(grid, names)
    spec = runner.GridSpec(
        experiment=experiment, city=city, data_root=s.data_root,
        encoder=build_text_encoder(encoder_name), seeds=seeds,
        cache_dir=s.home / "cache" / "targets", overrides=dict(overrides or {}),
    )  # fmt: skip
    with s.store().connect(city.key) as con:
        rows = runner.run_grid(con, spec, variants, with_baselines, log=logger.info)
    if tracking is not None:
        n = log_grid(tracking, experiment, city.key, rows)
        logger.info(f"{n} new MLflow child runs under grid {experiment!r}")
    all_variants = grids.select(grid)
    text = section(rows, city, experiment, all_variants, command, time.perf_counter() - start)
    print(text)
    if results_path is not None:
        write_section(results_path, f"ablation-{experiment}-{city.key}", text)
        logger.info(f"ablation written to {results_path}")
    return 0
