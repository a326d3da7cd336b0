"""Evaluation speed: a full London evaluation (LUC and SDM; linear and MLP probes; five seeds,
20 probe runs) of one trained model, before and after the probe speed-ups.

The model is trained once (a few epochs: the probes' cost does not depend on it) and saved;
each evaluation runs in a fresh process, alternating the code before the performance work
(``workers.BASELINE_COMMIT``) and the current checkout, best of ``--repeats``, one thread.

    python -m bench.bench_eval [--repeats 2] [--epochs 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench.common import BENCH_HOME, REPO_ROOT, Section, Table, log
from bench.workers import BASELINE_COMMIT, extract_commit, run_worker

SHOWN = (
    ("luc.linear.accuracy", "LUC lin acc"),
    ("luc.mlp.accuracy", "LUC MLP acc"),
    ("sdm.linear.l1", "SDM lin L1"),
    ("sdm.mlp.l1", "SDM MLP L1"),
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="one repeat")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--baseline", default=BASELINE_COMMIT)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    section = Section("Evaluation: a full London evaluation, before and after")
    model = BENCH_HOME / "eval_model.pt"
    log("eval: training the model to evaluate")
    run_worker(
        "train",
        {
            "source": "london",
            "batch": 1024,
            "epochs": args.epochs,
            "threads": 1,
            "save_model": str(model),
        },
    )
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="calliper-baseline-") as tmp:
        codes = [("before", extract_commit(args.baseline, Path(tmp))), ("after", REPO_ROOT)]
        for rep in range(repeats):
            for code, root in codes if rep % 2 == 0 else codes[::-1]:
                log(f"eval: {code}, run {rep + 1}")
                # the random protocol only: the code before the performance work has no other
                params = {"model": str(model), "threads": 1, "protocols": "random"}
                runs[code].append(run_worker("evaluate", params, code_root=root))
    table = section.table(
        f"20 probe runs on one model (London, {args.epochs}-epoch model), one thread, best of "
        f"{repeats}; metrics x100 (mean ± std over the seeds):",
        Table(("code", "wall s", "CPU s", "probe epochs", *(h for _, h in SHOWN))),
    )
    for code, rs in runs.items():
        r = min(rs, key=lambda x: x["eval_wall_s"])
        m = r["metrics"]
        table.add(
            code,
            r["eval_wall_s"],
            r["eval_cpu_s"],
            r["probe_epochs"],
            *(f"{m[k][0]:.2f} ± {m[k][1]:.2f}" for k, _ in SHOWN),
        )
    section.note(
        f"before = commit `{args.baseline}` (one probe per seed, one at a time); after = this "
        "checkout (the five seeds of a (task, probe) pair train as one stacked model, each "
        "with its own draws; CPU probes on one thread). The wall time includes computing the "
        "features and, once per process, torch's optimizer import (~2-4 s). Metrics agree to "
        "float rounding (an early-stopping tie can move a seed by an epoch)."
    )
    if not args.no_write:
        section.write()
    else:
        print(section.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
