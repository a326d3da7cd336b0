"""Charts that are not maps: the training curve and a rendered results table (Agg canvas, fixed
pixel sizes, like the maps)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from calliper_pipeline.maps.cartography import (
    DEFAULT_DPI,
    DEFAULT_WIDTH_PX,
    LABEL_PT,
    LEGEND_PT,
    TITLE_PT,
    finish,
    new_figure,
)

if TYPE_CHECKING:  # only for annotations: charts do not need torch or the model at import
    from calliper_pipeline.training.checkpoints import EpochStats


def training_curve_figure(
    history: Sequence[EpochStats],
    title: str = "Training curve",
    *,
    path: Path | str | None = None,
    width_px: int = DEFAULT_WIDTH_PX,
    height_px: int = 900,
    dpi: int = DEFAULT_DPI,
) -> Figure:
    """Train and validation loss per epoch, temperature on a twin axis, best epoch marked.

    The best epoch is the last one flagged ``is_best`` (the weights kept), else the lowest
    validation loss.
    """
    if not history:
        raise ValueError("history is empty")
    epochs = np.array([h.epoch for h in history])
    train = np.array([h.train_loss for h in history])
    val = np.array([h.val_loss for h in history])
    temp = np.array([h.temperature for h in history])
    flagged = [i for i, h in enumerate(history) if h.is_best]
    best = flagged[-1] if flagged else int(np.nanargmin(val))
    fig = new_figure(width_px, height_px, dpi)
    ax = fig.add_axes((0.08, 0.13, 0.80, 0.76))
    marker = "o" if len(history) <= 40 else None
    ax.plot(epochs, train, marker=marker, color="#0072B2", lw=2, label="train loss")
    ax.plot(epochs, val, marker=marker, color="#D55E00", lw=2, label="validation loss")
    ax.axvline(epochs[best], color="0.5", ls=":", lw=1.5)
    ax.plot(
        [epochs[best]],
        [val[best]],
        marker="*",
        ms=18,
        color="#D55E00",
        mec="black",
        ls="",
        label=f"best epoch {epochs[best]} (val {val[best]:.3f})",
    )
    ax.set_xlabel("epoch", fontsize=LEGEND_PT)
    ax.set_ylabel("symmetric InfoNCE loss", fontsize=LEGEND_PT)
    ax.tick_params(labelsize=LABEL_PT)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(epochs, temp, color="#009E73", lw=1.8, ls="--", label="temperature (right axis)")
    ax2.set_ylabel("temperature  1 / exp(logit_scale)", fontsize=LEGEND_PT, color="#009E73")
    ax2.tick_params(labelsize=LABEL_PT, colors="#009E73")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=LEGEND_PT, loc="best", framealpha=0.9)
    fig.text(0.08, 0.96, title, ha="left", va="top", fontsize=TITLE_PT, fontweight="bold")
    return finish(fig, path)


def _cell_text(value: Any) -> str:
    if not isinstance(value, float | np.floating):
        return str(value)
    x = float(value)
    return "" if math.isnan(x) else f"{x:.4g}" if abs(x) < 1e5 else f"{x:,.0f}"


def evaluation_table_figure(
    df: pd.DataFrame,
    title: str = "Evaluation results",
    *,
    path: Path | str | None = None,
    width_px: int = DEFAULT_WIDTH_PX,
    dpi: int = DEFAULT_DPI,
) -> Figure:
    """The rows of ``df`` as a rendered table (all its columns; floats to 4 significant digits)."""
    text = [[_cell_text(v) for v in row] for row in df.itertuples(index=False)]
    columns = [str(c) for c in df.columns]
    row_in, head_in, foot_in = 0.34, 0.7, 0.2
    height_px = round((head_in + row_in * (len(text) + 1) + foot_in) * dpi)
    fig = new_figure(width_px, height_px, dpi)
    height_in = height_px / dpi
    ax = fig.add_axes((0.02, foot_in / height_in, 0.96, 1 - (head_in + foot_in) / height_in))
    ax.set_axis_off()
    fig.text(
        0.02,
        1 - 0.15 / height_in,
        title,
        ha="left",
        va="top",
        fontsize=TITLE_PT,
        fontweight="bold",
    )
    if not columns:
        return finish(fig, path)
    widths = np.array(
        [max([len(c)] + [len(r[j]) for r in text]) + 2 for j, c in enumerate(columns)], float
    )
    table = ax.table(
        cellText=text or None,
        colLabels=columns,
        colWidths=list(widths / widths.sum()),
        loc="upper center",
        cellLoc="left",
        colLoc="left",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(LEGEND_PT)
    for (r, _c), cell in table.get_celld().items():
        cell.set_height(row_in / (height_in - head_in - foot_in))
        cell.set_edgecolor("0.8")
        if r == 0:
            cell.set_facecolor("#E8EEF4")
            cell.get_text().set_fontweight("bold")
        elif r % 2 == 0:
            cell.set_facecolor("#F7F7F7")
    return finish(fig, path)
