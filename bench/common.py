"""Shared helpers of the benchmark scripts: machine facts, timing, tables, docs/benchmarks.md.

Every script prints its table and appends one section to ``docs/benchmarks.md`` holding the
exact command, the commit, the machine (CPU model, cores, GPU), the date and the load average
when it started, so that any figure can be traced to the run that produced it and rerun.
"""

from __future__ import annotations

import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = REPO_ROOT / "docs" / "benchmarks.md"
BENCH_HOME = REPO_ROOT / ".calliper" / "bench"  # ignored by git; never the pipeline's own store
DOC_HEADER = (
    "# Benchmarks\n\n"
    "Written by the scripts in `bench/` (`make bench` runs them all; `python -m bench.run_all "
    "--quick` a fast subset). Each section names the command, commit, machine, date and the "
    "load average (1, 5, 15 min) when it started: on a shared 2-core machine a load above ~1 "
    "means another process competed for the cores, so compare figures of one section, not "
    "across sections.\n"
)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (falls back to platform)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def physical_cores() -> int:
    """Physical cores (distinct (package, core id) pairs); logical CPUs if unknown."""
    pairs: set[tuple[str, str]] = set()
    phys = core = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("physical id"):
                    phys = line.split(":", 1)[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":", 1)[1].strip()
                    pairs.add((phys, core))
    except OSError:
        pass
    return len(pairs) or (os.cpu_count() or 1)


def gpu_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:
        pass
    return "no GPU"


def machine() -> str:
    """One line: CPU model, logical CPUs / physical cores, memory, GPU, torch version."""
    import torch

    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        mem = f"{mem_gib:.0f} GiB RAM"
    except (ValueError, OSError):
        mem = "RAM unknown"
    return (
        f"{cpu_model()}, {os.cpu_count()} logical CPUs / {physical_cores()} physical cores, "
        f"{mem}, {gpu_name()}, torch {torch.__version__}, Python {platform.python_version()}"
    )


def git_commit() -> str:
    """Short HEAD commit, ``+dirty`` when tracked files differ from it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_average() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def command_line() -> str:
    """The command as typed (``python -m bench.x ...``)."""
    argv = sys.argv
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        head = ["python", "-m", spec.name.removesuffix(".__main__")]
    else:
        head = ["python", argv[0]]
    return " ".join(shlex.quote(a) for a in [*head, *argv[1:]])


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB: VmHWM, the high-water mark of its own
    address space. (``getrusage``'s ru_maxrss is not used: Linux carries it across exec, so a
    worker would report its parent's size at fork time when that is larger.)"""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds() -> float:
    """User + system CPU time of this process and its waited-for children."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for a block (None: leave them), then restore."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def best_of(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, float]:
    """(best, median) wall seconds of ``fn()`` over ``repeats`` timed calls after warm-ups."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def matmul_gflops(
    m: int = 1024, k: int = 256, n: int = 256, seconds: float = 0.5, repeats: int = 5
) -> float:
    """This machine's float32 matmul rate (GFLOP/s, best of ``repeats`` bursts) at (m,k)x(k,n)
    with torch's current thread setting: the floor the training step is compared against."""
    import torch

    a = torch.randn(m, k)
    b = torch.randn(k, n)
    out = torch.empty(m, n)
    for _ in range(20):
        torch.mm(a, b, out=out)
    flop = 2.0 * m * k * n
    best = 0.0
    for _ in range(repeats):
        reps, t0 = 0, time.perf_counter()
        while True:
            torch.mm(a, b, out=out)
            reps += 1
            dt = time.perf_counter() - t0
            if dt >= seconds / repeats:
                break
        best = max(best, reps * flop / dt / 1e9)
    return best


@dataclass
class Table:
    """A Markdown table built row by row."""

    columns: Sequence[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([_fmt(c) for c in cells])

    def markdown(self) -> str:
        head = "| " + " | ".join(self.columns) + " |"
        rule = "|" + "|".join(" --- " for _ in self.columns) + "|"
        body = ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join([head, rule, *body]) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:  # NaN
            return "–"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}" if abs(v) >= 0.1 else f"{v:.3g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


@dataclass
class Section:
    """One benchmark's section of docs/benchmarks.md; created when the benchmark starts."""

    title: str
    command: str = field(default_factory=command_line)
    commit: str = field(default_factory=git_commit)
    machine: str = field(default_factory=machine)
    date: str = field(default_factory=now_utc)
    load: str = field(default_factory=load_average)
    tables: list[tuple[str, Table]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self, caption: str, table: Table) -> Table:
        self.tables.append((caption, table))
        return table

    def note(self, text: str) -> None:
        self.notes.append(text)

    def markdown(self) -> str:
        lines = [
            f"## {self.title}",
            "",
            f"- command: `{self.command}`",
            f"- commit: `{self.commit}`; date: {self.date}",
            f"- machine: {self.machine}",
            f"- load average at start: {self.load}; at end: {load_average()}",
            "",
        ]
        for caption, table in self.tables:
            if caption:
                lines += [caption, ""]
            lines.append(table.markdown())
        for note in self.notes:
            lines += [note, ""]
        return "\n".join(lines).rstrip("\n") + "\n"

    def finish(self, no_write: bool) -> None:
        """Print the section; unless ``no_write``, also append it to docs/benchmarks.md."""
        if no_write:
            print(self.markdown(), flush=True)
        else:
            self.write()

    def write(self, path: Path | None = None, echo: bool = True) -> str:
        """Print the section and append it to docs/benchmarks.md (created with a header)."""
        text = self.markdown()
        if echo:
            print(text, flush=True)
        append_section(path or DOCS, text)
        return text


def append_section(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else DOC_HEADER
    path.write_text(old.rstrip("\n") + "\n\n" + text)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
