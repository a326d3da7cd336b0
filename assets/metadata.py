"""Standard materialisation metadata: table schemas, markdown previews, embedded PNGs."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

PREVIEW_WIDTH_PX = 900  # embedded PNGs are scaled down to this width (the files keep theirs)


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
    """The PNG as an inline base64 image in markdown, scaled down to ``width_px`` if wider."""
    from PIL import Image

    buf = io.BytesIO()
    with Image.open(path) as img:
        small = img.convert("RGB")
        if small.width > width_px:
            height = round(small.height * width_px / small.width)
            small = small.resize((width_px, height), Image.Resampling.LANCZOS)
        small.save(buf, format="PNG", optimize=True)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{data})")


def numbers(values: Mapping[str, float | int]) -> dict[str, dg.MetadataValue]:
    """Numeric metadata: ints stay ints and floats floats, so the UI plots them over time."""
    out: dict[str, dg.MetadataValue] = {}
    for key, value in values.items():
        if isinstance(value, bool):
            out[key] = dg.MetadataValue.bool(value)
        elif isinstance(value, int):
            out[key] = dg.MetadataValue.int(value)
        else:
            out[key] = dg.MetadataValue.float(float(value))
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
