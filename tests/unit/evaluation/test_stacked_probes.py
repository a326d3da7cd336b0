"""Stacked probes (one model per seed trained together) train as the single-probe loop."""

from __future__ import annotations

import numpy as np
import torch

from calliper_pipeline.config import ProbeConfig
from calliper_pipeline.evaluation.probes import build_probe, fit_probe, fit_probes, seeded


def test_stacked_probes_train_as_the_single_probe_loop() -> None:
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(size=(300, 6)).astype(np.float32))
    y = torch.from_numpy((x[:, 0] * x[:, 1] > 0).numpy().astype(np.int64))
    tr, va = (x[:220], y[:220]), (x[220:], y[220:])
    cfg = ProbeConfig(seeds=(42, 7, 0), max_epochs=12, patience=3)
    for kind in ("linear", "mlp"):
        stacked = fit_probes(kind, "luc", tr, va, 2, cfg.seeds, cfg)
        for seed, (model, fit) in zip(cfg.seeds, stacked, strict=True):
            with seeded(seed):
                ref = build_probe(kind, 6, 2, cfg.mlp_hidden)
                ref_fit = fit_probe(ref, "luc", tr, va, cfg)
            assert fit.best_epoch == ref_fit.best_epoch
            assert fit.epochs_run == ref_fit.epochs_run
            np.testing.assert_allclose(fit.val_losses, ref_fit.val_losses, rtol=1e-5)
            for a, b in zip(model.state_dict().values(), ref.state_dict().values(), strict=True):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
