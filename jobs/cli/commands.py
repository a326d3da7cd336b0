"""Handlers of the ``calliper`` sub-commands (the parser is :mod:`jobs.cli.parser`).

Each handler takes the parsed options, the settings and the city, calls library steps (or, for
``run``, the Dagster job) and prints a short summary. Models are always MLflow model versions.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calliper_pipeline import presets
from calliper_pipeline.cities.spec import CitySpec, load_city_registry
from calliper_pipeline.config import ProbeConfig, RunConfig
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.settings import REPO_ROOT, Settings
from calliper_pipeline.text.encoders import build_text_encoder

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger("calliper")


def training_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The training options the user set, by the flat names of :data:`presets.FIELDS`."""
    names = set(presets.FIELDS) - {"description_variant"}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def run_config(args: argparse.Namespace) -> RunConfig:
    """The one RunConfig builder (:func:`presets.run_config`) fed from the options."""
    overrides = training_overrides(args)
    overrides["description_variant"] = getattr(args, "variant", None)
    return presets.run_config(args.preset, overrides)


def tracking_config(args: argparse.Namespace, s: Settings, read_only: bool = False) -> Any:
    """MLflow store: ``--tracking-uri``, MLFLOW_TRACKING_URI, or SQLite under HOME/mlflow (a
    relative SQLite path is made absolute). ``read_only``: a local store that does not exist
    is refused (ConfigError) instead of created empty."""
    from calliper_pipeline.tracking.runs import (
        TrackingConfig,
        absolute_tracking_uri,
        default_tracking,
        require_existing_store,
    )

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        tracking = TrackingConfig(tracking_uri=absolute_tracking_uri(uri))
    elif read_only:
        path = s.mlflow_dir.expanduser().resolve()
        tracking = TrackingConfig(
            tracking_uri=f"sqlite:///{path / 'mlflow.db'}",
            artifact_location=(path / "mlartifacts").as_uri(),
        )
    else:
        tracking = default_tracking(s.mlflow_dir)
    if read_only:
        require_existing_store(tracking)
    return tracking


def _needs_store(model_uri: str) -> bool:
    return model_uri.split(":", 1)[0] in ("models", "runs", "mlflow-artifacts")


def cities(args: argparse.Namespace, s: Settings, city: CitySpec, command: str) -> int:
    for key, spec in sorted(load_city_registry(s.city_files).items()):
        evals = "evaluation sets" if spec.evaluation else "no evaluation sets"
        print(f"{key}\t{spec.name}\tEPSG:{spec.metric_epsg or 'auto UTM'}\t{evals}")
    return 0


def ingest(args: argparse.Namespace, s: Settings, city: CitySpec, command: str) -> int:
    from calliper_pipeline.steps.ingest import ingest as run_ingest

    with s.store().connect(city.key) as con:
        report = run_ingest(con, city, s.data_root)
    print(
        f"{city.key}: {report.summary()} (EPSG:{report.metric_epsg}, {report.seconds:.1f} s) "
        f"-> {s.store().path_for(city.key)}"
    )
    for note in report.warnings:
        print(f"calliper ingest: warning: {city.key}: {note}", file=sys.stderr)
    return 0


def embed_texts(args: argparse.Namespace, s: Settings, city: CitySpec, command: str) -> int:
    from calliper_pipeline.steps.embed import embed

    cfg = run_config(args)
    encoder = build_text_encoder(args.text_encoder)
    with s.store().connect(city.key) as con:
        rep = embed(con, city, encoder, cfg.description, show_progress=True)
    print(
        f"{city.key} [{args.variant}]: {rep.n_distinct:,} distinct texts, {rep.n_embedded:,} "
        f"embedded, {rep.n_cached:,} already cached ({rep.seconds:.1f} s)"
    )
    return 0


def train(args: argparse.Namespace, s: Settings, city: CitySpec, command: str) -> int:
    """Train with the same step the ``calliper_model`` asset runs: one MLflow run, one
    registered version of ``calliper_<city>`` with alias ``candidate``. ``--nproc N`` starts N
    data-parallel workers with torchrun; rank 0 logs and registers, the others only train."""
    from calliper_pipeline.provenance import code_version
    from calliper_pipeline.steps import train as training
    from calliper_pipeline.training import distributed
    from calliper_pipeline.training.inputs import train_city, training_inputs

    cfg = run_config(args)
    if args.nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc > 1 and distributed.env_world_size() == 1:
        return _launch_workers(args.nproc, args.argv)
    world = distributed.init_from_env(cfg.train.device)
    encoder_id = build_text_encoder(args.text_encoder).encoder_id
    with s.store().connect(city.key, read_only=True) as con:
        inputs = training_inputs(con, city, s.data_root, encoder_id, cfg)
    checkpoints = {
        "checkpoint_dir": s.checkpoints_dir / city.key / args.variant,
        "resume": "yes" if args.resume else "restart" if args.restart else "no",
    }
    if not world.is_main:  # the same epochs in lockstep; rank 0 writes, logs and registers
        train_city(inputs, cfg, **checkpoints)  # type: ignore[arg-type]
        return 0
    out = training.train_and_register(
        inputs, city, s.data_root, cfg, tracking_config(args, s),
        s.home / "runs" / city.key / "cli", dagster_run_id=None,
        code_version=code_version(REPO_ROOT), log=logger.info,
        explicit=set(training_overrides(args)), **checkpoints,  # type: ignore[arg-type]
    )  # fmt: skip
    print(f"{city.key}: {out.sizing}")
    print(
        f"{city.key}: best epoch {out.best_epoch}, val loss {out.best_val_loss:.4f}, "
        f"{out.seconds_per_epoch:.2f} s/epoch -> {out.version.model_uri} (alias candidate)"
        + (f" [{world.size} processes]" if world.size > 1 else "")
    )
    return 0


def _launch_workers(nproc: int, argv: list[str]) -> int:
    """Run this same ``calliper train`` command on ``nproc`` torchrun workers (one host)."""
    from torch.distributed.run import main as torchrun

    rest, skip = [], False
    for a in argv:  # drop --nproc N / --nproc=N; each worker reads WORLD_SIZE instead
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            rest.append(a)
    torchrun(["--standalone", f"--nproc-per-node={nproc}", "-m", "jobs.cli.parser", *rest])
    return 0


def evaluate(args: argparse.Namespace, s: Settings, city: CitySpec, command: str) -> int:
    """The evaluation assets' step on a registered version; metrics go to DuckDB and MLflow."""
    from calliper_pipeline.evaluation.report import to_markdown
    from calliper_pipeline.steps import assess
    from calliper_pipeline.store import metrics
    from calliper_pipeline.tracking.registry import resolve_version

    tracking = tracking_config(args, s, read_only=True)
    version = resolve_version(tracking, args.model)
    probe = ProbeConfig(seeds=tuple(int(x) for x in args.seeds.split(",")))
    frames = []
    for task in ("luc", "sdm"):
        out_dir = s.home / "runs" / city.key / "cli" / "evaluation"
        out = assess.evaluate_registered(city, s.data_root, task, version, tracking, probe, out_dir)
        if out is None:
            print(f"{city.key} has no {task} evaluation set")
            continue
        with s.store().connect(city.key) as con:
            metrics.write_evaluation(
                con, city.key, version.name, version.version, version.run_id, out.frame
            )
        frames.append(out.frame)
    for frame in frames:
        print(to_markdown(frame))
    return 0


def run(args: argparse.Namespace, s: Settings, city: CitySpec, command: str) -> int:
    """The whole asset graph for the city through Dagster (see :mod:`jobs.run_city`)."""
    from jobs import run_city

    return run_city.run(
        city.key,
        variants=tuple(args.variants.split(",")),
        preset=args.preset,
        overrides={**training_overrides(args), **({"reuse": False} if args.retrain else {})},
        tiny=args.tiny,
        results_path=args.results,
        dagster_home=args.dagster_home,
        command=command,
        s=s,
        launched_by=args.launched_by,
    )


def _parse_override(text: str) -> tuple[str, Any]:
    import json

    key, _, raw = text.partition("=")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def experiment(args: argparse.Namespace, s: Settings, city: CitySpec, command: str) -> int:
    """Run (or resume) an ablation grid and write its table (see :mod:`jobs.experiments`)."""
    from jobs import experiments

    return experiments.run(
        city, s, grid=args.grid, names=args.variants,
        seeds=tuple(int(x) for x in args.seeds.split(",")), experiment=args.name,
        encoder_name=args.text_encoder, with_baselines=not args.no_baselines,
        results_path=args.results, tracking=tracking_config(args, s),
        overrides=dict(_parse_override(o) for o in args.override), command=command,
    )  # fmt: skip


def embed(args: argparse.Namespace, s: Settings, city: CitySpec, command: str) -> int:
    from calliper_pipeline.tracking.serving import embed_file

    n = embed_file(
        args.model, args.input, args.output, batch_size=args.batch_size,
        allow_outside=args.allow_outside,
        tracking=tracking_config(args, s, read_only=_needs_store(args.model)),
    )  # fmt: skip
    print(f"{n:,} points embedded with {args.model} -> {args.output}")
    return 0


def _stored_pois(s: Settings, city_key: str) -> pd.DataFrame | None:
    """The city's ingested POIs (they outline a bounds-only city's cells), None if not stored."""
    from calliper_pipeline.store.pois import read_city_pois

    store = s.store()
    legacy = store.legacy is not None and Path(store.legacy).exists()
    if not store.path_for(city_key).exists() and not legacy:
        return None
    with store.connect(city_key, read_only=True) as con:
        return read_city_pois(con, city_key)


def retrieve(args: argparse.Namespace, s: Settings, city: CitySpec | None, command: str) -> int:
    """Score the cells of the model's own city (``--city`` overrides) against the query."""
    from calliper_pipeline.cities.cells import city_cells
    from calliper_pipeline.cities.spec import get_city
    from calliper_pipeline.evaluation.retrieval import retrieve_to_files
    from calliper_pipeline.steps.assess import load_registered_model

    model = load_registered_model(tracking_config(args, s, read_only=True), args.model)
    spec = model.spec
    if city is None:
        if not spec.city:
            raise ConfigError(f"{args.model} does not name its city: pass --city")
        city = get_city(spec.city, load_city_registry(s.city_files))
    name = "hashing" if spec.text_encoder_id.startswith("hashing") else "minilm"
    cells, layers = city_cells(city, s.data_root, spec.metric_epsg, _stored_pois(s, city.key))
    csv: Path = args.csv or args.output.with_suffix(".csv")
    _, top = retrieve_to_files(
        model, build_text_encoder(name), args.query, cells, args.output, csv, args.top_k,
        layers=layers,
    )  # fmt: skip
    print(top.head(10).to_string(index=False))
    print(f"heatmap -> {args.output}, top {args.top_k} cells -> {csv}")
    return 0


def models(args: argparse.Namespace, s: Settings, city: CitySpec | None, command: str) -> int:
    """Registered models with versions, aliases, key metrics and the URIs to paste."""
    from calliper_pipeline.tracking import catalog

    tracking = tracking_config(args, s, read_only=True)
    entries = catalog.list_models(tracking, city.key if city is not None else None)
    if args.json:
        print(catalog.to_json(entries))
    else:
        print(catalog.to_text(entries, tracking.tracking_uri))
    return 0


def serve(args: argparse.Namespace, s: Settings, city: CitySpec, command: str) -> int:
    """Replace this process with MLflow's scoring server for the city's ``--alias`` version."""
    import sys

    from calliper_pipeline.tracking.registry import registered_model_name, resolve_version
    from calliper_pipeline.tracking.serving import scoring_server_command

    tracking = tracking_config(args, s, read_only=True)
    model_uri = f"models:/{registered_model_name(city.key)}@{args.alias}"
    try:
        version = resolve_version(tracking, model_uri)
    except Exception as exc:  # MlflowException: no such model or alias
        raise ConfigError(
            f"{model_uri} not found in {tracking.tracking_uri} (calliper models lists what is "
            f"there): {str(exc).splitlines()[0]}"
        ) from exc
    cmd, env = scoring_server_command(
        tracking, model_uri, Path(sys.executable), os.environ, args.host, args.port, args.timeout
    )
    url = f"http://{args.host}:{args.port}"
    print(
        f"serving {model_uri} (v{version.version}) from {tracking.tracking_uri}\n"
        f"  {url}/invocations  (health: {url}/ping); Ctrl-C stops it\n"
        f"  curl -s {url}/invocations -H 'Content-Type: application/json' \\\n"
        '    -d \'{"dataframe_split": {"columns": ["lon", "lat"], '
        '"data": [[-0.1276, 51.5072]]}}\'\n'
        "  (formats: dataframe_split, dataframe_records, text/csv; params allow_outside, "
        "as_array: see README, Serving)",
        flush=True,
    )
    os.execve(cmd[0], cmd, env)
    return 0  # not reached
