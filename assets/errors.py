"""Expected errors fail a materialisation with the CLI's one-line message, not a wrapped stack.

:func:`one_line_failure` wraps an asset's (or check's) body: a :class:`CalliperError` (a bad
snapshot file, an invalid city file, a city with nothing to train on...) or a missing file
becomes ``dagster.Failure(description=<the error's one line>)``, the line ``calliper <command>``
prints, without the library's traceback chained to it. Anything else is a bug and keeps its
traceback.
"""

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import dagster as dg

from calliper_pipeline.errors import CalliperError, one_line

F = TypeVar("F", bound=Callable[..., Any])

#: Errors that are the input's fault (the same ones the CLI prints as one line).
EXPECTED_ERRORS = (CalliperError, FileNotFoundError)


def one_line_failure(fn: F) -> F:
    """Decorate an asset body (below ``@dg.asset``): expected errors become one-line Failures.

    ``functools.wraps`` keeps the signature and annotations Dagster reads.
    """

    @functools.wraps(fn)
    def body(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EXPECTED_ERRORS as err:
            raise dg.Failure(description=one_line(err)) from None

    return body  # type: ignore[return-value]
