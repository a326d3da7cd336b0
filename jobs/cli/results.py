"""Sections of a Markdown results file (docs/results.md), each replaced in place by key."""

from __future__ import annotations

from pathlib import Path

HEADER = (
    "# Results\n\nWritten by `calliper run` and `calliper experiment`; every figure below "
    "comes from the run it names.\n"
)


def write_section(path: Path, key: str, section: str) -> None:
    """Replace the section ``key`` of ``path`` (other sections are kept); atomic write."""
    start, end = f"<!-- results:{key}:start -->", f"<!-- results:{key}:end -->"
    old = path.read_text(encoding="utf-8") if path.exists() else HEADER
    block = f"{start}\n{section.rstrip()}\n{end}"
    if start in old and end in old:
        pre, rest = old.split(start, 1)
        new = pre + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(new, encoding="utf-8")
    tmp.replace(path)
