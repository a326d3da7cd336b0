"""A newcomer's `make run`, twice: the first on a fresh CALLIPER_HOME, the second with nothing
changed (every stage should be a cache hit and say so).

Each run is the command `make run` runs (``calliper run --city london --launched-by make-run``,
a fresh process, so Python, torch and Dagster start-up count as a user pays them), with its
results file in the benchmark's home instead of docs/results.md. Per stage: Dagster's wall
seconds per step (from the instance's event log) and, for the second run, whether the step's
materialisation says it was a cache hit or reused model. Prints and writes the line
``make-run: first_s=<s> second_s=<s> luc_f1=<x>`` (LUC MLP macro-F1 x100, random split, of the
model the first run registered).

    python -m bench.bench_make_run [--tiny] [--home DIR] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH_HOME, REPO_ROOT, Section, Table, log

CITY = "london"
#: materialisation metadata that says a step did not recompute its output
HIT_KEYS = ("cache_hit", "reused")


def run_once(home: Path, tiny: bool) -> tuple[float, int]:
    """One `make run`-equivalent process in ``home``: (wall seconds, exit status)."""
    cmd = [sys.executable, "-m", "jobs.cli.parser", "run", "--city", CITY]
    cmd += ["--results", str(home / "results.md"), "--launched-by", "make-run"]
    if tiny:
        cmd.append("--tiny")
    env = dict(os.environ, CALLIPER_HOME=str(home))
    env.pop("CALLIPER_DAGSTER_HOME", None)
    t0 = time.perf_counter()
    with open(home / "run.log", "a", encoding="utf-8") as out:
        status = subprocess.run(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=out).returncode
    return time.perf_counter() - t0, status


def _settings(home: Path) -> Any:
    """The settings a process with ``CALLIPER_HOME=home`` (and this environment) reads."""
    from calliper_pipeline import settings

    return settings.from_env({**os.environ, "CALLIPER_HOME": str(home)})


def _dagster_home(home: Path) -> Path:
    return Path(_settings(home).dagster_home)


def run_ids(home: Path) -> list[str]:
    import dagster as dg

    from jobs.run_city import ensure_dagster_home

    dagster_home = ensure_dagster_home(_dagster_home(home))
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        return [r.run_id for r in instance.get_runs(ascending=True)]


def stage_report(home: Path, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Per step of the runs ``ids``: wall seconds, and whether its output was reused."""
    import dagster as dg

    from jobs.run_city import ensure_dagster_home, step_seconds

    dagster_home = ensure_dagster_home(_dagster_home(home))
    out: dict[str, dict[str, Any]] = {}
    for run_id in ids:
        for step, sec in step_seconds(dagster_home, run_id).items():
            out.setdefault(step, {"seconds": 0.0, "hit": ""})["seconds"] += sec
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            for entry in instance.all_logs(run_id, dg.DagsterEventType.ASSET_MATERIALIZATION):
                mat = entry.asset_materialization
                if mat is None or entry.step_key is None:
                    continue
                meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
                said = [k for k in HIT_KEYS if meta.get(k) is True]
                row = out.setdefault(entry.step_key, {"seconds": 0.0, "hit": ""})
                row["hit"] = "yes" if said else "no"
    return out


def luc_f1(home: Path) -> float | None:
    """LUC MLP macro-F1 (x100, random split) of the newest evaluated version of the city."""
    import duckdb

    from calliper_pipeline.store import metrics

    try:
        with _settings(home).store().connect(CITY, read_only=True) as con:
            df = metrics.read_evaluation(con, CITY, protocol="random")
    except duckdb.Error:
        return None
    hit = df[(df["task"] == "luc") & (df["probe"] == "mlp") & (df["metric"] == "f1")]
    hit = hit[hit["model_name"].astype(str).str.startswith("calliper_")]
    if hit.empty:
        return None
    newest = hit.sort_values("model_version", key=lambda v: v.astype(int)).iloc[-1]
    return 100 * float(newest["mean"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--tiny", "--quick", action="store_true", help="calliper run --tiny (a smoke check)"
    )
    ap.add_argument("--home", type=Path, default=None, help="a fresh CALLIPER_HOME (default: temp)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    title = "First-run speed: `make run` on a fresh home, then again with nothing changed"
    section = Section(title + (" (--tiny)" if args.tiny else ""))
    BENCH_HOME.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="calliper-make-run-", dir=BENCH_HOME) as tmp:
        home = args.home or Path(tmp)
        home.mkdir(parents=True, exist_ok=True)
        if any(p.name != "run.log" for p in home.iterdir()):
            raise SystemExit(f"{home} is not empty: the first run needs a fresh CALLIPER_HOME")
        walls, stages = [], []
        for name in ("first", "second"):
            log(f"make run ({name}) in {home}")
            before = set(run_ids(home)) if name == "second" else set()
            wall, status = run_once(home, args.tiny)
            if status != 0:
                raise SystemExit(f"the {name} run failed (exit {status}); see {home / 'run.log'}")
            ids = [r for r in run_ids(home) if r not in before]
            walls.append(wall)
            stages.append(stage_report(home, ids))
            log(f"{name}: {wall:.1f} s")
        f1 = luc_f1(home)
    first, second = stages
    table = section.table(
        "Wall seconds per Dagster step (one process per run, so the difference between the "
        "total and the steps' sum is process start, Dagster's start and its bookkeeping); "
        "*reused* says what the second run's materialisation reported (`cache_hit` or "
        "`reused`):",
        Table(("step", "first run s", "second run s", "second run reused")),
    )
    for step in sorted(first, key=lambda s: -first[s]["seconds"]):
        row = second.get(step, {"seconds": float("nan"), "hit": ""})
        table.add(step, first[step]["seconds"], row["seconds"], row["hit"] or "–")
    table.add("**whole run (wall)**", walls[0], walls[1], "")
    shown = f"{f1:.2f}" if f1 is not None else "nan"
    line = f"make-run: first_s={walls[0]:.0f} second_s={walls[1]:.0f} luc_f1={shown}"
    section.note(line)
    print(line, flush=True)
    section.finish(args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
