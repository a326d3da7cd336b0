"""What an ingest did to each source's rows: :class:`SourceReport` and :class:`IngestReport`.

Every input row ends up exactly once as valid, filtered out, quarantined or dropped as a
near-duplicate of a POI already merged: ``rows_read == rows_valid + rows_filtered_out +
rows_quarantined + rows_duplicate``, checked for each source and for the city's totals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


def _check_counts(obj: Any) -> None:
    accounted = obj.rows_valid + obj.rows_filtered_out + obj.rows_quarantined + obj.rows_duplicate
    if accounted != obj.rows_read:
        raise ValueError(f"{obj.rows_read} rows read but {accounted} accounted for")
    if sum(obj.filtered_by.values()) != obj.rows_filtered_out:
        raise ValueError("filtered_by does not sum to rows_filtered_out")
    if sum(obj.quarantined_by.values()) != obj.rows_quarantined:
        raise ValueError("quarantined_by does not sum to rows_quarantined")


@dataclass(frozen=True)
class SourceReport:
    """The counts of one POI source (rows of its file).

    ``filtered_by`` maps each filter column to the rows it removed (filters apply in order);
    ``quarantined_by`` maps each quarantine reason to its rows; ``rows_duplicate`` counts the
    rows dropped as within ``dedupe_within_m`` of a POI merged before (0 for the primary);
    ``cleaned_by`` maps each repair (``control characters stripped``) to the rows it changed
    (such rows are counted where they ended up too).
    """

    name: str
    rows_read: int
    rows_filtered_out: int
    rows_valid: int
    rows_quarantined: int
    rows_duplicate: int = 0
    filtered_by: dict[str, int] = field(default_factory=dict)
    quarantined_by: dict[str, int] = field(default_factory=dict)
    path: str = ""
    file_hash: str = ""
    cleaned_by: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_counts(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IngestReport:
    """What happened to a city's rows (all counts are rows of its source files, summed).

    ``filtered_by`` / ``quarantined_by`` sum the sources' maps by key; ``sources`` holds each
    source's :meth:`SourceReport.to_dict` by name (empty for a report built by hand).
    ``snapshot_hash`` is the data version (:func:`calliper_pipeline.ingest.ingest.snapshot_hash`);
    ``bounds_m`` is the city's (min_x, min_y, max_x, max_y) in metres of ``metric_epsg``;
    ``source_path`` the primary file; ``seconds`` the wall time. ``cleaned_by`` sums the
    sources' repairs; ``warnings`` are one-line notes on the ingested city (a degenerate city,
    a source without a valid row).
    """

    city: str
    snapshot_hash: str
    metric_epsg: int
    rows_read: int
    rows_filtered_out: int
    rows_valid: int
    rows_quarantined: int
    filtered_by: dict[str, int] = field(default_factory=dict)
    quarantined_by: dict[str, int] = field(default_factory=dict)
    bounds_m: tuple[float, float, float, float] | None = None
    source_path: str = ""
    seconds: float = 0.0
    rows_duplicate: int = 0
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    cleaned_by: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_counts(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable) for logs and asset metadata."""
        return asdict(self)

    def summary(self) -> str:
        """One line of counts: read, valid, filtered and quarantined by reason, cleaned."""
        text = (
            f"{self.rows_read:,} rows read, {self.rows_valid:,} valid, "
            f"{self.rows_filtered_out:,} filtered out {dict(self.filtered_by)}, "
            f"{self.rows_quarantined:,} quarantined {dict(self.quarantined_by)}"
        )
        if self.rows_duplicate:
            text += f", {self.rows_duplicate:,} near-duplicates"
        if self.cleaned_by:
            text += f", cleaned {dict(self.cleaned_by)}"
        return text

    @classmethod
    def combine(
        cls,
        city: str,
        snapshot_hash: str,
        metric_epsg: int,
        sources: list[SourceReport],
        bounds_m: tuple[float, float, float, float] | None = None,
    ) -> IngestReport:
        """The city's report: the sources' counts summed (count maps summed by key)."""

        def summed(maps: list[Mapping[str, int]]) -> dict[str, int]:
            out: dict[str, int] = {}
            for m in maps:
                for k, v in m.items():
                    out[k] = out.get(k, 0) + int(v)
            return out

        return cls(
            city=city,
            snapshot_hash=snapshot_hash,
            metric_epsg=metric_epsg,
            rows_read=sum(s.rows_read for s in sources),
            rows_filtered_out=sum(s.rows_filtered_out for s in sources),
            rows_valid=sum(s.rows_valid for s in sources),
            rows_quarantined=sum(s.rows_quarantined for s in sources),
            rows_duplicate=sum(s.rows_duplicate for s in sources),
            filtered_by=summed([s.filtered_by for s in sources]),
            quarantined_by=summed([s.quarantined_by for s in sources]),
            cleaned_by=summed([s.cleaned_by for s in sources]),
            bounds_m=bounds_m,
            source_path=sources[0].path if sources else "",
            sources={s.name: s.to_dict() for s in sources},
        )
