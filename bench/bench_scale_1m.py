"""A million-POI synthetic city through the whole Dagster pipeline: wall time per stage, peak
memory of the process tree, the ``scale-1m:`` line; writes docs/scale.md ``## One million POIs``.

The city comes from :mod:`bench.synthetic_city` (clustered, ~300 categories in 20 groups, names,
no labels). The pipeline is ``calliper run`` itself (job ``city_refresh`` in a fresh home: ingest,
embed the distinct texts, train, the label-free evaluation and champion gate, register, maps),
run as a child process while this one samples the resident memory of the child and all its
descendants from /proc every 0.5 s. Stage times are Dagster's step times from the run's event
log.

    python -m bench.bench_scale_1m [--pois 1000000] [--epochs 10] [--preset paper] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import REPO_ROOT, Section, Table, log
from bench.synthetic_city import write_city

DOC = REPO_ROOT / "docs" / "scale.md"
TITLE = "One million POIs"
_SAMPLE_S = 0.5


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss_bytes(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants now (0 once it has exited)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _rss_bytes(p)
        todo += _children(p)
    return total


class PeakSampler:
    """Samples :func:`tree_rss_bytes` of a process every 0.5 s in a thread; ``peak`` bytes."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            self._stop.wait(_SAMPLE_S)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def replace_section(path: Path, title: str, text: str) -> None:
    """Replace ``## title`` (up to the next ``## ``) in ``path``, or append it; others kept."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    head = f"## {title}\n"
    if head in old:
        pre, rest = old.split(head, 1)
        nxt = rest.find("\n## ")
        new = pre + text.rstrip("\n") + "\n" + (rest[nxt:] if nxt >= 0 else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new, encoding="utf-8")


def _run_id(dagster_home: Path) -> str:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs(limit=1)
    if not runs:
        raise RuntimeError(f"no Dagster run recorded under {dagster_home}")
    return runs[0].run_id


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pois", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic city")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--preset", default="paper", help="paper | default")
    ap.add_argument("--text-encoder", default="minilm", help="minilm | hashing")
    ap.add_argument("--work", type=Path, help="folder for the city and the home (default: tmp)")
    ap.add_argument("--no-write", action="store_true", help=f"do not write {DOC.name}")
    args = ap.parse_args(argv)
    section = Section(TITLE)
    work = args.work or Path(tempfile.mkdtemp(prefix="calliper-scale-"))
    key = "scale1m" if args.pois == 1_000_000 else f"scale{args.pois}"
    t0 = time.perf_counter()
    toml = write_city(work / "data", args.pois, args.seed, key)
    gen_s = time.perf_counter() - t0
    log(f"scale: {args.pois:,} POIs written in {gen_s:.1f} s -> {toml}")
    home = work / "home"
    cmd = [
        sys.executable, "-m", "jobs.cli.parser", "run", "--city", key, "--cities", str(toml),
        "--home", str(home), "--data-root", str(work / "data"), "--preset", args.preset,
        "--epochs", str(args.epochs),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CALLIPER_TEXT_ENCODER": args.text_encoder}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env)
    sampler = PeakSampler(proc.pid)
    status = proc.wait()
    wall = time.perf_counter() - t0
    peak = max(sampler.stop(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
    if status != 0:
        log(f"scale: calliper run failed (exit status {status})")
        return status
    from jobs.run_city import step_seconds

    steps = step_seconds(home / "dagster", _run_id(home / "dagster"))
    shown = " ".join(a if " " not in a else repr(a) for a in cmd[1:]).replace(str(work), "$WORK")
    section.note(
        f"Pipeline: `CALLIPER_TEXT_ENCODER={args.text_encoder} python {shown}` (written by "
        f"this script; `$WORK` = {work}). City: "
        f"`python -m bench.synthetic_city $WORK/data --pois {args.pois} --seed {args.seed} "
        f"--key {key}` ({gen_s:.0f} s, not counted below)."
    )
    table = section.table(
        "Dagster steps (wall seconds from the run's event log; the whole run in one process):",
        Table(("step", "wall s", "share of run")),
    )
    for step, sec in sorted(steps.items(), key=lambda kv: -kv[1]):
        table.add(step, sec, f"{100 * sec / wall:.0f} %")
    table.add("total (process start to exit)", wall, "100 %")
    line = (
        f"scale-1m: pois={args.pois} epochs={args.epochs} wall_s={wall:.0f} "
        f"rss_gb={peak / 2**30:.2f}"
    )
    section.note(
        f"Peak resident memory of the run's process tree (sampled every {_SAMPLE_S} s, and "
        f"the kernel's peak of the largest process): {peak / 2**30:.2f} GiB."
    )
    section.note(f"`{line}`")
    text = section.markdown()
    print(text, flush=True)
    if not args.no_write:
        replace_section(DOC, TITLE, text)
        log(f"scale: written to {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
