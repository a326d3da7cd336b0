"""Entry point of one measurement process: ``python -m bench.worker_main NAME < PARAMS_JSON``.

Started by :func:`bench.workers.run_worker` with the code under test first on the import path;
prints one ``BENCH-RESULT {json}`` line. Workers import ``calliper_pipeline`` lazily, so the
same worker runs against the current checkout or an older commit (same public functions).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from bench.common import cpu_seconds, load_average, matmul_gflops, peak_rss_mib
from bench.workers import RESULT_PREFIX


def _training_arrays(source: str) -> tuple[Any, Any, Any, Any]:
    """(spec, coords, text_index, text_table) for ``london`` or ``synthetic:N``."""
    from calliper_pipeline.config import EncoderConfig
    from calliper_pipeline.model.calliper import ModelSpec

    if source == "london":
        from bench.data import london_bundle

        b = london_bundle()
        return b.spec(), b.coords, b.text_index, b.text_table
    if source.startswith("synthetic:"):
        from bench.data import synthetic_training_arrays

        n = int(source.split(":", 1)[1])
        coords, text_index, table = synthetic_training_arrays(n)
        spec = ModelSpec(
            encoder=EncoderConfig(),
            text_dim=table.shape[1],
            centre_m=(500_000.0, 5_500_000.0),
            metric_epsg=32632,
            text_encoder_id="synthetic",
        )
        return spec, coords, text_index, table
    raise ValueError(f"unknown training source {source!r}")


def train(p: dict[str, Any]) -> dict[str, Any]:
    """Train a few epochs; report epoch times, threads, the matmul rate and peak memory."""
    import torch

    from calliper_pipeline.config import TrainConfig
    from calliper_pipeline.training.loop import train as run_train

    threads = p.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    device = p.get("device", "cpu")
    load0 = load_average()
    spec, coords, text_index, table = _training_arrays(p["source"])
    rss_data = peak_rss_mib()
    rate_before = matmul_gflops() if device == "cpu" else float("nan")
    cfg = TrainConfig(
        epochs=int(p["epochs"]),
        batch_size=int(p["batch"]),
        seed=int(p.get("seed", 42)),
        device=device,
        bf16=bool(p.get("bf16", False)),
        num_threads=int(threads) if threads else None,
        early_stopping_patience=p.get("early_stopping"),
    )
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    result = run_train(spec, coords, text_index, table, cfg)
    wall = time.perf_counter() - wall0
    cpu = cpu_seconds() - cpu0
    used = torch.get_num_threads()
    if device == "cpu":
        rate = max(rate_before, matmul_gflops()) if threads else matmul_gflops()
    else:
        rate = _gpu_matmul_tflops(p.get("bf16", False)) * 1e3
    out: dict[str, Any] = {
        "threads": used,
        "matmul_gflops": rate,
        "epoch_seconds": [h.seconds for h in result.history],
        "val_losses": [h.val_loss for h in result.history],
        "train_losses": [h.train_loss for h in result.history],
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "stopped_early": result.stopped_early,
        "n_train": result.n_train,
        "n_val": result.n_val,
        "n_texts": int(table.shape[0]),
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        "peak_rss_mib": peak_rss_mib(),
        "data_rss_mib": rss_data,
        "load_start": load0,
        "load_end": load_average(),
        "extra": {k: v for k, v in result.extra.items() if isinstance(v, int | float | str)},
    }
    if p.get("evaluate"):
        out.update(_evaluate_model(result.model))
    if p.get("save_model"):
        from calliper_pipeline.model.calliper import save_model

        save_model(p["save_model"], result.model)
    return out


def _gpu_matmul_tflops(bf16: bool) -> float:
    import torch

    dtype = torch.bfloat16 if bf16 else torch.float32
    a = torch.randn(8192, 8192, device="cuda", dtype=dtype)
    b = torch.randn(8192, 8192, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 10 * 2 * 8192**3 / (time.perf_counter() - t0) / 1e12


def _evaluate_model(model: Any, protocols: str | None = None) -> dict[str, Any]:
    """The paper's probes (LUC, SDM; linear and MLP; five seeds) on London with ``model``.

    ``protocols``: comma-separated split protocols (``random``, ``blocks``); default both.
    Metric keys: ``<task>.<probe>.<metric>`` (random), ``blocks.<task>.<probe>.<metric>``.
    """
    from bench.data import london_bundle
    from calliper_pipeline.evaluation.protocol import evaluate_features
    from calliper_pipeline.model.calliper import embed_points
    from calliper_pipeline.store.metrics import metric_key

    b = london_bundle()
    luc, sdm = b.points("luc"), b.points("sdm")
    t0, c0 = time.perf_counter(), cpu_seconds()
    f_luc = embed_points(model, luc.x_m, luc.y_m, luc.lon, luc.lat)
    f_sdm = embed_points(model, sdm.x_m, sdm.y_m, sdm.lon, sdm.lat)
    t_feat = time.perf_counter() - t0
    chosen = tuple(protocols.split(",")) if protocols else None
    res = evaluate_features(f_luc, luc, f_sdm, sdm, name="ours", protocols=chosen)
    frame = res.to_frame()
    metrics = {
        metric_key(r["task"], r["probe"], r["metric"], r["protocol"]): [
            float(r["mean_x100"]),
            float(r["std_x100"]),
        ]
        for r in frame.to_dict("records")
    }
    return {
        "eval_wall_s": time.perf_counter() - t0,
        "eval_cpu_s": cpu_seconds() - c0,
        "eval_features_s": t_feat,
        "metrics": metrics,
        "probe_epochs": sum(r.fit.epochs_run for r in res.runs),
        "probe_runs": len(res.runs),
    }


def evaluate(p: dict[str, Any]) -> dict[str, Any]:
    """A full London evaluation (20 probe runs) of a saved model."""
    import torch

    from calliper_pipeline.model.calliper import load_model

    if p.get("threads"):
        torch.set_num_threads(int(p["threads"]))
    model = load_model(p["model"])
    out = _evaluate_model(model, p.get("protocols"))
    out["threads"] = torch.get_num_threads()
    out["peak_rss_mib"] = peak_rss_mib()
    return out


WORKERS = {"train": train, "evaluate": evaluate}


def main() -> int:
    name, params = sys.argv[1], json.loads(sys.stdin.read() or "{}")
    extra_workers = {}
    try:
        from bench import pipeline_workers

        extra_workers = pipeline_workers.WORKERS
    except ImportError:
        pass
    fn = {**WORKERS, **extra_workers}[name]
    result = fn(params)
    result.setdefault("pid", os.getpid())
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
