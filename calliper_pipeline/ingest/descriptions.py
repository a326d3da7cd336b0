"""POI text descriptions: the sentences the location encoder is trained against.

The paper's template is ``"A place of {category}, a type of {group}"`` with the class and group
names lower-cased. A POI without a group gets the template with its group clause removed
(``"A place of {category}"``). The CaLLiPer+ variant (``variant="calliper_plus"``) uses the
city's ``name_template`` (``"{name}, a place of {category}, a type of {group}"``) for POIs that
have a non-empty name, and the plain template otherwise.

Templates are ``str.format`` strings with the placeholders ``{category}``, ``{group}`` and
``{name}``. The group clause is the comma-separated part of the template that holds ``{group}``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import pandas as pd

from calliper_pipeline.cities.spec import DEFAULT_NAME_TEMPLATE, DEFAULT_TEMPLATE, CitySpec
from calliper_pipeline.config import DescriptionConfig
from calliper_pipeline.constants import COL_CATEGORY, COL_GROUP, COL_NAME, COL_SOURCE
from calliper_pipeline.errors import ConfigError

CALLIPER_PLUS = "calliper_plus"
_CLAUSE_SEPARATOR = ", "


def clean_text(value: Any) -> str | None:
    """``value`` as a stripped string, or None if it is missing (None, NaN, NA, blank)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    return text or None


@functools.lru_cache(maxsize=64)
def _without_group(template: str) -> str:
    """The template with its ``{group}`` clause removed (for POIs that have no group)."""
    if "{group}" not in template:
        return template
    clauses = [c for c in template.split(_CLAUSE_SEPARATOR) if "{group}" not in c]
    kept = _CLAUSE_SEPARATOR.join(clauses)
    # A template whose only clause holds the group ("{category} in {group}") degrades to the
    # bare category rather than to an empty string.
    return kept if "{category}" in kept else "{category}"


def _fill(template: str, **values: str) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"invalid description template {template!r}: {exc!r}") from exc


def describe(
    category: Any,
    group: Any = None,
    name: Any = None,
    template: str = DEFAULT_TEMPLATE,
    name_template: str = DEFAULT_NAME_TEMPLATE,
    variant: str = "calliper",
    lowercase: bool = True,
) -> str:
    """The description sentence of one POI.

    Args:
        category: the POI's (fine) class; required.
        group: its (coarse) group; None/NaN/blank drops the group clause.
        name: the POI's name; used only by ``variant="calliper_plus"`` when non-empty.
        template: plain template (``{category}``, ``{group}``).
        name_template: CaLLiPer+ template (``{name}``, ``{category}``, ``{group}``).
        variant: ``"calliper"`` or ``"calliper_plus"``.
        lowercase: lower-case category and group (the paper does; names keep their case).

    Raises:
        ValueError: the category is missing.
        ConfigError: a template has an unknown placeholder.
    """
    cat = clean_text(category)
    if cat is None:
        raise ValueError("a POI description needs a category")
    grp = clean_text(group)
    nm = clean_text(name) if variant == CALLIPER_PLUS else None
    if lowercase:
        cat = cat.lower()
        grp = grp.lower() if grp is not None else None
    chosen = name_template if nm is not None else template
    if grp is None:
        chosen = _without_group(chosen)
    return _fill(chosen, category=cat, group=grp or "", name=nm or "")


def describe_frame(df: pd.DataFrame, city: CitySpec, cfg: DescriptionConfig) -> pd.Series:
    """Descriptions of every row of ``df`` (columns ``category``, ``category_group``, ``name``).

    Vectorised over distinct inputs: each distinct (category, group[, name]) is formatted once
    and mapped back, so a city with a few hundred classes costs a few hundred format calls.
    Missing ``category_group``/``name`` columns are treated as all-missing. Rows of an
    additional source with its own templates (``source`` column, :meth:`CitySpec.templates`)
    are described with those; every other row with the city's.

    Returns:
        A string Series aligned with ``df.index``.
    """
    own = [s.name for s in city.sources if s.description_template or s.name_template]
    if COL_SOURCE not in df.columns or not own:
        return _describe(df, city.description_template, city.name_template, cfg)
    out = pd.Series(None, index=df.index, dtype=object, name="description")
    source = df[COL_SOURCE].astype(object)
    for name in own:
        rows = (source == name).to_numpy(dtype=bool)
        if rows.any():
            out[rows] = _describe(df.loc[rows], *city.templates(name), cfg).to_numpy(object)
    rest = ~source.isin(own).to_numpy(dtype=bool)
    if rest.any():
        texts = _describe(df.loc[rest], city.description_template, city.name_template, cfg)
        out[rest] = texts.to_numpy(object)
    return out


def _describe(
    df: pd.DataFrame, template: str, name_template: str, cfg: DescriptionConfig
) -> pd.Series:
    keys = [COL_CATEGORY, COL_GROUP] + ([COL_NAME] if cfg.variant == CALLIPER_PLUS else [])
    parts = pd.DataFrame(index=df.index)
    for col in keys:
        values = df[col] if col in df.columns else pd.Series(None, index=df.index, dtype=object)
        parts[col] = values.astype(object).where(values.notna(), "")
    distinct = parts.drop_duplicates()
    texts = [
        describe(
            row[0],
            row[1],
            row[2] if len(row) > 2 else None,
            template=template,
            name_template=name_template,
            variant=cfg.variant,
            lowercase=cfg.lowercase,
        )
        for row in distinct.itertuples(index=False, name=None)
    ]
    distinct = distinct.assign(_description=texts)
    merged = parts.merge(distinct, on=keys, how="left", sort=False)
    return pd.Series(merged["_description"].to_numpy(), index=df.index, name="description")
