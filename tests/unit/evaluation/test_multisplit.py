"""fit_probes_per_split trains each seed as its single-seed run on its own split (up to float
rounding), for both tasks and both probe kinds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calliper_pipeline.config import ProbeConfig
from calliper_pipeline.evaluation.multisplit import fit_probes_per_split
from calliper_pipeline.evaluation.probes import build_probe, fit_probe, seeded


def _data(task: str, n: int = 700) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.normal(size=(n, 6)).astype(np.float32))
    if task == "luc":
        return x, torch.from_numpy((x[:, 0] * x[:, 1] > 0).numpy().astype(np.int64))
    return x, torch.softmax(x[:, :3] + 0.1 * torch.randn(n, 3), dim=1)


@pytest.mark.parametrize(("task", "kind"), [("luc", "mlp"), ("luc", "linear"), ("sdm", "mlp")])
def test_each_seed_trains_as_alone(task: str, kind: str) -> None:
    x, y = _data(task)
    rng = np.random.default_rng(0)
    # different sizes per seed: different batch counts and short last batches
    splits = []
    for n_train, n_val in ((400, 90), (530, 60), (257, 129)):
        rows = rng.permutation(len(x))
        splits.append((rows[:n_train], rows[n_train : n_train + n_val]))
    seeds = (42, 7, 0)
    cfg = ProbeConfig(max_epochs=6, patience=2)
    n_out = 2 if task == "luc" else 3
    state = torch.get_rng_state()
    stacked = fit_probes_per_split(kind, task, (x, y), splits, n_out, seeds, cfg)
    assert torch.equal(torch.get_rng_state(), state)
    for seed, (tr, va), (model, fit) in zip(seeds, splits, stacked, strict=True):
        tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)
        with seeded(seed):
            alone = build_probe(kind, 6, n_out)
            ref = fit_probe(alone, task, (x[tr_t], y[tr_t]), (x[va_t], y[va_t]), cfg)
        assert fit.epochs_run == ref.epochs_run and fit.best_epoch == ref.best_epoch
        np.testing.assert_allclose(fit.val_losses, ref.val_losses, rtol=1e-5)
        for (name, a), b in zip(
            model.state_dict().items(), alone.state_dict().values(), strict=True
        ):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_one_split_per_seed() -> None:
    x, y = _data("luc", 50)
    with pytest.raises(ValueError):
        fit_probes_per_split("linear", "luc", (x, y), [], 2, (1,), ProbeConfig())
