"""The embedding step: every text a city's training runs need, embedded once and cached.

Called by the ``text_embeddings`` asset and ``calliper embed-texts``.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.config import EMPTY_TEXT, DescriptionConfig
from calliper_pipeline.ingest.descriptions import describe_frame
from calliper_pipeline.progress import LogFn
from calliper_pipeline.steps.ingest import load_pois
from calliper_pipeline.text.cache import EmbedReport, embed_texts_cached
from calliper_pipeline.text.encoders import TextEncoder


def city_texts(pois: pd.DataFrame, city: CitySpec, desc_cfg: DescriptionConfig) -> pd.Series:
    """The training text of every POI for a description variant (CaLLiPer or CaLLiPer+)."""
    return describe_frame(pois, city, desc_cfg)


def embed(
    con: duckdb.DuckDBPyConnection,
    city: CitySpec,
    encoder: TextEncoder,
    desc_cfg: DescriptionConfig | None = None,
    batch_size: int = 256,
    show_progress: bool = False,
    log: LogFn | None = None,
) -> EmbedReport:
    """Embed every distinct text of the city not yet in the shared cache: the descriptions of
    every POI of every source, and the empty-place text that neighbourhood targets and
    background points use (so any objective or source selection finds its texts)."""
    texts = city_texts(load_pois(con, city), city, desc_cfg or DescriptionConfig()).tolist()
    return embed_texts_cached(
        con, encoder, [*texts, EMPTY_TEXT], batch_size=batch_size, show_progress=show_progress,
        log=log,
    )  # fmt: skip
