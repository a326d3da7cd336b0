"""Standard materialisation metadata: table schemas, markdown previews, embedded PNGs.

What the Dagster UI (1.13) shows: an asset's Events tab and its latest-materialisation panel
list the entries in the order given; a markdown entry renders in place only while it is shorter
than 1,000 characters (longer ones, every embedded PNG among them, open behind
"[Show Markdown]"). So each materialisation leads with :func:`preview`: a short markdown of
the headline figures (and, when an MLflow UI is known, the main picture as an image served by
it), followed by the picture itself as a self-contained thumbnail (:func:`png_markdown`).
Keys stay short (:data:`MAX_KEY_LEN`) and floats are rounded (:func:`rounded`).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

PREVIEW_WIDTH_PX = 640  # embedded PNGs are scaled down to this width (the files keep theirs)
MAX_INLINE_MD = 1000  # the UI renders a markdown entry in place only below this length
PALETTE_COLOURS = 128  # embedded PNGs: a 640 px heatmap stays under ~130 kB of base64
MAX_KEY_LEN = 40  # metadata keys stay this short (the UI cuts labels at 50 characters)
SIGNIFICANT_DIGITS = 4
PREVIEW = "preview"  # the first entry of every materialisation


def rounded(value: float) -> float:
    """``value`` to :data:`SIGNIFICANT_DIGITS` significant digits (NaN and inf unchanged)."""
    value = float(value)
    if not math.isfinite(value):
        return value
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def fmt(value: float | int | None, pct: bool = False) -> str:
    """A number for prose: thousands separators for ints, 4 significant digits for floats,
    ``pct`` shows a share in [0, 1] as a percentage with one decimal."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if pct:
        return f"{100.0 * float(value):.1f} %"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{rounded(value):,.{SIGNIFICANT_DIGITS}g}"


def preview(
    lines: list[str], image: tuple[str, str | None] | None = None
) -> dg.MarkdownMetadataValue:
    """The short markdown that leads a materialisation: ``lines`` (one fact each) and, when its
    URL is known, ``image = (alt, url)``. The image is dropped if the markdown would otherwise
    reach :data:`MAX_INLINE_MD` characters (then the UI would hide it behind a button)."""
    text = "  \n".join(lines)
    if image is not None and image[1]:
        with_image = f"{text}\n\n![{image[0]}]({image[1]})"
        if len(with_image) < MAX_INLINE_MD:
            text = with_image
    if len(text) >= MAX_INLINE_MD:
        raise ValueError(f"preview of {len(text)} characters would not render in place")
    return dg.MetadataValue.md(text)


def column_schema(df: pd.DataFrame) -> dg.TableSchemaMetadataValue:
    """``dagster/column_schema`` of a frame (dagster-pandas)."""
    from dagster_pandas.data_frame import create_table_schema_metadata_from_dataframe

    return create_table_schema_metadata_from_dataframe(df)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame, max_rows: int = 10) -> str:
    """A GitHub-flavoured markdown table of the first ``max_rows`` rows."""
    head = df.head(max_rows)
    cols = [str(c) for c in head.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in head.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    if len(df) > max_rows:
        lines.append(f"\n_{max_rows} of {len(df):,} rows_")
    return "\n".join(lines)


def png_markdown(path: Path, alt: str, width_px: int = PREVIEW_WIDTH_PX) -> dg.MetadataValue:
    """The PNG as an inline base64 image in markdown: scaled down to ``width_px`` if wider and
    reduced to a 128-colour palette, so a map stays under 150 kB of markdown."""
    from PIL import Image

    buf = io.BytesIO()
    with Image.open(path) as img:
        small = img.convert("RGB")
        if small.width > width_px:
            height = round(small.height * width_px / small.width)
            small = small.resize((width_px, height), Image.Resampling.LANCZOS)
        small = small.quantize(colors=PALETTE_COLOURS, method=Image.Quantize.MEDIANCUT)
        small.save(buf, format="PNG", optimize=True)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{data})")


def numbers(values: Mapping[str, float | int]) -> dict[str, dg.MetadataValue]:
    """Numeric metadata: ints stay ints and floats floats (rounded), so the UI plots them."""
    out: dict[str, dg.MetadataValue] = {}
    for key, value in values.items():
        if isinstance(value, bool):
            out[key] = dg.MetadataValue.bool(value)
        elif isinstance(value, int):
            out[key] = dg.MetadataValue.int(value)
        else:
            out[key] = dg.MetadataValue.float(rounded(value))
    return out


def latest_materialization_metadata(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
    asset_key: dg.AssetKey,
    partition_key: str,
) -> Mapping[str, Any] | None:
    """Raw values of the latest materialisation's metadata of ``asset_key[partition_key]``."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition_key]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    meta = records[0].asset_materialization.metadata
    return {k: getattr(v, "value", v) for k, v in meta.items()}


def cache_metadata(cached: Any) -> dict[str, Any]:
    """Whether a step's outcome came from its cache, its key, and what the key covers (a
    :class:`calliper_pipeline.steps.assess.Cached`)."""
    return {
        "cache_hit": bool(cached.hit),
        "cache_key": str(cached.key),
        "cache_covers": ", ".join(cached.covers),
    }
