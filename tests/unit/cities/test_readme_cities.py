"""The README's "Bring your own city" examples are valid city files, one per format."""

from __future__ import annotations

import re
from pathlib import Path

from calliper_pipeline.cities.spec import load_city_file
from calliper_pipeline.settings import REPO_ROOT


def _section() -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Bring your own city")
    return text[start : text.index("\n## ", start + 1)]


def test_every_example_city_file_loads(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", _section(), flags=re.S)
    formats = set()
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.toml"
        path.write_text(block, encoding="utf-8")
        city = load_city_file(path)
        suffix = Path(city.snapshot.path).suffix.lstrip(".")
        formats.add(city.snapshot.format or suffix)
    assert formats == {"jsonl", "csv", "geojson", "parquet", "geoparquet", "osm", "osm-geojson"}
