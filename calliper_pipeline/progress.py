"""The one progress/logging type the library reports through.

Library functions that run for long take an optional ``log: LogFn`` and call it with one
human-readable line per step (an epoch, a stage, a batch of probes). The Dagster layer passes
``context.log.info``, the CLI a console printer, tests a list's ``append``; ``None`` means quiet.
"""

from __future__ import annotations

from collections.abc import Callable

LogFn = Callable[[str], None]


def emit(log: LogFn | None, message: str) -> None:
    """Send ``message`` to ``log`` when one is given."""
    if log is not None:
        log(message)
