"""Benchmark 1: ingestion (read, validate, project, describe, write to DuckDB) in POIs/s.

London's snapshot (csv.gz) and synthetic snapshots (tests.support.synthetic, with the bad
rows that exercise the quarantine) of 100k and 1M POIs as CSV and Parquet. Each ingest runs in
a fresh process into a fresh DuckDB file; peak memory is that process's peak RSS (Python,
pandas, DuckDB together). Synthetic snapshots are written once under .calliper/bench.

    python -m bench.bench_ingest [--quick] [--sizes 100000,1000000] [--repeats 1]
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.common import Section, Table, log
from bench.pipeline_workers import synthetic_snapshot
from bench.workers import run_worker


def measure(source: str, repeats: int) -> dict[str, Any]:
    """Best-of-``repeats`` ingest of ``source`` (each in a fresh process)."""
    best: dict[str, Any] | None = None
    for _ in range(repeats):
        r = run_worker("ingest", {"source": source})
        if best is None or r["wall_s"] < best["wall_s"]:
            best = r
    assert best is not None
    return best


def row(table: Table, name: str, fmt: str, r: dict[str, Any]) -> None:
    steps = r["steps"]
    table.add(
        name,
        fmt,
        r["rows_read"],
        r["rows_valid"],
        f"{r['file_bytes'] / 2**20:.1f}",
        r["wall_s"],
        r["cpu_s"],
        r["rows_read"] / r["wall_s"],
        " / ".join(f"{steps[k]:.2f}" for k in ("hash", "read", "normalise", "write")),
        f"{r['peak_rss_mib']:.0f}",
        f"{r['db_bytes'] / 2**20:.1f}",
    )


COLUMNS = (
    "snapshot",
    "format",
    "rows read",
    "POIs valid",
    "file MiB",
    "wall s",
    "CPU s",
    "rows/s",
    "hash / read / normalise / write s",
    "peak RSS MiB",
    "DuckDB MiB",
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="London and synthetic 100k CSV only")
    ap.add_argument("--sizes", default="100000,1000000", help="synthetic snapshot sizes")
    ap.add_argument("--formats", default="csv,parquet")
    ap.add_argument("--repeats", type=int, default=1, help="best of N runs per snapshot")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    sizes = [100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    formats = ["csv"] if args.quick else args.formats.split(",")
    section = Section("1. Ingestion: POIs per second into DuckDB")
    table = section.table("", Table(COLUMNS))
    log("ingest: London")
    row(table, "London (OSM merged)", "csv.gz", measure("london", args.repeats))
    for n in sizes:
        for fmt in formats:
            log(f"ingest: synthetic {n:,} {fmt}")
            toml = synthetic_snapshot(n, fmt)
            row(table, f"synthetic {n:,}", fmt, measure(str(toml), args.repeats))
    section.note(
        "Each row: one fresh process ingesting into a fresh DuckDB file (best of "
        f"{args.repeats}). rows/s counts rows read (valid + filtered + quarantined); steps are "
        "the stages of `poi.ingest_city`: SHA-256 of the file, reading, normalising "
        "(filters, validation, quarantine, projection to the metric CRS and WGS84, "
        "descriptions, text hashes) and the DuckDB write (one transaction, then CHECKPOINT). "
        "Peak RSS is the whole process's (Python, pandas, DuckDB). Synthetic snapshots carry "
        "11 extra rows that the ingest filters or quarantines."
    )
    if not args.no_write:
        section.write()
    else:
        print(section.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
