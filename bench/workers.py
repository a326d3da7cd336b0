"""Running a measurement in a fresh Python process, on the current code or on another commit.

``run_worker(name, params, code_root)`` starts ``python -m bench.worker_main`` with
``code_root`` first on the import path (so ``calliper_pipeline`` comes from there: the current
checkout, or a commit extracted with :func:`extract_commit`), passes ``params`` as JSON and
returns the JSON the worker printed. Each measurement gets a clean process: its peak memory is
its own, and no state (threads, caches, allocator) leaks between A and B.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, log

RESULT_PREFIX = "BENCH-RESULT "
BASELINE_COMMIT = "2509ea6"  # the last commit before the performance work (issue 5)


def extract_commit(ref: str, dest: Path) -> Path:
    """``git archive`` the package ``calliper_pipeline`` at ``ref`` into ``dest``; returns dest."""
    out = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", ref, "calliper_pipeline"],
        capture_output=True,
        check=True,
    ).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=BytesIO(out)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def run_worker(
    name: str,
    params: dict[str, Any],
    code_root: Path = REPO_ROOT,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run worker ``name`` (see :mod:`bench.worker_main`) in a fresh process; ``params`` go in
    as JSON on stdin, the result comes back as one JSON line on stdout."""
    with tempfile.TemporaryDirectory(prefix="calliper-bench-") as cwd:
        full_env = dict(os.environ)
        full_env.update(env or {})
        paths = [str(code_root), str(REPO_ROOT)]
        if full_env.get("PYTHONPATH"):
            paths.append(full_env["PYTHONPATH"])
        full_env["PYTHONPATH"] = os.pathsep.join(paths)
        cmd = [sys.executable, "-m", "bench.worker_main", name]
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=full_env,
            input=json.dumps(params),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return dict(json.loads(line[len(RESULT_PREFIX) :]))
    log(f"worker {name} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    raise RuntimeError(f"worker {name} {params} printed no result (rc {proc.returncode})")
