"""Data-parallel training on 2 gloo processes equals one process with the same global batch.

Without dropout the two runs must agree up to float rounding: the same per-epoch losses and the
same final weights. Covered: the multi-head model (a grouped own-text head, neighbourhood
mixture heads, multi-positive loss) and the paper's single head with more distinct texts than a
batch (its texts gathered), with a global batch that splits unevenly (45 = 23 + 22)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from calliper_pipeline.config import TrainConfig
from calliper_pipeline.model.calliper import ModelSpec
from calliper_pipeline.training.distributed import gather_rows, shares
from calliper_pipeline.training.loop import train
from calliper_pipeline.training.targets import index_head
from tests.unit.training.test_neighbourhood_train import SMALL, _city

CFG = TrainConfig(epochs=2, batch_size=45, lr=3e-3, num_threads=1, seed=4)


def _case(name: str):
    """(spec, coords, text rows, text table, heads, multi_positive) without dropout."""
    spec, coords, own, table, heads = _city(n_poi=400, n_bg=200)
    if name == "multi-head":
        return replace(spec, encoder=replace(SMALL, dropout=0.0)), coords, own, table, heads, True
    rng = np.random.default_rng(1)
    table = rng.normal(size=(60, 12)).astype(np.float32)  # 60 distinct texts > 45 per batch
    rows = rng.integers(0, 60, len(coords))
    single = ModelSpec(replace(SMALL, dropout=0.0), 12, (0.0, 0.0), 27700, "t")
    return single, coords, rows, table, [index_head("own", rows)], False


def _run(name: str) -> tuple[list[float], list[float], dict[str, torch.Tensor]]:
    spec, coords, rows, table, heads, mp_loss = _case(name)
    r = train(spec, coords, rows, table, CFG, heads=heads, multi_positive=mp_loss)
    state = {k: v.detach().clone() for k, v in r.model.state_dict().items()}
    return [h.train_loss for h in r.history], [h.val_loss for h in r.history], state


def _worker(rank: int, world: int, init: str, name: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        result = _run(name)
        if rank == 0:
            torch.save(result, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two torchrun-style processes per case: ~40 s each on 2 cores
@pytest.mark.parametrize("name", ["multi-head", "single-head"])
def test_two_gloo_processes_equal_one(tmp_path: Path, name: str):
    out = tmp_path / "rank0.pt"
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_worker, args=(2, init, name, str(out)), nprocs=2, join=True)
    train_dp, val_dp, state_dp = torch.load(out, weights_only=True)
    train_1, val_1, state_1 = _run(name)
    assert train_dp == pytest.approx(train_1, rel=1e-4)
    assert val_dp == pytest.approx(val_1, rel=1e-4)
    for key, value in state_1.items():
        torch.testing.assert_close(state_dp[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_shares_split_a_batch_like_tensor_split():
    assert shares(45, 2) == [23, 22]
    assert shares(8, 3) == [3, 3, 2]
    assert [len(p) for p in torch.arange(8).tensor_split(3)] == shares(8, 3)


def test_gather_rows_is_the_identity_in_one_process():
    if not dist.is_initialized():  # all_gather needs a group: build a one-process one
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    try:
        x = torch.arange(6.0).reshape(3, 2).requires_grad_()
        y = gather_rows(x, [3])
        assert torch.equal(y, x)
        y.sum().backward()
        assert x.grad is not None and torch.equal(x.grad, torch.ones(3, 2))
    finally:
        dist.destroy_process_group()
