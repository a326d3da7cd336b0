"""The results table: our encoder(s) next to the paper and the baselines, as Markdown.

Values are means (± std over the five probe seeds) in the paper's x100 convention. LUC: higher
is better; SDM (L1, KL): lower is better. Every encoder appears once per split protocol
(``random``: the paper's split, next to the paper's rows; ``blocks``: spatial blocks), so each
row of the random section has its spatial-block twin below. Tidy frames without a ``protocol``
column (stores written before the protocols) count as ``random``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from calliper_pipeline.evaluation.protocol import EvaluationResult
from calliper_pipeline.evaluation.splits import PROTOCOLS, RANDOM

# (task, probe, metric, header)
COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("luc", "linear", "accuracy", "LUC lin acc"),
    ("luc", "linear", "f1", "LUC lin F1"),
    ("luc", "mlp", "accuracy", "LUC MLP acc"),
    ("luc", "mlp", "f1", "LUC MLP F1"),
    ("sdm", "linear", "l1", "SDM lin L1"),
    ("sdm", "mlp", "l1", "SDM MLP L1"),
    ("sdm", "mlp", "chebyshev", "SDM MLP Cheb"),
    ("sdm", "mlp", "kl", "SDM MLP KL"),
)

#: The city the paper's figures are of: only its results table shows them.
PAPER_CITY = "london"
# The paper's figures (PAPER.md): Table 7 (MLP probe) and the authors' notebooks.
PAPER_ROWS: dict[str, dict[str, str]] = {
    "paper: CaLLiPer-SenTrans (OS POI, 340k)": {
        "LUC lin acc": "34.73 ± 0.35",
        "LUC lin F1": "35.68 ± 0.35",
        "LUC MLP acc": "38.4 ± 1.5",
        "LUC MLP F1": "36.4 ± 1.6",
        "SDM MLP L1": "21.65 ± 0.12",
        "SDM MLP Cheb": "6.59 ± 0.02",
        "SDM MLP KL": "4.32 ± 0.06",
    },
    "paper: SatCLIP (pretrained, global)": {
        "LUC MLP acc": "12.2 ± 2.5",
        "LUC MLP F1": "12.2 ± 1.6",
        "SDM MLP L1": "28.89 ± 0.09",
        "SDM MLP Cheb": "8.84 ± 0.03",
        "SDM MLP KL": "7.07 ± 0.01",
    },
}


def _fmt(mean: float, std: float) -> str:
    return f"{100.0 * mean:.2f} ± {100.0 * std:.2f}"


def tidy(results: Sequence[EvaluationResult]) -> pd.DataFrame:
    """Concatenate results' summaries (columns encoder, protocol, task, probe, metric, mean,
    std, ...)."""
    frames = [r.to_frame() for r in results]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def with_protocol(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``protocol`` column (``"random"`` where it has none)."""
    return df if "protocol" in df.columns else df.assign(protocol=RANDOM)


def _protocol_order(df: pd.DataFrame) -> list[str]:
    present = set(df["protocol"].astype(str)) if len(df) else set()
    known = [p for p in PROTOCOLS if p in present or p == RANDOM]
    return known + sorted(present - set(known))


def results_frame_tidy(df: pd.DataFrame, with_paper: bool = True) -> pd.DataFrame:
    """One row per (protocol, encoder) from a tidy frame (fractions; shown x100 as mean ± std).

    Every encoder gets a row under every protocol present (``–`` where it has no value); the
    random section comes first, followed by the paper's rows when ``with_paper``.
    """
    df = with_protocol(df)
    rows: list[dict[str, str]] = []
    encoders = list(dict.fromkeys(df["encoder"])) if len(df) else []
    for protocol in _protocol_order(df):
        for enc in encoders:
            sub = df[(df["encoder"] == enc) & (df["protocol"] == protocol)]
            sub = sub.set_index(["task", "probe", "metric"])
            row = {"encoder": str(enc), "protocol": protocol}
            for t, p, m, h in COLUMNS:
                key = (t, p, m)
                hit = key in sub.index
                row[h] = _fmt(sub.loc[key, "mean"], sub.loc[key, "std"]) if hit else "–"
            rows.append(row)
        if with_paper and protocol == RANDOM:
            for name, vals in PAPER_ROWS.items():
                row = {"encoder": name, "protocol": RANDOM}
                rows.append(row | {h: vals.get(h, "–") for *_, h in COLUMNS})
    return pd.DataFrame(rows, columns=["encoder", "protocol", *[h for *_, h in COLUMNS]])


def results_frame(results: Sequence[EvaluationResult], with_paper: bool = True) -> pd.DataFrame:
    """One row per encoder (ours, baselines, and optionally the paper's rows)."""
    return results_frame_tidy(tidy(results), with_paper=with_paper)


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no tabulate dependency)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def machine_line(key: str, df: pd.DataFrame, encoder: str, protocol: str = RANDOM) -> str:
    """``<key>: luc_f1=<MLP macro F1 x100> sdm_l1=<MLP L1 x100>`` for one encoder's rows
    under ``protocol`` (callers name the blocks line e.g. ``<key>-blocks``)."""
    df = with_protocol(df)
    rows = df[(df["encoder"] == encoder) & (df["protocol"] == protocol)]
    means = rows.set_index(["task", "probe", "metric"])["mean"]
    f1 = 100.0 * float(means.get(("luc", "mlp", "f1"), float("nan")))
    l1 = 100.0 * float(means.get(("sdm", "mlp", "l1"), float("nan")))
    return f"{key}: luc_f1={f1:.2f} sdm_l1={l1:.2f}"


@dataclass
class RunReport:
    """Everything docs/results.md states about one run."""

    title: str
    command: str
    commit: str
    machine: str
    date: str
    stage_seconds: Mapping[str, float]
    results: pd.DataFrame  # tidy: encoder, protocol, task, probe, metric, mean, std (fractions)
    machine_lines: Sequence[str] = ()
    training: Mapping[str, str] = field(default_factory=dict)
    notes: Sequence[str] = ()
    own_table: pd.DataFrame | None = None  # a city without labels: its own figures instead
    with_paper: bool = True  # the paper's (London's) rows beside ours: London only

    def results_table(self) -> str:
        """The probe table beside the paper's rows, or the city's own figures."""
        if self.own_table is not None:
            return to_markdown(self.own_table)
        return to_markdown(results_frame_tidy(self.results, with_paper=self.with_paper))

    def markdown(self) -> str:
        parts = [
            f"## {self.title}",
            "",
            f"- command: `{self.command}`",
            f"- commit: `{self.commit}`",
            f"- machine: {self.machine}",
            f"- date: {self.date}",
            "- wall time per stage: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in self.stage_seconds.items()),
        ]
        parts += [f"- {k}: {v}" for k, v in self.training.items()]
        parts += ["", self.results_table(), ""]
        parts += [f"- {n}" for n in self.notes]
        if self.machine_lines:
            what = (
                "held-out POIs, recall x100"
                if self.own_table is not None
                else "MLP probe, means x100"
            )
            parts += ["", f"Machine-readable (this run's configuration, {what}):", ""]
            parts += ["```", *self.machine_lines, "```"]
        return "\n".join(parts) + "\n"
