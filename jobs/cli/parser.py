"""``calliper``: run a city end to end through Dagster, or one stage at a time.

``calliper run`` materialises the city's whole asset graph (ingest, embed, train + register,
evaluate, promote, maps) in this process against the project's Dagster instance, exactly as
``make run``, a schedule tick or the Dagster UI would. The single-stage commands call the same
library steps for scripting; a trained model is always an MLflow model version.

Paths come from options or the environment (see :mod:`calliper_pipeline.settings`):
``--data-root`` / CALLIPER_DATA_ROOT, ``--home`` / CALLIPER_HOME, ``--cities`` /
CALLIPER_CITIES. Coordinates: ``lon``/``lat`` are WGS84 degrees (EPSG:4326); distances and
wavelengths are metres.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from calliper_pipeline import presets
from calliper_pipeline import settings as settings_mod
from calliper_pipeline.cities.spec import CitySpec, get_city, load_city_registry
from calliper_pipeline.errors import CalliperError, one_line
from jobs import origin
from jobs.cli import commands

logger = logging.getLogger("calliper")


def _common(
    p: argparse.ArgumentParser,
    city_default: str | None = "london",
    unset: str = "the model's own city",
) -> None:
    default = city_default or unset
    p.add_argument(
        "--city", default=city_default, help=f"city key from the registry (default: {default})"
    )
    p.add_argument("--data-root", type=Path, help="data folder (env CALLIPER_DATA_ROOT)")
    p.add_argument(
        "--home", type=Path, help="working store: DuckDB, MLflow, Dagster (CALLIPER_HOME)"
    )
    p.add_argument(
        "--cities",
        type=Path,
        action="append",
        default=[],
        help="extra city TOML file or folder (repeatable; env CALLIPER_CITIES)",
    )


def _text(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--text-encoder",
        default="minilm",
        choices=["minilm", "hashing"],
        help="frozen text encoder: all-MiniLM-L6-v2 (the paper's) or a fast hashing encoder",
    )
    p.add_argument(
        "--variant",
        default="calliper",
        choices=["calliper", "calliper_plus"],
        help="descriptions: 'A place of {category}, a type of {group}' or with the POI name",
    )


def _tracking(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (env MLFLOW_TRACKING_URI; default: SQLite under HOME/mlflow)",
    )


def _training(p: argparse.ArgumentParser) -> None:
    """Training options: a preset plus overrides; unset options keep the preset's value."""
    p.add_argument(
        "--preset",
        default=presets.DEFAULT,
        choices=presets.preset_names(),
        help="'default' (what make run trains) or 'paper' (the published recipe)",
    )
    p.add_argument("--epochs", type=int, help="training epochs")
    p.add_argument("--batch-size", type=int, help="points per contrastive batch")
    p.add_argument("--lr", type=float, help="AdamW learning rate")
    p.add_argument("--seed", type=int, help="seed of split, initialisation and shuffling")
    p.add_argument("--device", help="cpu or cuda")
    p.add_argument("--bf16", action="store_true", default=None, help="bf16 autocast (CUDA)")
    p.add_argument(
        "--early-stopping",
        dest="early_stopping_patience",
        type=int,
        metavar="EPOCHS",
        help="stop after this many epochs without validation improvement",
    )
    p.add_argument("--threads", dest="num_threads", type=int, help="torch CPU threads")
    p.add_argument("--pe", help="positional encoding (grid, theory, spherec, ...)")
    p.add_argument("--network", help="network: fcnet, mlp, siren")
    p.add_argument("--min-lambda-m", type=float, help="smallest grid wavelength, metres")
    p.add_argument("--max-lambda-m", type=float, help="largest grid wavelength, metres")
    p.add_argument(
        "--clip-normalize",
        dest="normalize_text",
        action="store_true",
        default=None,
        help="normalise the projected text too (standard CLIP); the paper does not",
    )


def _stage_parsers(sub: Any) -> None:
    p = sub.add_parser("cities", help="list the registered cities")
    _common(p)
    p = sub.add_parser("ingest", help="read, validate and store a city's POI snapshot in DuckDB")
    _common(p)
    p = sub.add_parser("embed-texts", help="embed the texts a training run needs (cached)")
    _common(p)
    _text(p)
    _training(p)
    p = sub.add_parser(
        "train", help="train and register calliper_<city> in MLflow (needs ingest, embed-texts)"
    )
    _common(p)
    _text(p)
    _training(p)
    _tracking(p)
    p.add_argument(
        "--nproc", type=int, default=1, metavar="N",
        help="data-parallel training on N processes (gloo on CPU, NCCL on CUDA) launched with "
        "torchrun; the global batch stays --batch-size, each process takes its share",
    )  # fmt: skip
    again = p.add_mutually_exclusive_group()
    again.add_argument(
        "--resume", action="store_true",
        help="continue the unfinished run in the checkpoint (same settings and data; epochs, "
        "early stopping, device and threads may change)",
    )  # fmt: skip
    again.add_argument(
        "--restart", action="store_true",
        help="discard an unfinished run's checkpoint and start over (without either flag an "
        "unfinished checkpoint is refused, never overwritten)",
    )  # fmt: skip
    p = sub.add_parser("evaluate", help="land-use and socio-economic probes on a registered model")
    _common(p)
    _tracking(p)
    p.add_argument("--model", required=True, help="e.g. models:/calliper_london/3")
    p.add_argument("--seeds", default="42,24,7,0,100", help="probe seeds (comma-separated)")


def _run_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        aliases=["run-all"],
        help="materialise the city's whole asset graph through Dagster and write the results",
    )
    _common(p)
    _training(p)
    p.add_argument(
        "--variants",
        default="calliper",
        help="comma-separated description variants, one run each: calliper, calliper_plus",
    )
    p.add_argument("--results", type=Path, help="write the results section to this Markdown file")
    p.add_argument("--tiny", action="store_true", help="seconds-scale smoke settings")
    p.add_argument(
        "--retrain", action="store_true",
        help="train even when a registered version of the same snapshot, settings, text "
        "encoder and commit exists (by default it is reused)",
    )  # fmt: skip
    p.add_argument("--dagster-home", type=Path, help="instance folder (HOME/dagster)")
    p.add_argument(
        "--launched-by",
        default=origin.CLI,
        metavar="DOOR",
        help=f"tag {origin.LAUNCHED_BY} of the runs, shown in the Dagster UI (default: "
        f"{origin.CLI}; make run passes {origin.MAKE_RUN})",
    )


def _experiment_parser(sub: Any) -> None:
    p = sub.add_parser(
        "experiment",
        help="a grid of configurations x training seeds with both protocols and the baselines",
    )
    _common(p)
    p.add_argument(
        "--text-encoder", default="minilm", choices=["minilm", "hashing"], help="text encoder"
    )
    p.add_argument("--grid", default="fidelity", help="named grid (fidelity)")
    p.add_argument("--variants", help="comma-separated subset of the grid's configurations")
    p.add_argument("--seeds", default="0,1,2", help="training seeds (comma-separated)")
    p.add_argument("--name", default="fidelity", help="experiment name (the resume key)")
    p.add_argument("--no-baselines", action="store_true", help="skip the baseline rows")
    p.add_argument("--results", type=Path, help="write the ablation section to this Markdown file")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (parent run + one child per cell)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="applied to every variant, e.g. epochs=5 (smoke runs)")  # fmt: skip


def _serving_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "embed",
        help="embed WGS84 points with a registered model (CSV/Parquet in, Parquet out; "
        "GeoJSON/GeoPackage/Shapefile/GeoParquet in, GeoParquet out)",
    )
    _common(p)
    _tracking(p)
    p.add_argument("--model", required=True, help="e.g. models:/calliper_london@champion")
    p.add_argument(
        "--input",
        type=Path,
        required=True,
        help="CSV/Parquet with lon, lat (degrees), or a geo file (polygons: their centroid)",
    )
    p.add_argument(
        "--output",
        type=Path,
        required=True,
        help="Parquet: every input column (lon/lat included) + e000..",
    )
    p.add_argument("--batch-size", type=int, default=50_000, help="points per chunk")
    p.add_argument(
        "--allow-outside",
        action="store_true",
        help="embed points outside the city's bounds (+1 km) instead of failing",
    )
    p = sub.add_parser(
        "retrieve", help="score every grid cell of the city against a text query (heatmap + CSV)"
    )
    _common(p, city_default=None)  # the model's own city (its spec names it)
    _tracking(p)
    p.add_argument("query", help='e.g. "a place of pubs and bars, a type of eating and drinking"')
    p.add_argument("--model", required=True, help="e.g. models:/calliper_london@champion")
    p.add_argument("--output", type=Path, required=True, help="heatmap PNG")
    p.add_argument("--csv", type=Path, help="top cells CSV (default: the PNG's name + .csv)")
    p.add_argument("--top-k", type=int, default=20, help="cells listed and marked")


def _registry_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "models",
        help="registered models: versions, aliases, metrics and the exact URIs to load them",
    )
    _common(p, city_default=None, unset="every city")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _tracking(p)
    p = sub.add_parser(
        "serve",
        help="MLflow's scoring server for the city's champion (make serve CITY=.. PORT=..)",
    )
    _common(p)
    _tracking(p)
    p.add_argument("--port", type=int, default=5001, help="port (default 5001)")
    p.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    p.add_argument("--alias", default="champion", help="alias served (default champion)")
    p.add_argument("--timeout", type=int, default=60, help="seconds per request")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calliper", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _stage_parsers(sub)
    _run_parser(sub)
    _experiment_parser(sub)
    _serving_parsers(sub)
    _registry_parsers(sub)
    return parser


def settings_from(args: argparse.Namespace) -> settings_mod.Settings:
    """Settings from the environment, with the options' paths taking precedence."""
    s = settings_mod.from_env()
    return settings_mod.Settings(
        data_root=args.data_root or s.data_root,
        home=args.home or s.home,
        city_files=tuple(args.cities) or s.city_files,
    )


def city_from(args: argparse.Namespace, s: settings_mod.Settings) -> CitySpec | None:
    """The ``--city`` (None where the command's default is the model's own city: retrieve)."""
    if args.city is None:
        return None
    return get_city(args.city, load_city_registry(s.city_files))


COMMAND_ALIASES = {"run-all": "run"}
# Libraries whose INFO lines are not the pipeline's progress: the schema migrations that open
# every SQLite store (Dagster's instance, MLflow's tracking store) log ~30 of them per run, and
# MLflow narrates its store set-up and model validation.
QUIET_LOGGERS = ("alembic", "sqlalchemy", "mlflow")


def configure_logging(verbose: bool = False) -> None:
    """The console: the pipeline's progress at INFO (everything at DEBUG with ``verbose``);
    :data:`QUIET_LOGGERS` only from WARNING, and no MLflow download progress bars, unless
    ``verbose``."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)
    if not verbose:  # MLflow sets its loggers' level from this variable when it is imported
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    configure_logging(args.verbose)
    name = COMMAND_ALIASES.get(args.command, args.command)
    handler = getattr(commands, name.replace("-", "_"))
    command_line = "calliper " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    try:
        s = settings_from(args)
        return int(handler(args, s, city_from(args, s), command_line) or 0)
    except (CalliperError, FileNotFoundError) as err:
        # an expected error: one line, no traceback (-v or CALLIPER_DEBUG=1 shows it)
        if args.verbose or os.environ.get("CALLIPER_DEBUG"):
            raise
        print(f"calliper {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
