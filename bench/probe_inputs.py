"""Does the probe's input scaling decide the ranking? One trained model and the two baselines
that matter, each probed on raw and on standardised features (zero mean, unit variance per
column over the evaluation points; no labels involved), LUC MLP macro-F1 under both protocols.

    python -m bench.probe_inputs --model <calliper_model.pt> --store <warehouse.duckdb>

``--model`` is a trained model file (e.g. the ``calliper_model.pt`` artifact of a registered
version), ``--store`` the DuckDB store holding the city's POIs (the counts baseline's input).
Prints a Markdown table; nothing is written.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench.common import Table, log
from calliper_pipeline.cities.spec import get_city
from calliper_pipeline.config import EncoderConfig, ProbeConfig
from calliper_pipeline.evaluation.baselines import poi_count_features, positional_encoding_features
from calliper_pipeline.evaluation.data import load_landuse
from calliper_pipeline.evaluation.protocol import evaluate_features
from calliper_pipeline.model.calliper import embed_points, load_model
from calliper_pipeline.settings import from_env
from calliper_pipeline.store.db import connect
from calliper_pipeline.store.pois import read_city_pois


def standardised(features: np.ndarray) -> np.ndarray:
    """Each column at zero mean and unit variance over the rows."""
    return (features - features.mean(0)) / (features.std(0) + 1e-6)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--city", default="london")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    city = get_city(args.city)
    model = load_model(args.model)
    epsg = model.spec.metric_epsg
    points = load_landuse(city, from_env().data_root, epsg)
    with connect(args.store, read_only=True) as con:
        pois = read_city_pois(con, city.key)
    features = {
        f"model ({model.spec.out_dim}-d)": embed_points(model, x_m=points.x_m, y_m=points.y_m),
        "POI counts 200-2000 m": poi_count_features(
            points.x_m,
            points.y_m,
            pois["x_m"].to_numpy(),
            pois["y_m"].to_numpy(),
            pois["category"].to_numpy(),
        ),
        "bare positional encoding": positional_encoding_features(
            points.x_m, points.y_m, EncoderConfig(), model.spec.centre_m
        ),
    }
    cfg = replace(ProbeConfig(), probes=("mlp",))
    table = Table(("features", "input", "LUC MLP F1 random", "LUC MLP F1 blocks"))
    for name, raw in features.items():
        for how, f in (("raw", raw), ("standardised", standardised(raw))):
            t0 = time.perf_counter()
            frame = evaluate_features(f.astype(np.float32), points, None, None, cfg, name=name)
            f1 = frame.to_frame().query("metric == 'f1'").set_index("protocol")
            cells = [f"{f1.loc[p, 'mean_x100']:.2f} ± {f1.loc[p, 'std_x100']:.2f}"
                     for p in ("random", "blocks")]  # fmt: skip
            table.add(name, how, *cells)
            log(f"{name} {how}: {cells} ({time.perf_counter() - t0:.0f} s)")
    print(table.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
