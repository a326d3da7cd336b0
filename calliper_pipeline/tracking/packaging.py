"""What a registered model ships as code: the part of ``calliper_pipeline`` that inference
imports, found by reading the imports of :data:`INFERENCE_ENTRY` (the pyfunc wrapper),
transitively.

The result is the wrapper, the model (``model/calliper.py``, ``model/encodings/``), what those
import (``config``, ``constants``, ``errors``) and their package ``__init__`` files: nothing of
ingest, training, evaluation, the Dagster layer or the MLflow client code. Imports inside
``if TYPE_CHECKING:`` blocks are skipped; imports inside functions count.
"""

from __future__ import annotations

import ast
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import calliper_pipeline

#: The module a registered model is loaded through; its package imports are what ships.
INFERENCE_ENTRY = "calliper_pipeline.tracking.pyfunc"
_PACKAGE = "calliper_pipeline"


def _package_root() -> Path:
    return Path(calliper_pipeline.__file__).resolve().parent


def _module_file(root: Path, module: str) -> Path | None:
    """The source file of ``calliper_pipeline.<...>`` (a module or a package), or None."""
    rel = Path(*module.split(".")[1:])
    for candidate in (root / rel / "__init__.py", (root / rel).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(tree: ast.AST) -> Iterator[str]:
    """Dotted names imported anywhere in ``tree`` (lazy imports too), ``TYPE_CHECKING`` blocks
    excepted; for ``from a import b`` both ``a`` and ``a.b``."""
    if isinstance(tree, ast.If) and _is_type_checking(tree.test):
        for node in tree.orelse:
            yield from _imported_names(node)
        return
    if isinstance(tree, ast.Import):
        yield from (alias.name for alias in tree.names)
    elif isinstance(tree, ast.ImportFrom) and tree.module and not tree.level:
        yield tree.module
        yield from (f"{tree.module}.{alias.name}" for alias in tree.names)
    for child in ast.iter_child_nodes(tree):
        yield from _imported_names(child)


def inference_modules(entry: str = INFERENCE_ENTRY) -> list[str]:
    """The package modules a registered model needs: ``entry`` and what it imports of
    ``calliper_pipeline``, transitively, with their parent packages (sorted dotted names)."""
    root = _package_root()
    seen: set[str] = set()
    todo = [entry]
    while todo:
        module = todo.pop()
        path = _module_file(root, module)
        if module in seen or path is None:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        todo += [n for n in _imported_names(tree) if n.split(".")[0] == _PACKAGE]
    return sorted(seen)


def third_party_imports(entry: str = INFERENCE_ENTRY) -> set[str]:
    """Top-level names of the non-standard-library packages the shipped code imports (lazy
    imports too, ``TYPE_CHECKING`` blocks excepted): what a model's requirements must install."""
    root = _package_root()
    names: set[str] = set()
    for module in inference_modules(entry):
        path = _module_file(root, module)
        assert path is not None
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names |= {n.split(".")[0] for n in _imported_names(tree)}
    return {n for n in names if n != _PACKAGE and n not in sys.stdlib_module_names}


def copy_inference_code(dst: Path) -> Path:
    """Copy the :func:`inference_modules` sources to ``dst/calliper_pipeline`` (code_paths)."""
    root = _package_root()
    for module in inference_modules():
        src = _module_file(root, module)
        assert src is not None  # inference_modules lists only modules with a file
        target = dst / _PACKAGE / src.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    return dst / _PACKAGE
