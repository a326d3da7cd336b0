"""Names shared across the library: tables, columns, CRS codes, defaults.

Keeping them in one place means the DuckDB schema, the Dagster assets and the MLflow model
agree on spelling. Coordinates carry their unit in the name: ``lon``/``lat`` are WGS84 degrees
(EPSG:4326); ``x_m``/``y_m`` are metres in the city's metric CRS.
"""

from __future__ import annotations

from typing import Final

WGS84_EPSG: Final = 4326
BRITISH_NATIONAL_GRID_EPSG: Final = 27700

# DuckDB tables
POIS_TABLE: Final = "pois"
QUARANTINE_TABLE: Final = "pois_quarantine"
INGEST_LOG_TABLE: Final = "ingest_log"
TEXT_EMBEDDINGS_TABLE: Final = "text_embeddings"
EVALUATION_TABLE: Final = "evaluation_metrics"

# Columns of the normalised POI table (one row per POI, keyed by (city, poi_id))
COL_CITY: Final = "city"
COL_POI_ID: Final = "poi_id"
COL_NAME: Final = "name"
COL_CATEGORY: Final = "category"
COL_GROUP: Final = "category_group"
COL_DESCRIPTION: Final = "description"
COL_TEXT_HASH: Final = "text_hash"
COL_LON: Final = "lon"
COL_LAT: Final = "lat"
COL_X: Final = "x_m"
COL_Y: Final = "y_m"
COL_SNAPSHOT_HASH: Final = "snapshot_hash"
COL_SOURCE_ROW: Final = "source_row"
COL_SOURCE: Final = "source"  # the POI source's name (a city may merge several)

POI_COLUMNS: Final = (
    COL_CITY,
    COL_POI_ID,
    COL_NAME,
    COL_CATEGORY,
    COL_GROUP,
    COL_DESCRIPTION,
    COL_TEXT_HASH,
    COL_LON,
    COL_LAT,
    COL_X,
    COL_Y,
    COL_SOURCE_ROW,
    COL_SNAPSHOT_HASH,
    COL_SOURCE,
)

# Text encoders
MINILM_ENCODER_ID: Final = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_DIM: Final = 384

# Paper defaults
PAPER_EMBED_DIM: Final = 128
PAPER_SEEDS: Final = (42, 24, 7, 0, 100)

# The label-free champion gate (cities without evaluation labels; tracking/label_free.py):
# how much worse than the champion a candidate may be on its held-out POIs and still be promoted.
HELDOUT_LOSS_TOLERANCE: Final = 0.02  # validation InfoNCE, nats
HELDOUT_RECALL_TOLERANCE: Final = 0.01  # text-to-location recall@1% of cells, fraction of POIs
