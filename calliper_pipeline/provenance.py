"""Where a result came from: the code version, the git commit and the machine."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


#: The tracked paths whose uncommitted changes make a code version ``.dirty``: what runs. Docs
#: (``make run`` rewrites docs/results.md), tests and benchmarks do not change what a run makes.
CODE_PATHS = (
    "calliper_pipeline",
    "assets",
    "jobs",
    "workspace.yaml",
    "pyproject.toml",
    "requirements.lock",
)


@functools.cache
def code_version(repo: Path) -> str:
    """``<package version>+g<commit>``, with ``.dirty`` when a tracked file under
    :data:`CODE_PATHS` has uncommitted changes; the package version alone outside git."""
    try:
        version = importlib.metadata.version("calliper-pipeline")
    except importlib.metadata.PackageNotFoundError:
        version = "0+unknown"
    try:
        sha = _git(repo, "rev-parse", "--short=12", "HEAD")
        dirty = _git(repo, "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
    except (OSError, subprocess.SubprocessError):
        return str(version)
    return f"{version}+g{sha}{'.dirty' if dirty else ''}"


def git_commit(repo: Path) -> str:
    """The short commit of ``repo`` (``+dirty`` with uncommitted changes), or ``unknown``."""
    try:
        sha = _git(repo, "rev-parse", "--short", "HEAD")
        dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def machine_description() -> str:
    """CPU model, logical cores, torch threads and GPU (if any)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    threads = torch.get_num_threads()
    plural = "s" if threads != 1 else ""
    torch_info = f"torch {torch.__version__} ({threads} thread{plural})"
    return f"{cpu}, {os.cpu_count()} cores, {torch_info}, {gpu}"
