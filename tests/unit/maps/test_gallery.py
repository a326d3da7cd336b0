"""jobs.gallery: README gallery file names and the 256-colour PNG re-encoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from jobs.gallery import gallery_name, small_png


def test_gallery_names() -> None:
    assert gallery_name("croydon", "cluster_map") == "croydon_cluster_map"
    assert gallery_name("croydon", "pca_colour_map") == "croydon_pca"
    figure = "retrieval_a_place_of_pubs_and_bars_a_type_of_eatin"
    assert gallery_name("croydon", figure) == "croydon_retrieval_pubs_and_bars"
    assert gallery_name("x", "retrieval_cafes") == "x_retrieval_cafes"


def test_small_png_keeps_the_size_and_at_most_256_colours(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(120, 200, 3), dtype=np.uint8)  # ~24k distinct colours
    src, dst = tmp_path / "in.png", tmp_path / "out" / "small.png"
    Image.fromarray(pixels).save(src)
    n_bytes = small_png(src, dst)
    assert n_bytes == dst.stat().st_size < src.stat().st_size
    with Image.open(dst) as img:
        assert img.size == (200, 120) and img.mode == "P"
        assert len(img.convert("RGB").getcolors(maxcolors=100_000) or []) <= 256
