"""Specific exceptions raised at the library's boundaries."""

from __future__ import annotations


def one_line(err: BaseException | str) -> str:
    """An error's message on one line (newlines and runs of spaces become one space).

    What ``calliper`` prints after ``error:`` and what a failed Dagster materialisation shows.
    """
    return " ".join(str(err).split())


class CalliperError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigError(CalliperError):
    """A city, training or evaluation configuration is invalid."""


class SnapshotFormatError(CalliperError):
    """A POI snapshot file cannot be parsed.

    The message names the file, and where known the row (1-based, header excluded) and field.
    """

    def __init__(self, path: str, message: str, row: int | None = None, field: str | None = None):
        where = path
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.row = row
        self.field = field


class EmptySnapshotError(CalliperError):
    """No POI survived validation: there is nothing to train on."""


class ModelInputError(CalliperError):
    """Input to a trained encoder is invalid (e.g. points outside the city's bounds)."""


class StoreLockedError(CalliperError):
    """The DuckDB store stayed locked by another process for longer than the lock timeout."""
