"""Workers for the pipeline stages (ingest, embed, end to end); see :mod:`bench.worker_main`."""

from __future__ import annotations

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
    """Ingest a snapshot into a fresh DuckDB file, step by step as ``poi.ingest_city`` does."""
    from calliper_pipeline.config import DescriptionConfig
    from calliper_pipeline.hashing import file_hash
    from calliper_pipeline.ingest.snapshot import normalise_pois, read_snapshot
    from calliper_pipeline.store import pois as store

    city, data_root = _city(p["source"])
    path = city.snapshot_path(data_root)
    load0 = load_average()
    with tempfile.TemporaryDirectory(prefix="calliper-bench-ingest-", dir=BENCH_HOME) as tmp:
        con = store.connect(Path(tmp) / "warehouse.duckdb")
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
        store.write_city_pois(con, city.key, result.pois, result.quarantine, result.report)
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

    from calliper_pipeline.store import pois as store
    from calliper_pipeline.text.encoders import build_text_encoder, embed_texts_cached

    if p.get("threads"):
        torch.set_num_threads(int(p["threads"]))
    enc = build_text_encoder(p.get("encoder", "minilm"))
    runs = {}
    with tempfile.TemporaryDirectory(prefix="calliper-bench-embed-", dir=BENCH_HOME) as tmp:
        con = store.connect(Path(tmp) / "warehouse.duckdb")
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
    """The embed stage (``pipeline.embed``: load POIs, describe, dedupe, hash, cache lookup,
    MiniLM on new distinct texts, insert) after an ingest: first run and a second run."""
    from calliper_pipeline.steps import core as pipeline
    from calliper_pipeline.store import pois as store
    from calliper_pipeline.text.encoders import build_text_encoder

    city, data_root = _city(p["source"])
    enc = build_text_encoder(p.get("encoder", "minilm"))
    if hasattr(enc, "load"):
        enc.load()  # model loading (seconds, once per process) is not the stage's own cost
    with tempfile.TemporaryDirectory(prefix="calliper-bench-embed-", dir=BENCH_HOME) as tmp:
        con = store.connect(Path(tmp) / "warehouse.duckdb")
        pipeline.ingest(con, city, data_root)
        t = time.perf_counter()
        first = pipeline.embed(con, city, enc)
        first_s = time.perf_counter() - t
        t = time.perf_counter()
        again = pipeline.embed(con, city, enc)
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
    """``calliper run-all`` in this process (its stage timer), with CPU time per stage."""
    import torch

    from calliper_pipeline.cities.spec import get_city
    from calliper_pipeline.settings import from_env
    from calliper_pipeline.steps import runall
    from calliper_pipeline.store import pois as store
    from calliper_pipeline.text.encoders import build_text_encoder
    from jobs.cli.parser import _run_config, build_parser

    args = build_parser().parse_args(["run-all", *p["args"]])
    s = from_env()
    home = Path(p["home"])
    con = store.connect(home / "warehouse.duckdb")
    cfg = _run_config(args)
    cpu_marks: list[tuple[str, float]] = []
    t0, c0 = time.perf_counter(), cpu_seconds()

    def log(msg: str) -> None:
        cpu_marks.append((msg, cpu_seconds() - c0))

    run = runall.run_city(
        con,
        get_city(args.city),
        s.data_root,
        home,
        build_text_encoder(args.text_encoder),
        cfg,
        variants=(args.variant,),
        with_baselines=not args.no_baselines,
        show_progress=False,
        log=log,
    )
    con.close()
    trained = next(iter(run.trained.values()))
    frames = {r.encoder: r.to_frame() for r in run.results}
    ours = frames.get("ours: CaLLiPer")
    metrics = {}
    if ours is not None:
        metrics = {
            f"{r['task']}.{r['probe']}.{r['metric']}": [float(r["mean_x100"]), float(r["std_x100"])]
            for r in ours.to_dict("records")
        }
    return {
        "stage_seconds": run.stage_seconds,
        "wall_s": time.perf_counter() - t0,
        "cpu_s": cpu_seconds() - c0,
        "cpu_marks": cpu_marks,
        "threads": torch.get_num_threads(),
        "epochs_run": len(trained.history),
        "best_epoch": trained.best_epoch,
        "best_val_loss": trained.best_val_loss,
        "seconds_per_epoch": trained.seconds_per_epoch,
        "val_losses": [h.val_loss for h in trained.history],
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
