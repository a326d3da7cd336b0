"""GPU timing of London training (100 epochs, bf16 autocast) and evaluation; run by gpu.sh.

Reads the London bundle (``bench.data``: coordinates, text table, evaluation points as arrays),
so the GPU machine needs torch, numpy, pandas, scikit-learn and tqdm only: no DuckDB, no
geopandas (a stub stands in for the latter, whose readers are not called).

    python -m bench.gpu_run [--bundle PATH] [--batches 1024,4096] [--epochs 100] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import types
from pathlib import Path
from typing import Any


def _stub_geopandas() -> None:
    """``calliper_pipeline.evaluation.data`` imports geopandas for its file readers, unused here."""
    if importlib.util.find_spec("geopandas") is None:
        sys.modules["geopandas"] = types.ModuleType("geopandas")


def matmul_tflops(dtype: Any, n: int = 8192, reps: int = 10) -> float:
    import torch

    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return reps * 2 * n**3 / (time.perf_counter() - t0) / 1e12


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--batches", default="1024,4096")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("bench-gpu-out"))
    ap.add_argument("--device", default="cuda", help="cpu: a smoke test of this script")
    args = ap.parse_args(argv)
    _stub_geopandas()
    import torch

    from bench.common import Section, Table, machine
    from bench.data import LONDON_BUNDLE, load_bundle
    from bench.flops import step_flops
    from calliper_pipeline.config import TrainConfig
    from calliper_pipeline.evaluation.protocol import evaluate_features
    from calliper_pipeline.model.calliper import embed_points
    from calliper_pipeline.training.loop import train

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("no CUDA device: nothing to time", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    b = load_bundle(args.bundle or LONDON_BUNDLE)
    spec = b.spec()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine(),
        "bf16_tflops": matmul_tflops(torch.bfloat16) if cuda else float("nan"),
        "fp32_tflops": matmul_tflops(torch.float32) if cuda else float("nan"),
        "runs": [],
    }
    section = Section("GPU: London training (bf16 autocast) and evaluation")
    table = section.table(
        f"London, {args.epochs} epochs, `device={args.device}`, bf16 autocast; matmul rate "
        f"{results['bf16_tflops']:.0f} TFLOP/s bf16, {results['fp32_tflops']:.0f} fp32 "
        "(8192^3):",
        Table(
            (
                "batch",
                "precision",
                "train s (all epochs)",
                "s/epoch",
                "POIs/s",
                "nominal TFLOP/s",
                "best epoch",
                "best val loss",
                "eval s (CPU probes)",
                "LUC MLP acc",
                "SDM MLP L1",
            )
        ),
    )
    luc, sdm = b.points("luc"), b.points("sdm")
    for batch in [int(x) for x in args.batches.split(",")]:
        for bf16 in (True, False) if batch == 1024 else (True,):
            cfg = TrainConfig(epochs=args.epochs, batch_size=batch, device=args.device, bf16=bf16)
            sync()
            t0 = time.perf_counter()
            res = train(spec, b.coords, b.text_index, b.text_table, cfg)
            sync()
            wall = time.perf_counter() - t0
            t0 = time.perf_counter()
            torch.set_num_threads(1)
            ev = evaluate_features(
                embed_points(res.model, luc.x_m, luc.y_m, luc.lon, luc.lat),
                luc,
                embed_points(res.model, sdm.x_m, sdm.y_m, sdm.lon, sdm.lat),
                sdm,
                name="ours",
            )
            eval_s = time.perf_counter() - t0
            f = step_flops(spec.encoder, batch, b.text_table.shape[1])
            steps = res.n_train // batch
            tflops = steps * batch * f.train / res.seconds_per_epoch / 1e12
            run = {
                "batch": batch,
                "bf16": bf16,
                "train_wall_s": wall,
                "s_epoch": res.seconds_per_epoch,
                "epoch_seconds": [h.seconds for h in res.history],
                "best_epoch": res.best_epoch,
                "best_val_loss": res.best_val_loss,
                "eval_s": eval_s,
                "luc_mlp_acc": ev.mean_x100("luc", "mlp", "accuracy"),
                "sdm_mlp_l1": ev.mean_x100("sdm", "mlp", "l1"),
            }
            results["runs"].append(run)
            table.add(
                batch,
                "bf16" if bf16 else "fp32",
                wall,
                res.seconds_per_epoch,
                res.n_train / res.seconds_per_epoch,
                tflops,
                res.best_epoch,
                f"{res.best_val_loss:.4f}",
                eval_s,
                f"{run['luc_mlp_acc']:.2f}",
                f"{run['sdm_mlp_l1']:.2f}",
            )
            print(json.dumps(run), flush=True)
    section.note(
        "Train seconds include the positional-encoding precompute and the per-epoch "
        "validation; one host sync per epoch. Evaluation: 20 probe runs on CPU, one thread."
    )
    text = section.markdown()
    print(text)
    (args.out / "gpu_results.md").write_text(text)
    (args.out / "gpu_results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
