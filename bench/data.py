"""Benchmark inputs: London (ingested into a bench-only store) and synthetic snapshots.

The bench store lives in ``.calliper/bench`` (ignored by git), never in the pipeline's own
per-city files (``.calliper/store/<city>.duckdb``), which a running ``calliper run`` keeps locked.

``london_bundle()`` gathers everything training and evaluation need as plain arrays and caches
them in one ``.npz`` (a few MB): prepared coordinates, text index and table, the model spec, and
the land-use and socio-economic points. ``bench/gpu.sh`` carries that file to a GPU machine,
which then needs neither DuckDB nor geopandas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import BENCH_HOME, log

LONDON_BUNDLE = BENCH_HOME / "london_inputs.npz"


@dataclass
class Bundle:
    """Training and evaluation inputs of one city as arrays (see :func:`london_bundle`)."""

    spec_json: str
    coords: np.ndarray  # (N, 2) float32 centred metres
    text_index: np.ndarray  # (N,) int64
    text_table: np.ndarray  # (U, D) float32
    luc: dict[str, np.ndarray] | None  # x_m, y_m, lon, lat, targets, class_names
    sdm: dict[str, np.ndarray] | None

    def spec(self):  # type: ignore[no-untyped-def]
        from calliper_pipeline.model.calliper import ModelSpec

        return ModelSpec.from_dict(json.loads(self.spec_json))

    def points(self, task: str):  # type: ignore[no-untyped-def]
        """The task's :class:`LabelledPoints` (None if the city lacks it)."""
        from calliper_pipeline.evaluation.data import LabelledPoints

        d = self.luc if task == "luc" else self.sdm
        if d is None:
            return None
        return LabelledPoints(
            ids=np.arange(len(d["x_m"])),
            x_m=d["x_m"],
            y_m=d["y_m"],
            lon=d["lon"],
            lat=d["lat"],
            targets=d["targets"],
            class_names=tuple(str(c) for c in d["class_names"]),
            task=task,
        )


def save_bundle(path: Path, b: Bundle) -> None:
    arrays: dict[str, np.ndarray] = {
        "spec_json": np.array(b.spec_json),
        "coords": b.coords,
        "text_index": b.text_index,
        "text_table": b.text_table,
    }
    for task, d in (("luc", b.luc), ("sdm", b.sdm)):
        if d is not None:
            for k, v in d.items():
                arrays[f"{task}.{k}"] = np.asarray(v)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)


def load_bundle(path: Path) -> Bundle:
    with np.load(path, allow_pickle=False) as z:
        tasks: dict[str, dict[str, np.ndarray] | None] = {"luc": None, "sdm": None}
        for task in tasks:
            keys = [k for k in z.files if k.startswith(task + ".")]
            if keys:
                tasks[task] = {k.split(".", 1)[1]: z[k] for k in keys}
        return Bundle(
            spec_json=str(z["spec_json"]),
            coords=z["coords"],
            text_index=z["text_index"],
            text_table=z["text_table"],
            luc=tasks["luc"],
            sdm=tasks["sdm"],
        )


def _points_dict(p) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    return {
        "x_m": p.x_m,
        "y_m": p.y_m,
        "lon": p.lon,
        "lat": p.lat,
        "targets": p.targets,
        "class_names": np.array([str(c) for c in p.class_names]),
    }


def london_bundle(
    path: Path = LONDON_BUNDLE, text_encoder: str = "minilm", refresh: bool = False
) -> Bundle:
    """London's inputs, built once (ingest + embed into the bench store), then read from disk."""
    if path.exists() and not refresh:
        return load_bundle(path)
    from calliper_pipeline.cities.spec import get_city
    from calliper_pipeline.config import RunConfig
    from calliper_pipeline.settings import from_env
    from calliper_pipeline.steps import embed as embedding
    from calliper_pipeline.steps import ingest as ingestion
    from calliper_pipeline.steps.assess import evaluation_sets
    from calliper_pipeline.store.city_store import for_home
    from calliper_pipeline.store.db import connect
    from calliper_pipeline.text.encoders import build_text_encoder
    from calliper_pipeline.training.inputs import training_inputs

    s = from_env()
    city = get_city("london")
    con = connect(for_home(BENCH_HOME).path_for(city.key))
    try:
        log("bench data: ingesting London into the bench store")
        ingestion.ingest(con, city, s.data_root)
        enc = build_text_encoder(text_encoder)
        embedding.embed(con, city, enc)
        inputs = training_inputs(con, city, s.data_root, enc.encoder_id, RunConfig())
    finally:
        con.close()
    sets = evaluation_sets(city, s.data_root, inputs.spec.metric_epsg)
    bundle = Bundle(
        spec_json=json.dumps(inputs.spec.to_dict()),
        coords=inputs.coords,
        text_index=inputs.text_index,
        text_table=inputs.text_table,
        luc=_points_dict(sets.landuse) if sets.landuse is not None else None,
        sdm=_points_dict(sets.socioeconomic) if sets.socioeconomic is not None else None,
    )
    save_bundle(path, bundle)
    log(f"bench data: wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return bundle


def synthetic_training_arrays(
    n: int, n_texts: int = 69, seed: int = 0, text_dim: int = 384
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coords, text_index, text_table) of ``n`` synthetic POIs within ~25 km of the centre.

    For training-scaling runs only (no ingest): clustered points, ``n_texts`` random unit
    vectors as texts, each cluster preferring a few texts, so the loss has something to learn.
    """
    rng = np.random.default_rng(seed)
    n_clusters = 200
    centres = rng.uniform(-20_000, 20_000, (n_clusters, 2))
    which = rng.integers(0, n_clusters, n)
    coords = (centres[which] + rng.normal(0, 800, (n, 2))).astype(np.float32)
    prefer = rng.integers(0, n_texts, (n_clusters, 3))
    own = rng.random(n) < 0.7
    text_index = np.where(
        own, prefer[which, rng.integers(0, 3, n)], rng.integers(0, n_texts, n)
    ).astype(np.int64)
    table = rng.normal(size=(n_texts, text_dim)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    return coords, text_index, table


def london_texts(variant: str = "calliper_plus") -> list[str]:
    """One description per London POI for ``variant`` (from the bench store; cached as JSON)."""
    path = BENCH_HOME / f"london_texts_{variant}.json"
    if path.exists():
        return list(json.loads(path.read_text()))
    from calliper_pipeline.cities.spec import get_city
    from calliper_pipeline.config import DescriptionConfig
    from calliper_pipeline.ingest.descriptions import describe_frame
    from calliper_pipeline.store.city_store import for_home
    from calliper_pipeline.store.db import connect
    from calliper_pipeline.store.pois import read_city_pois

    city = get_city("london")
    for attempt in range(2):
        if attempt:
            london_bundle(refresh=True)  # (re)ingests London into the bench store
        con = connect(for_home(BENCH_HOME).path_for(city.key))
        try:
            pois = read_city_pois(con, city.key)
        finally:
            con.close()
        if not pois.empty:
            break
    cfg = DescriptionConfig(variant=variant)  # type: ignore[arg-type]
    texts = [str(t) for t in describe_frame(pois, city, cfg).tolist()]
    path.write_text(json.dumps(texts))
    return texts


if __name__ == "__main__":  # python -m bench.data: build (or refresh) the London bundle
    import sys

    b = london_bundle(refresh="--refresh" in sys.argv)
    print(f"{LONDON_BUNDLE}: {len(b.coords):,} POIs, {b.text_table.shape[0]} texts")
