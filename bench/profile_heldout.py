"""cProfile of the label-free measures that follow training, on a city a scale run stored.

Loads the city's training inputs from ``WORK/home`` (as :mod:`bench.bench_scale_1m` leaves it),
builds an untrained model of the paper preset's shape (the cost does not depend on the
weights) and profiles the validation retrieval (every held-out POI's cell ranked among all
cells by its text) and the held-out validation loss; prints wall seconds and the top entries.

    python -m bench.profile_heldout WORK CITY_KEY
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from calliper_pipeline import presets
    from calliper_pipeline.cities.cells import load_cells
    from calliper_pipeline.cities.spec import get_city, load_city_registry
    from calliper_pipeline.model.calliper import CalliperModel
    from calliper_pipeline.steps.heldout import model_heldout_loss
    from calliper_pipeline.steps.train import validation_retrieval
    from calliper_pipeline.store.city_store import for_home
    from calliper_pipeline.text.encoders import build_text_encoder
    from calliper_pipeline.training.inputs import training_inputs

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", type=Path, help="the --work folder of bench.bench_scale_1m")
    ap.add_argument("city", help="the city key, e.g. scale1m")
    args = ap.parse_args(argv)
    work, key = args.work, args.city
    city = get_city(key, load_city_registry(sorted((work / "data").glob("*.toml"))))
    cfg = presets.run_config(presets.PAPER, {"epochs": 1})
    with for_home(work / "home").connect(key, read_only=True) as con:
        inputs = training_inputs(
            con, city, work / "data", build_text_encoder("minilm").encoder_id, cfg
        )
    model = CalliperModel(inputs.spec)
    cells = load_cells(city, work / "data", inputs.spec.metric_epsg)
    for name, fn in (
        ("validation retrieval", lambda: validation_retrieval(model, inputs, cells, cfg.train)),
        ("held-out loss", lambda: model_heldout_loss(model, inputs, cfg.train)),
    ):
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        fn()
        prof.disable()
        print(f"{name}: {time.perf_counter() - t0:.1f} s ({len(cells):,} cells)")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(12)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
