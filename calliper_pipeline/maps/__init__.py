"""Figures: :mod:`.cartography` (figure sizes, map frame, scale bar, north arrow, legends),
:mod:`.embedding_maps` (cluster, PCA-colour and retrieval maps of cell embeddings) and
:mod:`.charts` (training curve, results table)."""
