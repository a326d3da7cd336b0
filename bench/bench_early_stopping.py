"""Early stopping: does ``--early-stopping 10`` keep London's results, and what does it save?

Trains the paper configuration on London for 100 epochs twice in fresh processes with one
torch thread (so both runs draw and compute exactly the same up to the stop): without early
stopping and with patience 10. Each run's best-validation model is then evaluated with the
paper's probes. With the same seed the early-stopped run is the first epochs of the full run,
so its model is the full run's exactly when the full run's best epoch comes before the stop.

    python -m bench.bench_early_stopping [--epochs 100] [--patience 10]
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.common import Section, Table, log
from bench.workers import run_worker

METRICS = (
    ("luc.linear.accuracy", "LUC lin acc"),
    ("luc.mlp.accuracy", "LUC MLP acc"),
    ("luc.mlp.f1", "LUC MLP F1"),
    ("sdm.linear.l1", "SDM lin L1"),
    ("sdm.mlp.l1", "SDM MLP L1"),
    ("sdm.mlp.kl", "SDM MLP KL"),
)


def would_stop(val_losses: list[float], patience: int) -> int | None:
    """The epoch at which patience-based stopping ends a run with these validation losses."""
    best, best_epoch = float("inf"), 0
    for epoch, v in enumerate(val_losses, start=1):
        if v < best:
            best, best_epoch = v, epoch
        if epoch - best_epoch >= patience:
            return epoch
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    section = Section(f"Early stopping on London: patience {args.patience} vs none")
    runs: dict[str, dict[str, Any]] = {}
    for name, patience in (
        ("no early stopping", None),
        (f"patience {args.patience}", args.patience),
    ):
        log(f"early stopping: {name}")
        runs[name] = run_worker(
            "train",
            {
                "source": "london",
                "batch": 1024,
                "epochs": args.epochs,
                "threads": args.threads,
                "early_stopping": patience,
                "evaluate": True,
            },
        )
    table = section.table(
        f"London, paper configuration, up to {args.epochs} epochs, {args.threads} thread(s); "
        "metrics x100, mean ± std over the five probe seeds:",
        Table(
            (
                "run",
                "epochs run",
                "best epoch",
                "best val loss",
                "train s",
                "eval s",
                *(h for _, h in METRICS),
            )
        ),
    )
    for name, r in runs.items():
        m = r["metrics"]
        table.add(
            name,
            len(r["epoch_seconds"]),
            r["best_epoch"],
            f"{r['best_val_loss']:.4f}",
            r["train_wall_s"],
            r["eval_wall_s"],
            *(f"{m[k][0]:.2f} ± {m[k][1]:.2f}" for k, _ in METRICS),
        )
    full, early = runs["no early stopping"], runs[f"patience {args.patience}"]
    stop = would_stop(full["val_losses"], args.patience)
    same = full["best_epoch"] == early["best_epoch"]
    saved = 1 - early["train_wall_s"] / full["train_wall_s"]
    verdict = "the same model as the full run" if same else "not the full run's best epoch"
    curve = ", ".join(f"{v:.3f}" for v in full["val_losses"][:: max(1, args.epochs // 20)])
    section.note(
        f"The full run's validation loss (every {max(1, args.epochs // 20)} epochs): {curve}. "
        f"Patience {args.patience} on that curve stops at epoch {stop}; the early-stopped run "
        f"stopped at {len(early['epoch_seconds'])} with best epoch {early['best_epoch']} "
        f"({verdict}) "
        f"and saved {100 * saved:.0f} % of the training time."
    )
    if not args.no_write:
        section.write()
    else:
        print(section.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
