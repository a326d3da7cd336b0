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
