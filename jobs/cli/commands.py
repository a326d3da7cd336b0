"""Handlers of the ``calliper`` sub-commands (argument parsing lives in :mod:`cli`)."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from calliper_pipeline.cities.spec import CitySpec, load_city_registry
from calliper_pipeline.config import DescriptionConfig, ProbeConfig, RunConfig
from calliper_pipeline.settings import REPO_ROOT, Settings
from calliper_pipeline.steps import core as pipeline
from calliper_pipeline.store import pois as store
from calliper_pipeline.text.encoders import build_text_encoder

logger = logging.getLogger("calliper")


def _run_config(args: argparse.Namespace) -> RunConfig:
    from jobs.cli.parser import _run_config as build

    return build(args)


def cities(args: argparse.Namespace, s: Settings, city: CitySpec, command: str) -> int:
    for key, spec in sorted(load_city_registry(s.city_files).items()):
        evals = "evaluation sets" if spec.evaluation else "no evaluation sets"
        print(f"{key}\t{spec.name}\tEPSG:{spec.metric_epsg or 'auto UTM'}\t{evals}")
    return 0


def ingest(args: argparse.Namespace, s: Settings, city: CitySpec, command: str) -> int:
    con = store.connect(s.warehouse)
    report = pipeline.ingest(con, city, s.data_root)
    print(
        f"{city.key}: {report.rows_read:,} rows read, {report.rows_valid:,} valid, "
        f"{report.rows_filtered_out:,} filtered {dict(report.filtered_by)}, "
        f"{report.rows_quarantined:,} quarantined {dict(report.quarantined_by)} "
        f"(EPSG:{report.metric_epsg}, {report.seconds:.1f} s) -> {s.warehouse}"
    )
    return 0


def embed_texts(args: argparse.Namespace, s: Settings, city: CitySpec, command: str) -> int:
    con = store.connect(s.warehouse)
    encoder = build_text_encoder(args.text_encoder)
    rep = pipeline.embed(
        con, city, encoder, DescriptionConfig(variant=args.variant), show_progress=True
    )
    print(
        f"{city.key} [{args.variant}]: {rep.n_distinct:,} distinct texts, {rep.n_embedded:,} "
        f"embedded, {rep.n_cached:,} already cached ({rep.seconds:.1f} s)"
    )
    return 0


def train(args: argparse.Namespace, s: Settings, city: CitySpec, command: str) -> int:
    from calliper_pipeline.model.calliper import save_model

    con = store.connect(s.warehouse)
    cfg = _run_config(args)
    encoder_id = build_text_encoder(args.text_encoder).encoder_id
    inputs = pipeline.training_inputs(con, city, s.data_root, encoder_id, cfg)
    result = pipeline.train_city(
        inputs,
        cfg,
        checkpoint_dir=s.checkpoints_dir / city.key / args.variant,
        resume=args.resume,
        show_progress=True,
    )
    out = args.output or s.models_dir / f"{city.key}-{args.variant}.pt"
    save_model(out, result.model)
    print(
        f"{city.key}: best epoch {result.best_epoch}, val loss {result.best_val_loss:.4f}, "
        f"{result.seconds_per_epoch:.2f} s/epoch, {result.pois_per_second:,.0f} POIs/s -> {out}"
    )
    return 0


def evaluate(args: argparse.Namespace, s: Settings, city: CitySpec, command: str) -> int:
    from calliper_pipeline.evaluation.probes import evaluate_features
    from calliper_pipeline.evaluation.report import results_frame, to_markdown
    from calliper_pipeline.model.calliper import load_model

    model = load_model(args.model)
    sets = pipeline.evaluation_sets(city, s.data_root, model.spec.metric_epsg)
    if sets.empty:
        print(f"{city.key} has no evaluation sets")
        return 0
    seeds = tuple(int(x) for x in args.seeds.split(","))
    feats = pipeline.model_features(model)
    luc, sdm = sets.landuse, sets.socioeconomic
    result = evaluate_features(
        feats(luc) if luc else None,
        luc,
        feats(sdm) if sdm else None,
        sdm,
        ProbeConfig(seeds=seeds),
        name=str(args.model),
    )
    print(to_markdown(results_frame([result])))
    return 0


def run_all(args: argparse.Namespace, s: Settings, city: CitySpec, command: str) -> int:
    from calliper_pipeline.steps.runall import build_report, run_city

    con = store.connect(s.warehouse)
    cfg = _run_config(args)
    variants = tuple(args.variants.split(",")) if args.variants else (args.variant,)
    run = run_city(
        con,
        city,
        s.data_root,
        s.home,
        build_text_encoder(args.text_encoder),
        cfg,
        variants=variants,
        with_baselines=not args.no_baselines,
        log=logger.info,
    )
    report = build_report(run, command, REPO_ROOT)
    text = report.markdown()
    print(text)
    if args.results:
        write_results(Path(args.results), city.key, text)
        print(f"results written to {args.results}")
    return 0


def _tracking(args: argparse.Namespace, s: Settings) -> Any:
    import os

    from calliper_pipeline.tracking import registry

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    return (
        registry.TrackingConfig(tracking_uri=uri)
        if uri
        else registry.default_tracking(s.mlflow_dir)
    )


def embed(args: argparse.Namespace, s: Settings, city: CitySpec, command: str) -> int:
    from calliper_pipeline.tracking.registry import embed_file

    n = embed_file(
        args.model, args.input, args.output, batch_size=args.batch_size,
        allow_outside=args.allow_outside, tracking=_tracking(args, s),
    )  # fmt: skip
    print(f"{n:,} points embedded with {args.model} -> {args.output}")
    return 0


def retrieve(args: argparse.Namespace, s: Settings, city: CitySpec, command: str) -> int:
    from calliper_pipeline.cities.cells import load_cells, load_map_layers
    from calliper_pipeline.evaluation.retrieval import retrieve_to_files
    from calliper_pipeline.tracking.registry import load_pyfunc

    model = load_pyfunc(_tracking(args, s), args.model).unwrap_python_model().model
    spec = model.spec
    name = "hashing" if spec.text_encoder_id.startswith("hashing") else "minilm"
    cells = load_cells(city, s.data_root, spec.metric_epsg)
    layers = load_map_layers(city, s.data_root, spec.metric_epsg)
    csv = args.csv or args.output.with_suffix(".csv")
    _, top = retrieve_to_files(
        model, build_text_encoder(name), args.query, cells, args.output, csv, args.top_k,
        layers=layers,
    )  # fmt: skip
    print(top.head(10).to_string(index=False))
    print(f"heatmap -> {args.output}, top {args.top_k} cells -> {csv}")
    return 0


def write_results(path: Path, city_key: str, section: str) -> None:
    """Replace this city's section of the results file (other sections are kept)."""
    header = (
        "# Results\n\nMeasured by `calliper run-all`; every figure below comes from the run "
        "it names.\n"
    )
    marker_start = f"<!-- results:{city_key}:start -->"
    marker_end = f"<!-- results:{city_key}:end -->"
    old = path.read_text() if path.exists() else header
    block = f"{marker_start}\n{section}{marker_end}"
    if marker_start in old and marker_end in old:
        pre, rest = old.split(marker_start, 1)
        post = rest.split(marker_end, 1)[1]
        new = pre + block + post
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new)
    tmp.replace(path)


__all__ = [
    "cities",
    "embed",
    "embed_texts",
    "evaluate",
    "ingest",
    "replace",
    "retrieve",
    "run_all",
    "train",
]
