"""``python -m jobs.gallery --city <key> [--cities FILE] [--out docs/img]``: the README gallery.

Draws the maps of a city's registered model (default ``models:/calliper_<city>@champion``)
from the store under CALLIPER_HOME, exactly as the ``embedding_maps`` asset does (the same
cells, clipped to the POIs' outline for a bounds-only city, the same layers and queries), at
``--width-px`` (default 1000), and writes them as small 256-colour PNGs
``<out>/<city>_<map>.png``: ``cluster_map``, ``pca`` and ``retrieval_<query label>``. Nothing
is logged to MLflow. Prints each file with its size.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from PIL import Image

from calliper_pipeline import settings
from calliper_pipeline.cities.spec import get_city, load_city_registry
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.store.pois import read_city_pois
from calliper_pipeline.text.encoders import build_text_encoder
from calliper_pipeline.tracking.registry import RegisteredVersion
from calliper_pipeline.tracking.runs import (
    TrackingConfig,
    default_tracking,
    require_existing_store,
)

MAX_COLOURS = 256
GALLERY_WIDTH_PX = 1000


def small_png(src: Path, dst: Path, colours: int = MAX_COLOURS) -> int:
    """``src`` re-encoded as a ``colours``-colour palette PNG at ``dst``; returns its bytes."""
    with Image.open(src) as img:
        pal = img.convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    dst.parent.mkdir(parents=True, exist_ok=True)
    pal.save(dst, optimize=True)
    return dst.stat().st_size


def gallery_name(city_key: str, figure: str) -> str:
    """``<city>_cluster_map``, ``<city>_pca``, ``<city>_retrieval_<first words of the query>``."""
    figure = {"pca_colour_map": "pca"}.get(figure, figure)
    match = re.fullmatch(r"retrieval_a_place_of_(.+)", figure)
    if match:  # "retrieval_a_place_of_pubs_and_bars_a_type..." -> "retrieval_pubs_and_bars"
        figure = "retrieval_" + match.group(1).split("_a_type")[0][:24].rstrip("_")
    return f"{city_key}_{figure}"


def resolve_version(tracking: TrackingConfig, model_uri: str) -> RegisteredVersion:
    """``models:/<name>@<alias>`` or ``models:/<name>/<n>`` as the version it names (run_id
    left out: the gallery logs nothing to the version's run)."""
    match = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", model_uri)
    if match is None:
        raise ConfigError(f"{model_uri}: expected models:/<name>@<alias> or models:/<name>/<n>")
    name, alias, number = match.groups()
    if alias is not None:
        number = tracking.client().get_model_version_by_alias(name, alias).version
    return RegisteredVersion(name, str(number), f"models:/{name}/{number}", run_id=None)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobs.gallery", description=__doc__)
    p.add_argument("--city", required=True, help="city key")
    p.add_argument("--cities", type=Path, action="append", default=[], help="extra city TOML")
    p.add_argument("--model", help="model URI (default: models:/calliper_<city>@champion)")
    p.add_argument("--out", type=Path, default=settings.REPO_ROOT / "docs" / "img")
    p.add_argument("--width-px", type=int, default=GALLERY_WIDTH_PX, help="PNG width (pixels)")
    return p


def main(argv: list[str] | None = None) -> int:
    from calliper_pipeline.steps.assess import city_queries, load_registered_model, render_maps

    args = _parser().parse_args(argv)
    s = settings.from_env()
    city = get_city(args.city, load_city_registry((*s.city_files, *args.cities)))
    tracking = default_tracking(s.mlflow_dir)
    require_existing_store(tracking)
    version = resolve_version(tracking, args.model or f"models:/calliper_{city.key}@champion")
    uri = version.model_uri
    with s.store().connect(city.key, read_only=True) as con:
        pois = read_city_pois(con, city.key)
    encoder_id = load_registered_model(tracking, uri).spec.text_encoder_id
    encoder = build_text_encoder("hashing" if encoder_id.startswith("hashing") else "minilm")
    with tempfile.TemporaryDirectory() as tmp:
        out = render_maps(
            city, s.data_root, version, tracking, encoder, Path(tmp), city_queries(city, pois),
            width_px=args.width_px, pois=pois,
        )  # fmt: skip
        for figure, path in out.figures.items():
            if path.suffix == ".png":
                dst = args.out / f"{gallery_name(city.key, figure)}.png"
                print(f"{dst} {small_png(path, dst) / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
