"""A large, realistic synthetic city for scale runs: clustered POIs, hundreds of categories, names.

:func:`write_city` writes, under ``root``:

- ``pois.parquet``: columns ``poi_id, name, category, group, lon, lat`` (WGS84 degrees,
  EPSG:4326). POIs are drawn around ``n_centres`` centres (uniform in a square of
  ``half_extent_m`` metres around lon 10.0 / lat 50.0, whose automatic metric CRS is UTM 32N,
  EPSG:32632) whose sizes are heavy-tailed (Pareto weights, shape 1.2: a few town centres hold
  most POIs) and whose spreads are log-normal (median 600 m); ``background_share`` of the POIs
  are scattered uniformly. Categories: ``n_categories`` names in ``n_groups`` groups
  (:func:`category_table`), drawn with
  Zipf frequencies (exponent 1.1) globally, and each centre favours its own few groups (so a
  location's mix of categories is informative, which is what training learns). About
  ``named_share`` of the POIs carry a name (a word pair plus the category).
- ``<key>.toml``: the city file (``bounds_wgs84`` the POIs' extent plus a margin, no evaluation
  sets: the label-free champion gate applies).

The same seed gives the same file. No label data: it stands in for "bring your own city".

    python -m bench.synthetic_city OUT_DIR [--pois 1000000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

CENTRE_WGS84: Final = (10.0, 50.0)  # lon, lat degrees
WGS84_EPSG: Final = 4326
UTM_EPSG: Final = 32632  # metres; the automatic metric CRS of CENTRE_WGS84
_WORDS_A: Final = (
    "Old", "New", "Royal", "Green", "Golden", "Red", "Little", "Grand", "North", "South",
    "East", "West", "Silver", "Oak", "River", "Park", "Market", "Station", "Church", "Bridge",
)  # fmt: skip
_WORDS_B: Final = (
    "Anchor", "Crown", "Lion", "Star", "Rose", "Mill", "Garden", "Corner", "House", "Lane",
    "Square", "Court", "Gate", "Hill", "Yard", "Well", "Cross", "Bell", "Swan", "Fox",
)  # fmt: skip


_GROUPS: Final = (
    ("Eating and drinking", "restaurant"), ("Retail", "shop"), ("Public transport", "stop"),
    ("Education", "school"), ("Health", "clinic"), ("Sport and recreation", "sports ground"),
    ("Accommodation", "hotel"), ("Entertainment and culture", "venue"),
    ("Financial services", "office"), ("Religion", "place of worship"),
    ("Parking and road services", "car park"), ("Personal services", "salon"),
    ("Construction services", "yard"), ("Manufacturing", "works"), ("Agriculture", "farm"),
    ("Government", "agency"), ("Utilities", "station"), ("Motoring", "garage"),
    ("Animal care", "centre"), ("Community", "hall"),
)  # fmt: skip
_KINDS: Final = (
    "Independent", "Chain", "Family", "Budget", "Luxury", "Community", "Public", "Private",
    "Historic", "Modern", "Mobile", "Specialist", "Small", "Large", "Local",
)  # fmt: skip


def category_table(n_categories: int, n_groups: int) -> pd.DataFrame:
    """``n_categories`` (category, group) rows, category ``i`` in group ``i % n_groups``: e.g.
    "Independent restaurant" in "Eating and drinking" (a numbered suffix past 300)."""
    rows = []
    for i in range(n_categories):
        g, k = i % n_groups, i // n_groups
        group, noun = _GROUPS[g % len(_GROUPS)]
        if g >= len(_GROUPS):
            group = f"{group} {g // len(_GROUPS) + 1}"
        kind = _KINDS[k % len(_KINDS)] + ("" if k < len(_KINDS) else f" {k // len(_KINDS) + 1}")
        rows.append((f"{kind} {noun}" + ("" if g < len(_GROUPS) else f" {g}"), group))
    return pd.DataFrame(rows, columns=["category", "group"])


def generate_pois(
    n_pois: int,
    seed: int = 0,
    n_centres: int = 400,
    n_categories: int = 300,
    n_groups: int = 20,
    half_extent_m: float = 20_000.0,
    background_share: float = 0.1,
    named_share: float = 0.6,
) -> pd.DataFrame:
    """The POI table (see the module docstring); offsets are computed in metres east/north of
    the centre and turned into degrees on a local tangent plane (under 0.1 % error at 20 km)."""
    from pyproj import Transformer

    if n_pois < 1 or n_centres < 1 or n_groups < 1 or n_categories < n_groups:
        raise ValueError("need n_pois, n_centres >= 1 and n_categories >= n_groups >= 1")
    rng = np.random.default_rng(seed)
    cats = category_table(n_categories, n_groups)
    zipf = 1.0 / np.arange(1, n_categories + 1) ** 1.1
    group_of = np.arange(n_categories) % n_groups
    centres = rng.uniform(-half_extent_m, half_extent_m, (n_centres, 2))
    weights = rng.pareto(1.2, n_centres) + 1.0
    spread_m = rng.lognormal(np.log(600.0), 0.5, n_centres)
    favoured = rng.integers(0, n_groups, (n_centres, 3))  # each centre's own groups
    n_bg = round(n_pois * background_share)
    which = rng.choice(n_centres, n_pois - n_bg, p=weights / weights.sum())
    xy = np.concatenate(
        [
            centres[which] + rng.normal(size=(len(which), 2)) * spread_m[which, None],
            rng.uniform(-half_extent_m, half_extent_m, (n_bg, 2)),
        ]
    )
    # category: 70 % from the centre's favoured groups (Zipf within them), else Zipf overall
    cat = rng.choice(n_categories, n_pois, p=zipf / zipf.sum())
    own = np.flatnonzero(rng.random(len(which)) < 0.7)
    own_group = favoured[which[own], rng.integers(0, 3, len(own))]
    for g in range(n_groups):  # vectorised per group
        member = own[own_group == g]
        in_group = np.flatnonzero(group_of == g)
        p = zipf[in_group] / zipf[in_group].sum()
        cat[member] = rng.choice(in_group, len(member), p=p)
    to_wgs84 = Transformer.from_crs(UTM_EPSG, WGS84_EPSG, always_xy=True)
    x0, y0 = Transformer.from_crs(WGS84_EPSG, UTM_EPSG, always_xy=True).transform(*CENTRE_WGS84)
    lon, lat = to_wgs84.transform(xy[:, 0] + x0, xy[:, 1] + y0)
    category = cats["category"].to_numpy()[cat]
    name = pd.Series(
        np.asarray(_WORDS_A)[rng.integers(0, len(_WORDS_A), n_pois)].astype(object)
        + " "
        + np.asarray(_WORDS_B)[rng.integers(0, len(_WORDS_B), n_pois)].astype(object)
        + " "
        + category.astype(object)
    )
    name[rng.random(n_pois) >= named_share] = None
    return pd.DataFrame(
        {
            "poi_id": [f"p{i:07d}" for i in range(n_pois)],
            "name": name,
            "category": category,
            "group": cats["group"].to_numpy()[cat],
            "lon": np.asarray(lon),
            "lat": np.asarray(lat),
        }
    )


def write_city(root: Path, n_pois: int, seed: int = 0, key: str = "scale1m", **kw: object) -> Path:
    """Write ``pois.parquet`` and ``<key>.toml`` under ``root``; returns the TOML's path."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    pois = generate_pois(n_pois, seed, **kw)  # type: ignore[arg-type]
    pois.to_parquet(root / "pois.parquet", index=False)
    margin = 0.01  # degrees around the POIs' extent
    bounds = [
        round(float(pois["lon"].min()) - margin, 4),
        round(float(pois["lat"].min()) - margin, 4),
        round(float(pois["lon"].max()) + margin, 4),
        round(float(pois["lat"].max()) + margin, 4),
    ]
    q = json.dumps
    toml = root / f"{key}.toml"
    toml.write_text(
        f"key = {q(key)}\nname = {q(f'Synthetic {n_pois:,}-POI city (seed {seed})')}\n"
        f"bounds_wgs84 = {bounds!r}  # min_lon, min_lat, max_lon, max_lat (degrees)\n"
        f'attribution = "synthetic data (bench.synthetic_city, seed {seed})"\n\n'
        f'[snapshot]\npath = {q(str(root / "pois.parquet"))}\nformat = "parquet"\n\n'
        '[snapshot.columns]\npoi_id = "poi_id"\nname = "name"\ncategory = "category"\n'
        'group = "group"\nlon = "lon"\nlat = "lat"\n',
        encoding="utf-8",
    )
    return toml


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--pois", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--key", default="scale1m")
    args = ap.parse_args(argv)
    print(write_city(args.out, args.pois, args.seed, args.key))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
