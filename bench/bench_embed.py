"""Benchmark 2: text embeddings (all-MiniLM-L6-v2 on CPU) and the DuckDB embedding cache.

- Rate: distinct texts per second at batch sizes 32 / 128 / 512 on a random sample of London's
  CaLLiPer+ descriptions (with POI names: the variant with tens of thousands of distinct
  texts), model loaded and warmed up first; one torch thread and all cores.
- Cache: ``embed_texts_cached`` on a sample snapshot of London POIs (CaLLiPer+ texts) in a fresh
  DuckDB: the first run embeds every distinct text, a second run on the same snapshot embeds
  none, and a snapshot with 1 % of its POIs renamed embeds only those. Also the real stage:
  London's CaLLiPer texts (72k POIs, 69 distinct texts).

    python -m bench.bench_embed [--quick] [--sample 1024] [--cache-pois 2000]
"""

from __future__ import annotations

import argparse
import os
import random

from bench.common import Section, Table, log, physical_cores
from bench.data import london_texts
from bench.workers import run_worker


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer texts, one thread setting")
    ap.add_argument("--sample", type=int, default=1024, help="distinct texts per rate run")
    ap.add_argument("--cache-pois", type=int, default=2000, help="POIs of the cache snapshot")
    ap.add_argument("--batch-sizes", default="32,128,512")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    sample = 256 if args.quick else args.sample
    cache_pois = 500 if args.quick else args.cache_pois
    rng = random.Random(0)
    plus = london_texts("calliper_plus")
    distinct = sorted(set(plus))
    texts = rng.sample(distinct, min(sample, len(distinct)))
    section = Section("2. Text embeddings: MiniLM rate and the cache")

    rate = section.table(
        f"Distinct texts per second ({len(texts):,} distinct London CaLLiPer+ descriptions, "
        f"mean {sum(map(len, texts)) / len(texts):.0f} characters):",
        Table(
            ("torch threads", *(f"batch {b}" for b in args.batch_sizes.split(",")), "model load s")
        ),
    )
    best_rate = 0.0
    threads = [1] if args.quick else sorted({1, min(physical_cores(), os.cpu_count() or 1)})
    for n in threads:
        log(f"embed rate: {n} thread(s)")
        r = run_worker(
            "embed_rate",
            {
                "texts": texts,
                "batch_sizes": [int(b) for b in args.batch_sizes.split(",")],
                "threads": n,
            },
        )
        if n == 1:
            best_rate = max(r["texts_per_s"].values())
        rate.add(
            r["threads"],
            *(r["texts_per_s"][b] for b in args.batch_sizes.split(",")),
            r["model_load_s"],
        )

    # the cache: a sample snapshot of POIs, then 1 % of them renamed
    idx = rng.sample(range(len(plus)), min(cache_pois, len(plus)))
    snap = [plus[i] for i in idx]
    changed = list(snap)
    for i in rng.sample(range(len(snap)), max(1, len(snap) // 100)):
        changed[i] = "Renamed " + changed[i]
    log("embed cache: sample snapshot")
    cache = run_worker("embed_cache", {"texts": snap, "changed_texts": changed, "threads": 1})
    log("embed cache: London CaLLiPer texts")
    calliper = london_texts("calliper")
    london = run_worker("embed_cache", {"texts": calliper, "changed_texts": calliper, "threads": 1})
    table = section.table(
        "The cache (`embed_texts_cached`, one thread, batch 256, model already loaded):",
        Table(("snapshot", "run", "POIs", "distinct texts", "embedded", "cached", "seconds")),
    )
    for name, res in ((f"{len(snap):,} London POIs, CaLLiPer+", cache),):
        for run, v in res["runs"].items():
            table.add(
                name,
                run,
                v["n_input"],
                v["n_distinct"],
                v["n_embedded"],
                v["n_cached"],
                v["seconds"],
            )
    for run in ("first run", "same snapshot again"):
        v = london["runs"][run]
        table.add(
            "London (72k POIs), CaLLiPer",
            run,
            v["n_input"],
            v["n_distinct"],
            v["n_embedded"],
            v["n_cached"],
            v["seconds"],
        )
    n_plus = len(distinct)
    section.note(
        f"London's CaLLiPer+ variant has {n_plus:,} distinct texts: at the best one-thread rate "
        f"above ({best_rate:.0f} texts/s) embedding them all takes about "
        f"{n_plus / best_rate / 60:.0f} minutes, once; every later run finds "
        "them in the cache. The 1 % change re-embeds only the renamed POIs' texts."
    )
    if not args.no_write:
        section.write()
    else:
        print(section.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
