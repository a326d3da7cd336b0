"""Training: one MLflow run and one registered model version per materialisation."""

from typing import TYPE_CHECKING, Any

import dagster as dg

from assets.config import TrainingConfig
from assets.embeddings import TEXT_EMBEDDINGS
from assets.errors import one_line_failure
from assets.metadata import (
    PREVIEW,
    fmt,
    latest_materialization_metadata,
    numbers,
    png_markdown,
    preview,
)
from assets.partitions import Cities
from assets.resources import (
    DataLocationResource,
    DuckDBResource,
    MlflowResource,
    TextEncoderResource,
    code_version,
)

if TYPE_CHECKING:
    from calliper_pipeline.tracking.registry import RegisteredVersion

GROUP = "training"
CALLIPER_MODEL = dg.AssetKey("calliper_model")


def build_calliper_model(cities: Cities) -> dg.AssetsDefinition:
    """``calliper_model``: trains the city's encoder; registers ``calliper_<city>`` (candidate)."""

    @dg.asset(
        name=CALLIPER_MODEL.path[-1],
        partitions_def=cities.partitions,
        deps=[TEXT_EMBEDDINGS],
        group_name=GROUP,
        automation_condition=dg.AutomationCondition.eager(),
        kinds={"pytorch", "mlflow"},
        code_version="1",
        description=(
            "The contrastively trained location encoder: an MLflow run in experiment "
            "`calliper` and a registered version of `calliper_<city>` carrying the alias "
            "`candidate`."
        ),
    )
    @one_line_failure
    def calliper_model(
        context: dg.AssetExecutionContext,
        config: TrainingConfig,
        duckdb: DuckDBResource,
        text_encoder: TextEncoderResource,
        data: DataLocationResource,
        mlflow: MlflowResource,
    ) -> dg.MaterializeResult:
        from calliper_pipeline.steps import train as training
        from calliper_pipeline.tracking.registry import model_aliases
        from calliper_pipeline.tracking.runs import absolute_tracking_uri, artifact_url
        from calliper_pipeline.training.inputs import training_inputs

        city = cities.spec(context.partition_key)
        run_cfg = config.run_config()
        encoder_id = text_encoder.encoder().encoder_id
        tracking = mlflow.tracking()
        out_dir = data.output_dir(city.key, "runs", context.run_id)
        explicit = set(config.overrides())  # the rest is sized for the city
        with duckdb.connect(context.partition_key, read_only=True) as con:
            # the reuse check first: it needs the POI count and snapshot hash, not the inputs
            out = None
            if config.reuse:
                out = training.find_reusable(
                    con, city, run_cfg, encoder_id, tracking, out_dir,
                    code_version=code_version(), explicit=explicit, log=context.log.info,
                )  # fmt: skip
            if out is None:
                inputs = training_inputs(
                    con, city, data.data_root_path, encoder_id, run_cfg,
                    cache_dir=data.output_dir(city.key, "cache", "targets"),
                )  # fmt: skip
        if out is None:
            context.log.info(
                f"{city.key}: training on {len(inputs.pois):,} POIs and {len(inputs.texts):,} "
                f"distinct texts on {run_cfg.train.device}"
            )
            out = training.train_and_register(
                inputs,
                city,
                data.data_root_path,
                run_cfg,
                tracking,
                out_dir,
                dagster_run_id=context.run_id,
                code_version=code_version(),
                log=context.log.info,
                # a run killed part-way continues from its last epoch when re-run (same
                # settings and data); anything else starts fresh, and the log says which
                checkpoint_dir=data.output_dir(city.key, "checkpoints"),
                resume="auto",
                reuse=False,  # looked up above
                explicit=explicit,
            )
        v = out.version
        if not out.reused:
            context.log.info(f"registered {v.model_uri} (alias candidate), MLflow run {out.run_id}")
        aliases = tuple(a for a, n in model_aliases(tracking, v.name).items() if n == v.version)
        curve_url = artifact_url(tracking, out.run_id, f"figures/{out.curve_png.name}")
        metadata = _training_metadata(out, config, run_cfg, aliases, curve_url)
        # the absolute URI to paste into mlflow.set_tracking_uri (README, "MLflow and pulling")
        metadata["mlflow_tracking_uri"] = absolute_tracking_uri(tracking.tracking_uri)
        return dg.MaterializeResult(metadata=metadata)

    return calliper_model


def _training_preview(
    out: Any, aliases: tuple[str, ...], curve_url: str | None
) -> dg.MetadataValue:
    v = out.version
    r = out.retrieval
    lines = [
        f"**{v.name} v{v.version}** · aliases: {', '.join(aliases) or 'none'}"
        + (" · reused (nothing changed since it was trained)" if out.reused else ""),
        f"best val loss **{fmt(out.best_val_loss)}** at epoch {out.best_epoch} of "
        f"{len(out.history)} · {fmt(out.seconds_per_epoch)} s/epoch",
        f"retrieval recall@1% **{fmt(r.get('recall_at_1pct'), pct=True)}** · "
        f"@10% **{fmt(r.get('recall_at_10pct'), pct=True)}** · "
        f"median rank {fmt(r.get('median_rank_pct'))} % of cells",
        f"{out.n_train:,} train / {out.n_val:,} val points, {out.n_texts:,} texts",
    ]
    if out.run_url and out.run_url.startswith(("http://", "https://")):
        lines.append(f"[MLflow run]({out.run_url})")
    return preview(lines, ("training curve", curve_url))


def _training_metadata(
    out: Any,
    config: TrainingConfig,
    run_cfg: Any,
    aliases: tuple[str, ...] = (),
    curve_url: str | None = None,
) -> dict[str, Any]:
    """The materialisation's metadata: the preview, the curve, MLflow run and model (with its
    aliases), numbers as numbers."""
    v = out.version
    return {
        PREVIEW: _training_preview(out, aliases, curve_url),
        "training_curve": png_markdown(out.curve_png, "training curve"),
        "mlflow_run": _link(out.run_url),
        "aliases": ", ".join(aliases),
        "model_uri": v.model_uri,
        "model_name": v.name,
        "model_version": v.version,
        # true when an earlier version of the same snapshot, settings and commit was reused
        "reused": out.reused,
        "mlflow_run_id": out.run_id,
        "snapshot_hash": out.snapshot_hash,
        "preset": config.preset,
        "objective": run_cfg.objective.name,
        "description_variant": config.description_variant,
        "sizing": out.sizing or "as configured",
        **numbers(
            {
                "embedding_dim": run_cfg.encoder.embed_dim * run_cfg.objective.heads,
                "epochs_max": (out.run_cfg or run_cfg).train.epochs,
                "batch_size": (out.run_cfg or run_cfg).train.batch_size,
                "best_epoch": out.best_epoch,
                "best_val_loss": out.best_val_loss,
                "epochs_run": len(out.history),
                "seconds_per_epoch": out.seconds_per_epoch,
                "pois_per_second": out.pois_per_second,
                "n_train": out.n_train,
                "n_val": out.n_val,
                "n_texts": out.n_texts,
                **{f"retrieval_{k}": val for k, val in out.retrieval.items()},
                **_heldout_numbers(out.heldout),
            }
        ),
    }


def _heldout_numbers(heldout: Any) -> dict[str, float]:
    """The label-free gate's measures (candidate and champion on the held-out POIs)."""
    if heldout is None:
        return {}
    keys = ("val_loss", "recall_at_1pct", "incumbent_val_loss", "incumbent_recall_at_1pct")
    return {f"heldout_{k}": getattr(heldout, k) for k in keys if getattr(heldout, k) is not None}


def _link(url: str | None) -> dg.MetadataValue:
    """The run's page in the MLflow UI as a link (the resource always knows a UI URL for a
    local store: ``make mlflow-ui``'s); any other note as text."""
    if url and url.startswith(("http://", "https://")):
        return dg.MetadataValue.url(url)
    return dg.MetadataValue.text(url or "")


def trained_version(context: dg.AssetExecutionContext, city_key: str) -> "RegisteredVersion":
    """The exact version the latest ``calliper_model`` materialisation of the city registered.

    Downstream assets load this version (``models:/calliper_<city>/<n>``), never an alias.
    """
    from calliper_pipeline.tracking.registry import RegisteredVersion

    meta = latest_materialization_metadata(context, CALLIPER_MODEL, city_key)
    if not meta or "model_uri" not in meta:
        raise dg.Failure(f"calliper_model[{city_key}] has no registered version: train it first")
    return RegisteredVersion(
        name=str(meta["model_name"]),
        version=str(meta["model_version"]),
        model_uri=str(meta["model_uri"]),
        run_id=str(meta["mlflow_run_id"]) or None,
    )
