"""Text side: :mod:`.encoders` (frozen sentence encoders) and :mod:`.cache` (their DuckDB cache)."""
