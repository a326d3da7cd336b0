"""Layering: the library never loads dagster (every module, imported in a fresh interpreter),
and its subpackages import one another without cycles at module level."""

from __future__ import annotations

import ast
import graphlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import calliper_pipeline

PACKAGE = calliper_pipeline.__name__
PACKAGE_DIR = Path(calliper_pipeline.__file__).resolve().parent
# the CLI's stage commands run without Dagster too (``calliper run`` imports it lazily)
EXTRA_MODULES = ["jobs.cli.parser", "jobs.cli.commands"]


def library_modules() -> dict[str, Path]:
    """Every module of the library (packages included) and its source file."""
    modules = {PACKAGE: PACKAGE_DIR / "__init__.py"}
    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix=f"{PACKAGE}."):
        rel = Path(*info.name.split(".")[1:])
        path = PACKAGE_DIR / rel / "__init__.py" if info.ispkg else PACKAGE_DIR / f"{rel}.py"
        modules[info.name] = path
    return modules


def test_discovery_finds_every_source_file() -> None:
    modules = library_modules()
    assert set(modules.values()) == set(PACKAGE_DIR.rglob("*.py"))
    assert {"calliper_pipeline.training.loop", "calliper_pipeline.steps.train"} <= set(modules)


def test_library_imports_without_dagster() -> None:
    names = sorted(library_modules()) + EXTRA_MODULES
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.'))\n"
        "print(len(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0", out.stdout + out.stderr


def _module_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Library modules ``name`` imports at module level (not in functions or TYPE_CHECKING)."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            out |= {target} | {f"{target}.{alias.name}" for alias in node.names}
    return out & known


def _unit(name: str) -> str:
    """The subpackage or top-level module of the library that ``name`` belongs to."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycle_between_subpackages() -> None:
    modules = library_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if not _unit(name):
            continue  # calliper_pipeline/__init__.py
        deps = {_unit(d) for d in _module_level_imports(name, path, set(modules))}
        graph.setdefault(_unit(name), set()).update(d for d in deps if d and d != _unit(name))
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle between subpackages: {exc.args[1]}") from exc
    assert {"cities", "ingest", "store", "steps"} <= set(order)
