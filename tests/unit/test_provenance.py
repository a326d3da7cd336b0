"""The code version that keys model reuse: docs rewritten by ``make run`` do not make it dirty."""

from __future__ import annotations

import subprocess
from pathlib import Path

from calliper_pipeline.provenance import code_version


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_only_code_changes_make_the_version_dirty(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "calliper_pipeline").mkdir(parents=True)
    (repo / "docs").mkdir()
    (repo / "calliper_pipeline" / "x.py").write_text("A = 1\n")
    (repo / "docs" / "results.md").write_text("# Results\n")
    (repo / "README.md").write_text("readme\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    version = code_version.__wrapped__  # uncached: the repo changes between calls
    clean = version(repo)
    assert "+g" in clean and not clean.endswith(".dirty")
    # what `make run` and a writer of docs change: still the same, reusable version
    (repo / "docs" / "results.md").write_text("# Results\n\nnew figures\n")
    (repo / "README.md").write_text("readme, edited\n")
    (repo / "calliper_pipeline" / "new_untracked.py").write_text("B = 2\n")
    assert version(repo) == clean
    # a change to tracked code is another version
    (repo / "calliper_pipeline" / "x.py").write_text("A = 2\n")
    assert version(repo) == clean + ".dirty"
