"""``python -m jobs.dev [dagster dev options]``: the UI on the persistent local instance.

Sets ``DAGSTER_HOME`` to ``<CALLIPER_HOME>/dagster`` (creating it with the pool settings of
:func:`jobs.run_city.ensure_dagster_home`), so the runs of ``python -m jobs.run_city`` (``make
run``) appear in the UI's history, then runs ``dagster dev -w workspace.yaml`` and stops it on
one Ctrl-C (``make dagster``).

``dagster dev`` starts a webserver, a daemon, a code server and, per run, run workers and
compute-log ``tail`` processes; on SIGINT it asks the webserver and daemon to stop and waits up
to 60 s for each, and leaves the rest to exit on their own (an in-flight run's worker, the code
server, the tails can outlive it). So ``dagster dev`` runs in a process group of its own, and
this process supervises it: the first SIGINT or SIGTERM is passed on to the whole group as
SIGINT (dagster's clean shutdown); a second one, or :data:`GRACE_S` seconds without an exit,
SIGKILLs the group; once ``dagster dev`` has exited, whatever is left of its group is
terminated (SIGTERM, then SIGKILL after :data:`STRAGGLER_S` seconds). Exit status: 130 after an
interrupt, otherwise ``dagster dev``'s own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from calliper_pipeline import settings
from jobs.run_city import ensure_dagster_home

GRACE_S = 30.0  # after the first Ctrl-C: dagster's own shutdown, then the group is killed
STRAGGLER_S = 5.0  # after dagster dev exited: SIGTERM to what is left, then SIGKILL
POLL_S = 0.2
INTERRUPTED = 130  # 128 + SIGINT, the shell's status of a command stopped by Ctrl-C


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the process group (0: only check it exists); False when it is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _end_group(pgid: int, wait_s: float = STRAGGLER_S) -> None:
    """SIGTERM what is left of the group, SIGKILL it if it is still there after ``wait_s``."""
    if not _signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not _signal_group(pgid, 0):
            return
        time.sleep(POLL_S)
    _signal_group(pgid, signal.SIGKILL)


def supervise(proc: subprocess.Popen[bytes], grace_s: float = GRACE_S) -> int:
    """Wait for ``proc`` (the leader of its own process group), stopping the group on SIGINT or
    SIGTERM as the module docstring describes; returns the exit status to report."""
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    pgid, deadline = proc.pid, None
    try:
        while proc.poll() is None:
            if received and deadline is None:
                _signal_group(pgid, signal.SIGINT)
                deadline = time.monotonic() + grace_s
            elif deadline is not None and (len(received) > 1 or time.monotonic() > deadline):
                _signal_group(pgid, signal.SIGKILL)
            time.sleep(POLL_S)
    finally:
        _end_group(pgid)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return INTERRUPTED if received else int(proc.returncode or 0)


def main(argv: list[str] | None = None) -> int:
    s = settings.from_env()
    os.environ["DAGSTER_HOME"] = str(ensure_dagster_home(s.dagster_home))
    dagster = Path(sys.executable).parent / "dagster"
    workspace = settings.REPO_ROOT / "workspace.yaml"
    args = [str(dagster), "dev", "-w", str(workspace), *(sys.argv[1:] if argv is None else argv)]
    # its own process group: the terminal's Ctrl-C reaches this process, which stops all of it
    return supervise(subprocess.Popen(args, start_new_session=True))


if __name__ == "__main__":
    sys.exit(main())
