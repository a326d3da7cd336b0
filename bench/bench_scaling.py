"""Benchmark 4: scaling with the number of POIs (10k / 100k / 1M synthetic POIs).

Per size, each in a fresh process:

- ingestion of a synthetic CSV snapshot (``tests.support.synthetic``): seconds, peak RSS,
  DuckDB file size;
- the embed stage on the ingested POIs (descriptions, dedupe, SHA-256 text hashes, cache
  lookup, MiniLM on the new distinct texts: the synthetic city has 16 categories, so 16
  distinct CaLLiPer texts whatever N): first run and a second run (all cached);
- training (paper model, batch 1024, one thread) on N synthetic training pairs (clustered
  points, 69 texts): steady seconds per epoch, POIs/s, peak RSS and what the data and the
  precomputed positional encoding take.

    python -m bench.bench_scaling [--quick] [--sizes 10000,100000,1000000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import statistics

from bench.common import Section, Table, log
from bench.pipeline_workers import synthetic_snapshot
from bench.workers import run_worker


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="10k and 100k only, 1 epoch")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    sizes = [10_000, 100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    epochs = 1 if args.quick else args.epochs
    section = Section("4. Scaling: 10k / 100k / 1M POIs")
    t_ing = section.table(
        "Ingestion (synthetic CSV) and the embed stage (MiniLM, DuckDB cache):",
        Table(
            (
                "POIs",
                "ingest s",
                "ingest rows/s",
                "ingest peak RSS MiB",
                "DuckDB MiB",
                "embed: distinct texts",
                "embed first run s",
                "embed again s",
                "embed peak RSS MiB",
            )
        ),
    )
    t_train = section.table(
        f"Training (batch 1024, {args.threads} thread(s), steady epoch = median of epochs "
        f"2..{epochs} or the only one):",
        Table(
            (
                "POIs",
                "train POIs",
                "s/epoch",
                "POIs/s",
                "s/epoch per 100k POIs",
                "peak RSS MiB",
                "RSS after loading data MiB",
                "PE cache MiB",
            )
        ),
    )
    for n in sizes:
        log(f"scaling: {n:,} POIs: ingest")
        toml = synthetic_snapshot(n, "csv")
        ing = run_worker("ingest", {"source": str(toml)})
        log(f"scaling: {n:,} POIs: embed")
        emb = run_worker("embed_scaling", {"source": str(toml)})
        t_ing.add(
            n,
            ing["wall_s"],
            ing["rows_read"] / ing["wall_s"],
            f"{ing['peak_rss_mib']:.0f}",
            f"{ing['db_bytes'] / 2**20:.1f}",
            emb["n_distinct"],
            emb["first_s"],
            emb["again_s"],
            f"{emb['peak_rss_mib']:.0f}",
        )
        log(f"scaling: {n:,} POIs: train")
        tr = run_worker(
            "train",
            {"source": f"synthetic:{n}", "batch": 1024, "epochs": epochs, "threads": args.threads},
        )
        e = tr["epoch_seconds"]
        s = statistics.median(e[1:]) if len(e) > 1 else e[0]
        t_train.add(
            n,
            tr["n_train"],
            s,
            tr["n_train"] / s,
            s / (tr["n_train"] / 100_000),
            f"{tr['peak_rss_mib']:.0f}",
            f"{tr['data_rss_mib']:.0f}",
            f"{n * 128 * 4 / 2**20:.0f}",
        )
    section.note(
        "Growth: training time per epoch is linear in POIs (constant s/epoch per 100k; each "
        "epoch is N/B steps of fixed cost); memory grows by the data (~24 B per POI) plus the "
        "precomputed positional encoding (512 B per POI, float32 x 128), which is capped by "
        "`train.PE_CACHE_MAX_BYTES` (2 GiB, ~4.2M POIs): above that the encoding is computed "
        "per batch again (about 4 ms of a ~50 ms step) and memory stops growing with it. "
        "Ingestion is linear in rows; the embed stage's cost is the model on *distinct* texts "
        "(here 16) plus a linear pass over the POIs' texts (describe, hash, dedupe), so a "
        "second run is the linear pass alone."
    )
    if not args.no_write:
        section.write()
    else:
        print(section.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
