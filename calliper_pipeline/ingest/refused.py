"""Rows refused on reading: split off before the filters and quarantined with their reason.

A reader keeps a row it cannot read as a POI in place, marked (:mod:`.markers`);
:func:`split_refused` separates those rows from the readable ones (and counts the rows whose
text was cleaned), :func:`refused_quarantine` turns them into quarantine rows, and
:func:`raw_json` is the raw-row JSON every quarantine row carries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from calliper_pipeline.constants import COL_CITY, COL_POI_ID, COL_SOURCE, COL_SOURCE_ROW
from calliper_pipeline.ingest.markers import (
    COL_CLEANED,
    COL_READ_FIELD,
    COL_READ_RAW,
    COL_READ_REASON,
    MARKER_COLUMNS,
)
from calliper_pipeline.store import pois as store


def raw_json(raw_rows: pd.DataFrame) -> list[str]:
    """One JSON object per row: the file's columns (``source_row`` and markers left out)."""
    if raw_rows.empty:
        return []
    extra = [c for c in (COL_SOURCE_ROW, *MARKER_COLUMNS) if c in raw_rows.columns]
    body = raw_rows.drop(columns=extra).to_json(
        orient="records", lines=True, force_ascii=False, default_handler=str
    )
    # JSON escapes newlines inside strings, so "\n" separates records only.
    return [line for line in body.split("\n") if line]


def split_refused(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(rows refused on reading, the other rows without the marker columns, rows cleaned)."""
    cleaned = int(raw[COL_CLEANED].to_numpy(dtype=bool).sum()) if COL_CLEANED in raw else 0
    markers = [c for c in MARKER_COLUMNS if c in raw.columns]
    if COL_READ_REASON not in raw.columns:
        return raw.iloc[:0], raw.drop(columns=markers), cleaned
    bad = raw[COL_READ_REASON].notna().to_numpy()
    return raw.loc[bad], raw.loc[~bad].drop(columns=markers), cleaned


def refused_quarantine(refused: pd.DataFrame, city_key: str, source: str) -> pd.DataFrame:
    """Quarantine rows (:data:`store.QUARANTINE_COLUMNS`) of the rows a reader refused.

    ``raw_json`` is the raw text the reader kept (a ragged row's fields and line, a feature's
    properties and geometry type), else the row's columns.
    """
    n = len(refused)
    kept_raw = refused[COL_READ_RAW] if COL_READ_RAW in refused else pd.Series([None] * n)
    own = raw_json(refused)
    field = refused[COL_READ_FIELD] if COL_READ_FIELD in refused else pd.Series([None] * n)
    return pd.DataFrame(
        {
            COL_CITY: pd.Series([city_key] * n, dtype=object),
            COL_SOURCE_ROW: pd.Series(refused[COL_SOURCE_ROW].to_numpy(np.int64), dtype=np.int64),
            COL_POI_ID: pd.Series([None] * n, dtype=object),
            "field": pd.Series(field.to_numpy(dtype=object), dtype=object),
            "reason": pd.Series(refused[COL_READ_REASON].to_numpy(dtype=object), dtype=object),
            "raw_json": pd.Series(
                [r if r is not None else o for r, o in zip(kept_raw.to_numpy(), own, strict=True)],
                dtype=object,
            ),
            COL_SOURCE: pd.Series([source] * n, dtype=object),
        }
    ).loc[:, list(store.QUARANTINE_COLUMNS)]
