"""Workers for the pipeline stages (ingest, embed, end to end); see :mod:`bench.worker_main`."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH_HOME, cpu_seconds, load_average, peak_rss_mib

SYNTHETIC_ROOT = BENCH_HOME / "synthetic"


def synthetic_snapshot(n: int, fmt: str) -> Path:
    """The city TOML of a cached synthetic snapshot of ``n`` POIs in ``fmt`` (built once)."""
    from tests.support.synthetic import make_synthetic_city

    root = SYNTHETIC_ROOT / f"{n}-{fmt.replace('.', '')}"
    toml = root / "synthetic.toml"
    if not toml.exists():
        make_synthetic_city(root, n_pois=n, seed=0, fmt=fmt, evaluation=False, bad_rows=True)
    return toml


def _city(source: str) -> tuple[Any, Path]:
    """(CitySpec, data root) for ``london`` or a synthetic city TOML path."""
    from calliper_pipeline.cities.spec import get_city, load_city_file
    from calliper_pipeline.settings import from_env

    if source == "london":
        return get_city("london"), from_env().data_root
    return load_city_file(Path(source)), Path(source).parent


def ingest(p: dict[str, Any]) -> dict[str, Any]:
    """Ingest a snapshot into a fresh DuckDB file, step by step as
    :func:`calliper_pipeline.ingest.ingest.ingest_city` does."""
    from calliper_pipeline.config import DescriptionConfig
    from calliper_pipeline.hashing import file_hash
    from calliper_pipeline.ingest.readers import read_snapshot
    from calliper_pipeline.ingest.validate import normalise_pois
    from calliper_pipeline.store.db import connect
    from calliper_pipeline.store.pois import write_city_pois

    city, data_root = _city(p["source"])
    path = city.snapshot_path(data_root)
    load0 = load_average()
    with tempfile.TemporaryDirectory(prefix="calliper-bench-ingest-", dir=BENCH_HOME) as tmp:
        con = connect(Path(tmp) / "warehouse.duckdb")
        steps: dict[str, float] = {}
        c0 = cpu_seconds()
        t0 = time.perf_counter()
        snapshot_hash = file_hash(path)
        steps["hash"] = time.perf_counter() - t0
        t = time.perf_counter()
        raw = read_snapshot(path, city.snapshot)
        steps["read"] = time.perf_counter() - t
        t = time.perf_counter()
        result = normalise_pois(raw, city, data_root, DescriptionConfig(), snapshot_hash)
        steps["normalise"] = time.perf_counter() - t
        t = time.perf_counter()
        write_city_pois(con, city.key, result.pois, result.quarantine, result.report)
        con.execute("CHECKPOINT")
        steps["write"] = time.perf_counter() - t
        wall = time.perf_counter() - t0
        cpu = cpu_seconds() - c0
        con.close()
        db_bytes = sum(f.stat().st_size for f in Path(tmp).iterdir() if f.is_file())
    return {
        "rows_read": result.report.rows_read,
        "rows_valid": result.report.rows_valid,
        "file_bytes": path.stat().st_size,
        "wall_s": wall,
        "cpu_s": cpu,
        "steps": steps,
        "peak_rss_mib": peak_rss_mib(),
        "db_bytes": db_bytes,
        "load_start": load0,
    }


def embed_rate(p: dict[str, Any]) -> dict[str, Any]:
    """MiniLM texts/s on ``texts`` at each batch size (model loaded and warmed up first)."""
    import torch

    from calliper_pipeline.text.encoders import SentenceTransformerEncoder

    if p.get("threads"):
        torch.set_num_threads(int(p["threads"]))
    texts = list(p["texts"])
    enc = SentenceTransformerEncoder()
    t = time.perf_counter()
    enc.load()
    load_s = time.perf_counter() - t
    enc.encode(texts[:64], batch_size=32)  # warm-up
    rates = {}
    for bs in p["batch_sizes"]:
        best = 0.0
        for _ in range(int(p.get("repeats", 1))):
            t = time.perf_counter()
            enc.encode(texts, batch_size=int(bs))
            best = max(best, len(texts) / (time.perf_counter() - t))
        rates[str(bs)] = best
    return {
        "texts_per_s": rates,
        "model_load_s": load_s,
        "threads": torch.get_num_threads(),
        "peak_rss_mib": peak_rss_mib(),
    }


def embed_cache(p: dict[str, Any]) -> dict[str, Any]:
    """The cache's effect: embed a snapshot's texts, again, then with 1 % of POIs changed."""
    import torch

    from calliper_pipeline.store.db import connect
    from calliper_pipeline.text.cache import embed_texts_cached
    from calliper_pipeline.text.encoders import build_text_encoder

    if p.get("threads"):
        torch.set_num_threads(int(p["threads"]))
    enc = build_text_encoder(p.get("encoder", "minilm"))
    runs = {}
    with tempfile.TemporaryDirectory(prefix="calliper-bench-embed-", dir=BENCH_HOME) as tmp:
        con = connect(Path(tmp) / "warehouse.duckdb")
        if hasattr(enc, "load"):
            enc.load()  # model loading is reported by embed_rate, not here
        for name, texts in (
            ("first run", p["texts"]),
            ("same snapshot again", p["texts"]),
            ("1 % of POIs changed", p["changed_texts"]),
        ):
            t = time.perf_counter()
            rep = embed_texts_cached(con, enc, texts, batch_size=int(p.get("batch_size", 256)))
            runs[name] = {
                "seconds": time.perf_counter() - t,
                "n_input": rep.n_input,
                "n_distinct": rep.n_distinct,
                "n_embedded": rep.n_embedded,
                "n_cached": rep.n_cached,
            }
        con.close()
    return {"runs": runs, "peak_rss_mib": peak_rss_mib()}


def embed_scaling(p: dict[str, Any]) -> dict[str, Any]:
    """The embed step (:func:`calliper_pipeline.steps.embed.embed`: load POIs, describe,
    dedupe, hash, cache lookup, MiniLM on new distinct texts, insert) after an ingest: first
    run and a second run."""
    from calliper_pipeline.steps.embed import embed
    from calliper_pipeline.steps.ingest import ingest as run_ingest
    from calliper_pipeline.store.db import connect
    from calliper_pipeline.text.encoders import build_text_encoder

    city, data_root = _city(p["source"])
    enc = build_text_encoder(p.get("encoder", "minilm"))
    if hasattr(enc, "load"):
        enc.load()  # model loading (seconds, once per process) is not the stage's own cost
    with tempfile.TemporaryDirectory(prefix="calliper-bench-embed-", dir=BENCH_HOME) as tmp:
        con = connect(Path(tmp) / "warehouse.duckdb")
        run_ingest(con, city, data_root)
        t = time.perf_counter()
        first = embed(con, city, enc)
        first_s = time.perf_counter() - t
        t = time.perf_counter()
        again = embed(con, city, enc)
        again_s = time.perf_counter() - t
        con.close()
    return {
        "n_input": first.n_input,
        "n_distinct": first.n_distinct,
        "first_s": first_s,
        "again_s": again_s,
        "again_embedded": again.n_embedded,
        "peak_rss_mib": peak_rss_mib(),
    }


def run_all(p: dict[str, Any]) -> dict[str, Any]:
    """``calliper run ARGS`` (:func:`jobs.run_city.run`: the city's whole asset graph through
    Dagster, in this process) with ``CALLIPER_HOME`` = ``p["home"]``: wall and CPU time of the
    call, Dagster's wall seconds per step, the training and our random-protocol metrics."""
    import dagster as dg
    import torch

    from calliper_pipeline import settings
    from calliper_pipeline.store import metrics as results
    from jobs import run_city
    from jobs.cli.commands import training_overrides
    from jobs.cli.parser import build_parser

    os.environ["CALLIPER_HOME"] = str(p["home"])
    args = build_parser().parse_args(["run", *p["args"]])
    variants = tuple(args.variants.split(","))
    s = settings.from_env()
    home = run_city.ensure_dagster_home(args.dagster_home or s.dagster_home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        before = {r.run_id for r in instance.get_runs()}
    t0, c0 = time.perf_counter(), cpu_seconds()
    status = run_city.run(
        args.city,
        variants=variants,
        preset=args.preset,
        overrides=training_overrides(args),
        tiny=args.tiny,
        dagster_home=home,
        command="calliper run " + " ".join(p["args"]),
        log_level="WARNING",
    )
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    if status != 0:
        raise RuntimeError(f"calliper run {' '.join(p['args'])} failed (exit status {status})")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        new = [r.run_id for r in instance.get_runs(ascending=True) if r.run_id not in before]
        training: dict[str, dict[str, Any]] = {}  # run id -> calliper_model's metadata
        for run_id in new:
            for entry in instance.all_logs(run_id, dg.DagsterEventType.ASSET_MATERIALIZATION):
                mat = entry.asset_materialization
                if mat is not None and mat.asset_key.to_user_string() == "calliper_model":
                    training[run_id] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    stage_seconds: dict[str, float] = {}  # one run per variant, in order
    for variant, run_id in zip(variants, new, strict=True):
        for step, sec in run_city.step_seconds(home, run_id).items():
            stage_seconds[f"{step}[{variant}]" if len(new) > 1 else step] = sec
    meta = training[new[0]]
    with s.store().connect(args.city, read_only=True) as con:
        ours = results.read_evaluation(
            con, args.city, str(meta["model_name"]), str(meta["model_version"]), "random"
        )
    metrics = {
        f"{r['task']}.{r['probe']}.{r['metric']}": [100 * float(r["mean"]), 100 * float(r["std"])]
        for r in ours.to_dict("records")
    }
    return {
        "stage_seconds": stage_seconds,
        "run_ids": new,
        "wall_s": wall,
        "cpu_s": cpu,
        "threads": torch.get_num_threads(),
        "epochs_run": int(meta["epochs_run"]),
        "best_epoch": int(meta["best_epoch"]),
        "best_val_loss": float(meta["best_val_loss"]),
        "seconds_per_epoch": float(meta["seconds_per_epoch"]),
        "model_uri": str(meta["model_uri"]),
        "metrics": metrics,
        "peak_rss_mib": peak_rss_mib(),
    }


WORKERS = {
    "ingest": ingest,
    "embed_rate": embed_rate,
    "embed_cache": embed_cache,
    "embed_scaling": embed_scaling,
    "run_all": run_all,
}
