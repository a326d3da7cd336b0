"""Benchmark 5: end to end on London, stage by stage, wall and CPU time.

(a) The CLI stage by stage, each command a fresh process (imports and model loading included,
    as a user pays them) in a fresh ``CALLIPER_HOME``: ``calliper ingest``, ``calliper
    embed-texts``, ``calliper train --preset paper --epochs E`` (registers version 1 of
    ``calliper_london``), ``calliper evaluate`` of that version (20 probe runs).
(b) ``calliper run --preset paper`` (:func:`jobs.run_city.run`: the city's whole asset graph
    through Dagster in one process: ingest, embed, train + register, evaluate, the four
    baselines, promotion, maps) in a fresh home, then again on the same home (texts and
    baselines cached); per-step wall seconds from the Dagster instance.

``--epochs`` defaults to a short run (the stages' costs are per epoch, see benchmark 3);
``--epochs 100`` is the paper configuration.

    python -m bench.bench_e2e [--quick] [--epochs 10] [--no-cli] [--no-run-all]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH_HOME, REPO_ROOT, Section, Table, log
from bench.workers import run_worker


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cli(args: list[str], home: Path) -> tuple[float, float, str]:
    """Run ``calliper ARGS`` with CALLIPER_HOME=home; (wall s, CPU s, last output line)."""
    env = dict(os.environ, CALLIPER_HOME=str(home))
    cmd = [sys.executable, "-m", "jobs.cli.parser", *args]
    c0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if proc.returncode != 0:
        raise RuntimeError(f"calliper {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    return wall, cpu, lines[-1] if lines else ""


def cli_stages(section: Section, epochs: int, threads: str | None, seeds: str) -> None:
    table = section.table(
        f"(a) CLI stage by stage, London, fresh home, `--epochs {epochs}`"
        + (f", `--threads {threads}`" if threads else ", threads: auto")
        + ":",
        Table(("stage", "command", "wall s", "CPU s", "CPU / wall", "output")),
    )
    thr = ["--threads", threads] if threads else []
    with tempfile.TemporaryDirectory(prefix="calliper-e2e-", dir=BENCH_HOME) as tmp:
        home = Path(tmp)
        model = "models:/calliper_london@candidate"  # the version `calliper train` registers
        stages = [
            ("ingest", ["ingest", "--city", "london"]),
            ("embed", ["embed-texts", "--city", "london"]),
            (
                "train",
                ["train", "--city", "london", "--preset", "paper", "--epochs", str(epochs), *thr],
            ),
            ("evaluate", ["evaluate", "--city", "london", "--model", model, "--seeds", seeds]),
        ]
        total_wall = total_cpu = 0.0
        for name, args in stages:
            log(f"e2e cli: {name}")
            wall, cpu, out = cli(args, home)
            total_wall += wall
            total_cpu += cpu
            table.add(
                name,
                f"`calliper {' '.join(args)}`".replace(str(home), "$HOME"),
                wall,
                cpu,
                cpu / wall,
                out[:90].replace("|", "/"),
            )
        table.add("total", "", total_wall, total_cpu, total_cpu / total_wall, "")


def run_all_twice(section: Section, epochs: int, threads: str | None) -> dict[str, Any]:
    thr = ["--threads", threads] if threads else []
    args = ["--city", "london", "--preset", "paper", "--epochs", str(epochs), *thr]
    runs = {}
    with tempfile.TemporaryDirectory(prefix="calliper-e2e-", dir=BENCH_HOME) as tmp:
        for name in ("fresh home", "same home again"):
            log(f"e2e run: {name}")
            runs[name] = run_worker("run_all", {"args": args, "home": tmp})
    stages = list(runs["fresh home"]["stage_seconds"])
    table = section.table(
        f"(b) `calliper run {' '.join(args)}` in one process (wall seconds per Dagster step; "
        "the four baselines are computed on the first run and read from the store on the "
        "second):",
        Table(("run", *stages, "total wall s", "total CPU s", "threads", "s/epoch", "best epoch")),
    )
    for name, r in runs.items():
        table.add(
            name,
            *(r["stage_seconds"].get(s, float("nan")) for s in stages),
            r["wall_s"],
            r["cpu_s"],
            r["threads"],
            r["seconds_per_epoch"],
            r["best_epoch"],
        )
    return runs["fresh home"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="CLI stages only, 2 epochs, 1 seed")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", default=None, help="passed to train and run (default: auto)")
    ap.add_argument("--no-cli", action="store_true")
    ap.add_argument("--no-run-all", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    epochs = 2 if args.quick else args.epochs
    seeds = "42" if args.quick else "42,24,7,0,100"
    section = Section(f"5. End to end: London, stage by stage ({epochs} epochs)")
    if not args.no_cli:
        cli_stages(section, epochs, args.threads, seeds)
    if not (args.no_run_all or args.quick):
        first = run_all_twice(section, epochs, args.threads)
        m = first["metrics"]
        if m:
            section.note(
                "Ours (first run): LUC MLP accuracy "
                f"{m['luc.mlp.accuracy'][0]:.2f} ± {m['luc.mlp.accuracy'][1]:.2f}, SDM MLP L1 "
                f"{m['sdm.mlp.l1'][0]:.2f} ± {m['sdm.mlp.l1'][1]:.2f} (x100, five seeds)."
            )
    section.note(
        "CPU time is user + system of the stage's process(es); CPU / wall near 1 means one "
        "busy core. The CLI rows include each process's start (Python and torch imports, "
        "a few seconds) and, for embed, loading MiniLM."
        + (" Short-epoch variant: training scales per epoch (benchmark 3)." if epochs < 100 else "")
    )
    if not args.no_write:
        section.write()
    else:
        print(section.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
