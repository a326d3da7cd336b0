"""A source's row filters: equality, ranges, membership and exceptions, counted per filter.

The filters come from a city file (``snapshot.filters`` / a source's ``filters``, see
:func:`calliper_pipeline.cities.spec.filter_columns`); rows a filter removes are counted, never
silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

_TRUE_TEXT = frozenset({"true", "t", "1", "1.0", "yes", "y"})
_FALSE_TEXT = frozenset({"false", "f", "0", "0.0", "no", "n"})


def _equals(values: pd.Series, wanted: Any) -> np.ndarray:
    """Rows equal to ``wanted``; text 'True'/'false'/'1'… compare equal to booleans."""
    if isinstance(wanted, bool):
        if pd.api.types.is_bool_dtype(values):
            return (values == wanted).to_numpy(dtype=bool)
        text = values.astype("string").str.strip().str.lower()
        return text.isin(_TRUE_TEXT if wanted else _FALSE_TEXT).fillna(False).to_numpy(bool)
    if isinstance(wanted, int | float):
        return (pd.to_numeric(values, errors="coerce") == wanted).to_numpy(dtype=bool)
    text = values.astype("string").str.strip()
    return (text == str(wanted)).fillna(False).to_numpy(dtype=bool)


def filter_mask(frame: pd.DataFrame, col: str, wanted: Any) -> np.ndarray:
    """Rows of ``frame`` that pass one filter (see :func:`cities.spec.filter_columns`).

    A scalar keeps the rows equal to it. A table keeps rows with ``min <= value <= max``
    (numbers; missing or non-numeric fail), equal to one of ``in``, equal to none of
    ``not_in``, and in any case the rows matching every ``except_when`` column = value.
    """
    values = frame[col]
    if not isinstance(wanted, Mapping):
        return _equals(values, wanted)
    keep = np.ones(len(frame), dtype=bool)
    if "min" in wanted or "max" in wanted:
        num = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            if "min" in wanted:
                keep &= num >= float(wanted["min"])
            if "max" in wanted:
                keep &= num <= float(wanted["max"])
    if "in" in wanted:
        member = np.zeros(len(frame), dtype=bool)
        for v in wanted["in"]:
            member |= _equals(values, v)
        keep &= member
    if "not_in" in wanted:
        for v in wanted["not_in"]:
            keep &= ~_equals(values, v)
    exceptions = wanted.get("except_when") or {}
    if exceptions:
        match = np.ones(len(frame), dtype=bool)
        for c, v in exceptions.items():
            match &= _equals(frame[c], v)
        keep |= match
    return keep


def apply_filters(
    raw: pd.DataFrame, filters: Mapping[str, Any]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep rows that pass each filter in turn; count the rows each filter removed."""
    kept = raw
    counts: dict[str, int] = {}
    for col, wanted in filters.items():
        mask = filter_mask(kept, col, wanted)
        counts[col] = int((~mask).sum())
        kept = kept.loc[mask]
    return kept, counts
