"""The default objective's training step against this machine's matmul rate.

Times the training step of the ``default`` preset's model (four 128-d heads on one trunk,
neighbourhood targets as mixtures of the distinct texts) on in-memory inputs of London's
shape (U = 85 distinct texts, batch 1,024), with the fused symmetric InfoNCE the training uses
and with the textbook loss (two ``F.cross_entropy`` calls, the logit scale applied to the
(B, B) product), alternating the two in one process so that both see the same load. FLOPs per
step are counted by ``torch.utils.flop_counter`` (the matmuls, forward and backward); the
matmul rate is measured in the same process with the same threads between the timings.

    python -m bench.bench_objective [--threads 1] [--steps 12] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.common import Section, Table, log, matmul_gflops, torch_threads
from calliper_pipeline import presets
from calliper_pipeline.model import calliper as model_module
from calliper_pipeline.model.calliper import CalliperModel, ModelSpec
from calliper_pipeline.training import batches as batches_module
from calliper_pipeline.training.batches import Batches, HeadTensors, precompute_features

N_POINTS = 16_384
N_TEXTS = 85  # London's distinct texts with the FSA premises and the empty-place text
FUSED, TEXTBOOK = "fused (this code)", "textbook (two cross-entropies)"


def _textbook_loss(logits: torch.Tensor) -> torch.Tensor:
    labels = torch.arange(logits.shape[0], device=logits.device)
    logits = logits.float()
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def _textbook_logits(self: CalliperModel, loc: torch.Tensor, text: torch.Tensor, head: int = 0):
    if loc.shape[1] != self.embed_dim:
        loc = loc[:, self.head_slice(head)]
    return self.head_scale(head).exp() * text @ F.normalize(loc, dim=-1).t()


class _Variant:
    """Swaps the loss and the logits of the training code for one variant while active."""

    def __init__(self, name: str):
        self.name = name
        self._saved: tuple[Any, Any] = (batches_module.clip_loss, CalliperModel.logits)

    def __enter__(self) -> None:
        if self.name == TEXTBOOK:
            batches_module.clip_loss = _textbook_loss  # type: ignore[assignment]
            model_module.CalliperModel.logits = _textbook_logits  # type: ignore[method-assign,assignment]

    def __exit__(self, *exc: object) -> None:
        batches_module.clip_loss, model_module.CalliperModel.logits = self._saved  # type: ignore[method-assign]


def _setup(batch: int, seed: int = 0) -> tuple[CalliperModel, Batches, list[torch.Tensor]]:
    cfg = presets.run_config()
    heads = cfg.objective.heads
    spec = ModelSpec(
        encoder=cfg.encoder, text_dim=384, centre_m=(0.0, 0.0), metric_epsg=27700,
        text_encoder_id="bench", heads=heads,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = CalliperModel(spec)
    rng = np.random.default_rng(seed)
    coords = torch.from_numpy(rng.uniform(-25_000, 25_000, (N_POINTS, 2)).astype(np.float32))
    table = F.normalize(torch.randn(N_TEXTS, 384), dim=1)
    targets = [
        HeadTensors(
            None,
            torch.from_numpy(rng.dirichlet(np.full(N_TEXTS, 0.3), N_POINTS).astype(np.float32)),
            torch.arange(N_POINTS),
        )
        for _ in range(heads)
    ]
    data = Batches(
        coords, torch.zeros(N_POINTS, dtype=torch.long), table, batch,
        features=precompute_features(model, coords), heads=targets,
    )  # fmt: skip
    order = torch.randperm(N_POINTS, generator=torch.Generator().manual_seed(seed))
    return model, data, data.slices(order, True)


def _stepper(model: CalliperModel, data: Batches) -> Callable[[torch.Tensor], float]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(idx: torch.Tensor) -> float:
        loss = data.loss(model, idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def step_flops(batch: int) -> float:
    """Matmul FLOPs of one training step (forward and backward), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    model, data, slices = _setup(batch)
    step = _stepper(model, data)
    with FlopCounterMode(display=False) as counter:
        step(slices[0])
    return float(counter.get_total_flops())


def time_variant(name: str, batch: int, steps: int) -> tuple[float, list[float]]:
    """Median seconds per step over ``steps`` steps (after 2 warm-up steps), and the losses."""
    with _Variant(name):
        model, data, slices = _setup(batch)
        step = _stepper(model, data)
        for idx in slices[:2]:
            step(idx)
        times, losses = [], []
        for idx in slices[2 : 2 + steps]:
            t0 = time.perf_counter()
            losses.append(step(idx))
            times.append(time.perf_counter() - t0)
    return statistics.median(times), losses


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per repeat")
    ap.add_argument("--repeats", type=int, default=3, help="alternating repeats per variant")
    ap.add_argument("--quick", action="store_true", help="4 steps, 1 repeat")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 4, 1
    section = Section("Training step of the default objective against the matmul rate")
    with torch_threads(args.threads):
        flops = step_flops(args.batch)
        timings: dict[str, list[float]] = {FUSED: [], TEXTBOOK: []}
        rates: list[float] = []
        losses: dict[str, list[float]] = {}
        for r in range(args.repeats):
            for name in (TEXTBOOK, FUSED):
                seconds, losses[name] = time_variant(name, args.batch, args.steps)
                timings[name].append(seconds)
                rates.append(matmul_gflops(m=args.batch, k=256, n=args.batch))
                log(f"repeat {r + 1}: {name}: {1000 * seconds:.0f} ms/step")
    matmul = statistics.median(rates)
    table = section.table(
        f"`default` preset model ({presets.run_config().objective.heads} heads), batch "
        f"{args.batch:,}, {args.threads} thread(s), {N_TEXTS} distinct texts; median of "
        f"{args.steps} steps, best of {args.repeats} alternating repeats; matmul rate "
        f"{matmul:.0f} GFLOP/s (median of the {len(rates)} measurements between the timings):",
        Table(("loss", "ms / step", "points / s", "GFLOP / step", "GFLOP/s", "% of matmul")),
    )
    for name in (TEXTBOOK, FUSED):
        best = min(timings[name])
        rate = flops / best / 1e9
        table.add(
            name, 1000 * best, args.batch / best, flops / 1e9, rate, f"{100 * rate / matmul:.0f} %"
        )
    diff = max(abs(a - b) for a, b in zip(losses[FUSED], losses[TEXTBOOK], strict=True))
    speedup = min(timings[TEXTBOOK]) / min(timings[FUSED])
    section.note(
        f"Fused / textbook: {speedup:.2f}x per step; the two variants' losses over the same "
        f"{args.steps} steps differ by at most {diff:.1e} (float rounding). GFLOP / step counts "
        "the matmuls only (torch.utils.flop_counter); the rest of a step is the loss's "
        "element-wise work, dropout masks and the optimiser."
    )
    section.finish(args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
