"""Stable POI ids for sources without an id column.

Row numbers shift between two snapshots of the same city (a row added at the top renumbers
every row after it), so a source whose column map names no ``poi_id`` gets ids derived from
what the POI is and where:

    poi_id = sha256(source + US + name + US + category + US + f"{lon:.5f}" + US + f"{lat:.5f}")
             as hex, first 16 characters

where US is the unit separator ``"\\x1f"``, ``name`` and ``category`` are the stripped text
("" when missing), and ``lon``/``lat`` are the POI's WGS84 degrees (EPSG:4326, after any
reprojection from the source CRS) rounded to 5 decimals (about 1 m). The same POI therefore
keeps its id when rows are reordered, added or removed; a POI that moves more than about a
metre, or is renamed or recategorised, gets a new id. Two rows with the same source, name,
category and rounded position get the same id: the second is quarantined as a duplicate id.
Additional sources' ids are then prefixed ``"<name>:"`` like given ids.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

#: Decimal places of the WGS84 degrees that enter the id (1e-5 degrees is about 1 m).
ID_COORD_DECIMALS = 5
ID_HEX_CHARS = 16
_SEP = "\x1f"


def stable_id(source: str, name: str | None, category: str | None, lon: float, lat: float) -> str:
    """One POI's derived id (see the module docstring for the formula)."""
    key = _SEP.join(
        (
            source,
            (name or "").strip(),
            (category or "").strip(),
            f"{lon:.{ID_COORD_DECIMALS}f}",
            f"{lat:.{ID_COORD_DECIMALS}f}",
        )
    )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:ID_HEX_CHARS]


def stable_ids(
    source: str, name: pd.Series | None, category: pd.Series, lon: np.ndarray, lat: np.ndarray
) -> pd.Series:
    """:func:`stable_id` of every row (object dtype, ``category``'s index)."""
    names = [None] * len(category) if name is None else name.tolist()
    ids = [
        stable_id(source, None if pd.isna(n) else str(n), None if pd.isna(c) else str(c), x, y)
        for n, c, x, y in zip(names, category.tolist(), lon.tolist(), lat.tolist(), strict=True)
    ]
    return pd.Series(ids, index=category.index, dtype=object)
