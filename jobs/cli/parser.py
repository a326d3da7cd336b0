"""``calliper``: ingest, embed, train and evaluate a city from the command line.

Paths come from options or the environment (see :mod:`calliper_pipeline.settings`):
``--data-root`` / CALLIPER_DATA_ROOT, ``--home`` / CALLIPER_HOME, ``--cities`` /
CALLIPER_CITIES. Coordinates: ``lon``/``lat`` are WGS84 degrees (EPSG:4326); distances and
wavelengths are metres.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from calliper_pipeline import settings as settings_mod
from calliper_pipeline.cities.spec import CitySpec, get_city, load_city_registry
from calliper_pipeline.config import (
    DescriptionConfig,
    EncoderConfig,
    RunConfig,
    TrainConfig,
)

logger = logging.getLogger("calliper")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--city", default="london", help="city key from the registry (default: london)")
    p.add_argument("--data-root", type=Path, help="data folder (env CALLIPER_DATA_ROOT)")
    p.add_argument("--home", type=Path, help="working store: DuckDB, models (env CALLIPER_HOME)")
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


def _training(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    e = EncoderConfig()
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="POIs per batch (1024)")
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate (1e-3)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of split, init and shuffling")
    p.add_argument("--device", default=d.device, help="cpu or cuda")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument(
        "--early-stopping",
        type=int,
        default=None,
        metavar="EPOCHS",
        help="stop after this many epochs without validation improvement (default: off)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--pe", default=e.pe, help="positional encoding (grid, theory, spherec, ...)")
    p.add_argument("--network", default=e.network, help="network: fcnet, mlp, siren")
    p.add_argument("--min-lambda-m", type=float, default=e.min_lambda_m, help="metres (100)")
    p.add_argument("--max-lambda-m", type=float, default=e.max_lambda_m, help="metres (10000)")
    p.add_argument(
        "--clip-normalize",
        action="store_true",
        help="normalise the projected text too (standard CLIP); the paper does not",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calliper", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("cities", help="list the registered cities")
    _common(p)

    p = sub.add_parser("ingest", help="read, validate and store a city's POI snapshot in DuckDB")
    _common(p)

    p = sub.add_parser("embed-texts", help="embed the city's distinct descriptions (cached)")
    _common(p)
    _text(p)

    p = sub.add_parser("train", help="train the location encoder (needs ingest + embed-texts)")
    _common(p)
    _text(p)
    _training(p)
    p.add_argument("--output", type=Path, help="model file (default: HOME/models/CITY-VARIANT.pt)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")

    p = sub.add_parser("evaluate", help="land-use and socio-economic probes on a trained model")
    _common(p)
    p.add_argument("--model", type=Path, required=True, help="model file written by train")
    p.add_argument("--seeds", default="42,24,7,0,100", help="probe seeds (comma-separated)")

    p = sub.add_parser(
        "run-all", help="ingest, embed, train, evaluate one city and write the results table"
    )
    _common(p)
    _text(p)
    _training(p)
    p.add_argument(
        "--variants",
        default=None,
        help="comma-separated description variants to train (default: --variant)",
    )
    p.add_argument("--no-baselines", action="store_true", help="skip the four baselines")
    p.add_argument("--results", type=Path, help="write the results section to this Markdown file")

    p = sub.add_parser(
        "embed", help="embed WGS84 points with a registered model (CSV/Parquet in, Parquet out)"
    )
    _common(p)
    _tracking(p)
    p.add_argument("--model", required=True, help="e.g. models:/calliper_london@champion")
    p.add_argument("--input", type=Path, required=True, help="CSV/Parquet with lon, lat (degrees)")
    p.add_argument("--output", type=Path, required=True, help="Parquet: input columns + e000..")
    p.add_argument("--batch-size", type=int, default=50_000, help="points per chunk")
    p.add_argument(
        "--allow-outside",
        action="store_true",
        help="embed points outside the city's bounds (+1 km) instead of failing",
    )

    p = sub.add_parser(
        "retrieve", help="score every grid cell of the city against a text query (heatmap + CSV)"
    )
    _common(p)
    _tracking(p)
    p.add_argument("query", help='e.g. "a place of pubs and bars, a type of eating and drinking"')
    p.add_argument("--model", required=True, help="e.g. models:/calliper_london@champion")
    p.add_argument("--output", type=Path, required=True, help="heatmap PNG")
    p.add_argument("--csv", type=Path, help="top cells CSV (default: the PNG's name + .csv)")
    p.add_argument("--top-k", type=int, default=20, help="cells listed and marked")
    return parser


def _tracking(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (env MLFLOW_TRACKING_URI; default: SQLite under HOME/mlflow)",
    )


def _settings(args: argparse.Namespace) -> settings_mod.Settings:
    s = settings_mod.from_env()
    return settings_mod.Settings(
        data_root=args.data_root or s.data_root,
        home=args.home or s.home,
        city_files=tuple(args.cities) or s.city_files,
    )


def _city(args: argparse.Namespace, s: settings_mod.Settings) -> CitySpec:
    return get_city(args.city, load_city_registry(s.city_files))


def _run_config(args: argparse.Namespace) -> RunConfig:
    train = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        bf16=args.bf16,
        early_stopping_patience=args.early_stopping,
        num_threads=args.threads,
        normalize_text=args.clip_normalize,
    )
    encoder = replace(
        EncoderConfig(),
        pe=args.pe,
        network=args.network,
        min_lambda_m=args.min_lambda_m,
        max_lambda_m=args.max_lambda_m,
    )
    return RunConfig(
        description=DescriptionConfig(variant=args.variant), encoder=encoder, train=train
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from jobs.cli import commands

    s = _settings(args)
    handler = getattr(commands, args.command.replace("-", "_"))
    command_line = "calliper " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    return int(handler(args, s, _city(args, s), command_line) or 0)


if __name__ == "__main__":
    sys.exit(main())
