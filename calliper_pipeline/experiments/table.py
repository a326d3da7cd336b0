"""The ablation table: one row per configuration (mean ± std over training seeds) and the
baselines beside it, under both evaluation protocols, as Markdown."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# (protocol, task, probe, metric, header)
COLUMNS: tuple[tuple[str, str, str, str, str], ...] = (
    ("random", "luc", "mlp", "f1", "LUC MLP F1 (random)"),
    ("random", "sdm", "mlp", "l1", "SDM MLP L1 (random)"),
    ("blocks", "luc", "mlp", "f1", "LUC MLP F1 (blocks)"),
    ("blocks", "sdm", "mlp", "l1", "SDM MLP L1 (blocks)"),
    ("random", "luc", "linear", "f1", "LUC lin F1 (random)"),
    ("blocks", "luc", "linear", "f1", "LUC lin F1 (blocks)"),
)

BASELINE_PREFIX = "baseline: "


def _cell(values: np.ndarray, probe_std: float) -> str:
    """Mean ± std over training seeds (x100); with one seed, ± the probe seeds' std."""
    mean = 100.0 * float(values.mean())
    std = 100.0 * (float(values.std(ddof=1)) if len(values) > 1 else probe_std)
    return f"{mean:.2f} ± {std:.2f}"


def summary(rows: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Wide table from :func:`calliper_pipeline.store.experiments.read` rows.

    Columns: configuration, D, training seeds, the :data:`COLUMNS` as "mean ± std" (x100) and
    the mean wall seconds of one training-plus-evaluation run.
    """
    if rows.empty:
        return pd.DataFrame()
    configs = list(order) if order else list(dict.fromkeys(rows["config"]))
    configs = [c for c in configs if c in set(rows["config"])]
    configs += [c for c in dict.fromkeys(rows["config"]) if c not in configs]
    out = []
    for config in configs:
        part = rows[rows["config"] == config]
        row: dict[str, object] = {
            "configuration": config,
            "D": int(part["dim"].iloc[0]),
            "training seeds": int(part["train_seed"].nunique()),
        }
        for protocol, task, probe, metric, header in COLUMNS:
            sel = part[
                (part["protocol"] == protocol)
                & (part["task"] == task)
                & (part["probe"] == probe)
                & (part["metric"] == metric)
            ]
            row[header] = (
                _cell(sel["mean"].to_numpy(), float(sel["std"].mean())) if len(sel) else "-"
            )
        per_seed = part.groupby("train_seed")["seconds"].first()
        row["s / run"] = f"{per_seed.mean():.0f}"
        out.append(row)
    return pd.DataFrame(out)


def value(
    rows: pd.DataFrame, config: str, protocol: str, task: str, probe: str, metric: str
) -> float:
    """Mean over training seeds of one metric of one configuration (a fraction; NaN if absent)."""
    sel = rows[
        (rows["config"] == config)
        & (rows["protocol"] == protocol)
        & (rows["task"] == task)
        & (rows["probe"] == probe)
        & (rows["metric"] == metric)
    ]
    return float(sel["mean"].mean()) if len(sel) else float("nan")


def machine_lines(rows: pd.DataFrame, default: str, counts: str, pe: str, city: str) -> list[str]:
    """The grep-able lines for the default configuration and its two strongest baselines."""
    lines = []
    seeds = int(rows.loc[rows["config"] == default, "train_seed"].nunique())
    for protocol, tag in (("random", ""), ("blocks", "-block")):
        for label, config in ((f"{city}{tag}-mlp", default), (f"{city}{tag}-counts-mlp", counts),
                              (f"{city}{tag}-pe-mlp", pe)):  # fmt: skip
            f1 = 100.0 * value(rows, config, protocol, "luc", "mlp", "f1")
            l1 = 100.0 * value(rows, config, protocol, "sdm", "mlp", "l1")
            extra = f" seeds={seeds}" if config == default else ""
            lines.append(f"{label}: luc_f1={f1:.2f} sdm_l1={l1:.2f}{extra}")
    return lines


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table."""
    if table.empty:
        return "(no rows)\n"
    header = "| " + " | ".join(table.columns) + " |"
    sep = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in r) + " |" for r in table.itertuples(index=False)]
    return "\n".join([header, sep, *body]) + "\n"
