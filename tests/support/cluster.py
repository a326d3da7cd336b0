"""A throwaway cluster deployment on this machine, for ``tests/cluster`` (``make test-cluster``).

- :class:`Postgres`: ``initdb`` + ``pg_ctl`` in a temporary folder, on a free loopback port,
  trust authentication, with the databases asked for. Postgres refuses to run as root: under
  root the cluster belongs to the ``postgres`` user and its commands run through ``runuser``.
  The binaries come from ``CALLIPER_PG_BIN``, else ``pg_config --bindir``, else
  ``/usr/lib/postgresql/15/bin``.
- :func:`start_role`: one role of ``deploy/serve.sh`` (mlflow, code-server, webserver, daemon,
  dask-scheduler, dask-worker) as its own process group, logging to a file.
- :func:`wait_until`: poll a probe until it passes, failing early when a process died.
- :func:`marked_processes`: the processes still alive that carry a marker in their environment,
  to check that tearing down left nothing behind.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psutil

from tests.support.paths import REPO_ROOT
from tests.support.servers import free_port

SERVE = REPO_ROOT / "deploy" / "serve.sh"
PG_USER = "calliper"
PG_FALLBACK_BIN = Path("/usr/lib/postgresql/15/bin")


def postgres_bin() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``."""
    env = os.environ.get("CALLIPER_PG_BIN")
    if env:
        return Path(env)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
        if (Path(out.stdout.strip()) / "initdb").exists():
            return Path(out.stdout.strip())
    return PG_FALLBACK_BIN


class Postgres:
    """A Postgres cluster in a temporary folder; ``with Postgres(["dagster", "mlflow"]) as pg``
    starts it and creates the databases, leaving the block stops it and deletes the folder."""

    def __init__(self, databases: Sequence[str]):
        self.databases = tuple(databases)
        self.bin = postgres_bin()
        if not (self.bin / "initdb").exists():
            raise FileNotFoundError(
                f"no initdb in {self.bin}: install PostgreSQL (apt-get install postgresql) "
                "or set CALLIPER_PG_BIN to the folder holding initdb and pg_ctl"
            )
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="calliper-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as_postgres = os.geteuid() == 0

    def url(self, database: str) -> str:
        """SQLAlchemy URL with the psycopg2 driver (Dagster's Postgres storage needs it)."""
        return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}{log}")

    def __enter__(self) -> Postgres:
        if self._as_postgres:
            shutil.chown(self.root, user="postgres")
        try:
            self._run("initdb", "-D", str(self.data), "-U", PG_USER, "--auth=trust",
                      "-E", "UTF8", "--no-sync")  # fmt: skip
            options = (
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off -c max_connections=200"
            )
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                      "-w", "-t", "60", "start")  # fmt: skip
            for db in self.databases:
                self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, db)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists() or port_open(self.port)


def start_role(role: str, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``deploy/serve.sh <role>`` in its own process group (so stopping it stops its children:
    the code server's run workers, the Dask nanny's worker), output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            ["bash", str(SERVE), role], cwd=REPO_ROOT, env=dict(env), stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_until(
    probe: Callable[[], bool],
    what: str,
    timeout_s: float,
    procs: Mapping[str, tuple[subprocess.Popen[bytes], Path]] | None = None,
    interval_s: float = 0.5,
) -> None:
    """Poll ``probe`` (exceptions count as not yet) until it returns True; fail with the log
    tail of any process in ``procs`` that exited, or after ``timeout_s``."""
    procs = procs or {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, (proc, log) in procs.items():
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(
                    f"{name} exited ({proc.returncode}) while waiting for {what}:\n{tail}"
                )
        try:
            if probe():
                return
        except Exception:
            pass
        time.sleep(interval_s)
    tails = "\n".join(
        f"--- {name}:\n{log.read_text(errors='replace')[-1500:]}"
        for name, (_, log) in procs.items()
    )
    raise TimeoutError(f"{what}: not after {timeout_s:.0f} s\n{tails}")


def marked_processes(marker_key: str, marker: str) -> list[str]:
    """``pid: command line`` of each living process whose environment has ``marker_key=marker``."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.environ().get(marker_key) == marker and p.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{p.pid}: {' '.join(p.info['cmdline'] or [])[:200]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
