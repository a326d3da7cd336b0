"""The asset graph's names, as the Dagster tests expect them (one list, three test modules)."""

# every materialisable asset of a city's chain, downstream of the observed snapshot
CHAIN_ASSETS = frozenset(
    {
        "pois",
        "text_embeddings",
        "calliper_model",
        "land_use_evaluation",
        "socioeconomic_evaluation",
        "calliper_champion",
        "embedding_maps",
        "region_embeddings",
        "baselines",
    }
)

# every asset check a city's chain runs (on the POIs and the text embeddings)
CHAIN_CHECKS = frozenset(
    {
        "pois_not_empty",
        "pois_have_unique_ids",
        "pois_within_city_bounds",
        "pois_have_descriptions",
        "pois_category_mix_stable",
        "pois_not_degenerate",
        "text_embeddings_cover_every_text",
        "text_embeddings_are_finite",
    }
)
