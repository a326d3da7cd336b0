"""Run every benchmark (``make bench``); each appends its section to docs/benchmarks.md.

    python -m bench.run_all [--quick]
        [--only ingest,embed,train,objective,eval,equivalence,scaling,e2e,early,serving,make-run]

``--quick`` runs a fast subset (a few minutes): smaller sizes, fewer epochs, no baseline
repeats, no early-stopping study. The full run takes about half an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bench import (
    bench_e2e,
    bench_early_stopping,
    bench_embed,
    bench_equivalence,
    bench_eval,
    bench_ingest,
    bench_make_run,
    bench_objective,
    bench_scaling,
    bench_serving,
    bench_train,
)
from bench.common import log

BENCHES: dict[str, Callable[[list[str] | None], int]] = {
    "ingest": bench_ingest.main,
    "embed": bench_embed.main,
    "train": bench_train.main,
    "objective": bench_objective.main,
    "eval": bench_eval.main,
    "equivalence": bench_equivalence.main,
    "scaling": bench_scaling.main,
    "e2e": bench_e2e.main,
    "early": bench_early_stopping.main,
    "serving": bench_serving.main,
    "make-run": bench_make_run.main,  # last: two whole `make run`s (~15 min on 2 cores)
}
QUICK_SKIP = {"early"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=",".join(BENCHES), help="comma-separated benchmarks")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    wanted = [b for b in args.only.split(",") if b]
    unknown = set(wanted) - set(BENCHES)
    if unknown:
        ap.error(f"unknown benchmarks {sorted(unknown)}; choose from {list(BENCHES)}")
    failed = []
    for name in wanted:
        if args.quick and name in QUICK_SKIP:
            continue
        flags = (["--quick"] if args.quick else []) + (["--no-write"] if args.no_write else [])
        if name == "early" and args.quick:
            flags = [f for f in flags if f != "--quick"]
        log(f"=== bench {name} {' '.join(flags)}")
        t0 = time.perf_counter()
        try:
            BENCHES[name](flags)
        except Exception as exc:  # one failing benchmark must not hide the others' figures
            failed.append(name)
            log(f"bench {name} failed: {exc!r}")
        log(f"=== bench {name}: {time.perf_counter() - t0:.0f} s")
    if failed:
        log(f"failed: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
