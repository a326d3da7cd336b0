"""The MLflow pyfunc wrapper of a trained CaLLiPer location encoder.

Consumers of a registered model never need to know the training CRS::

    import mlflow

    pyfunc = mlflow.pyfunc.load_model("models:/calliper_london@champion")
    emb = pyfunc.predict(pd.DataFrame({"lon": [-0.1276], "lat": [51.5072]}))
    # emb: DataFrame, one float32 column per dimension, "e000" ... "e127", same index as input

Input: a DataFrame with float64 columns ``lon`` and ``lat`` (WGS84 degrees; other columns are
ignored). They are transformed to the model's metric CRS (``ModelSpec.metric_epsg``) with pyproj
(``always_xy``) and embedded with :func:`calliper_pipeline.model.calliper.embed_points`.

Output: one float32 column per embedding dimension named ``e000`` ... ``e127`` (zero-padded to at
least three digits, see :func:`embedding_columns`), the location embedding *before* L2
normalisation (normalise yourself for cosine similarity), indexed like the input.

``params={"as_array": True}`` returns the same values as a float32 ``(n, dim)`` array instead
(MLflow's scoring server then answers a list of rows instead of one ``{"e000": ...}`` object per
point: 27 % less JSON and the fastest response; see docs/benchmarks.md).

Points more than :data:`BOUNDS_MARGIN_M` metres outside the model's ``bounds_m`` (the extent of the
training POIs) raise :class:`InvalidModelInput` naming how many and the first few row labels,
unless ``params={"allow_outside": True}``: the encoder extrapolates poorly far from its training
data (a model saved without ``bounds_m`` checks nothing). NaN, non-finite or out-of-range
coordinates and missing columns raise it too. :class:`InvalidModelInput` is both a
:class:`~calliper_pipeline.errors.ModelInputError` (in-process callers catch that) and an
``MlflowException`` with error code ``INVALID_PARAMETER_VALUE``, so MLflow's scoring server
answers HTTP 400 with the message in the body's ``message`` field. (Through ``mlflow.pyfunc``
the logged signature is enforced first, so a missing ``lon``/``lat`` column surfaces as MLflow's
own schema error.)

Retrieval (text -> place) needs the text side as well: after a registry pull the trained
:class:`~calliper_pipeline.model.calliper.CalliperModel` is exposed as ``.model``::

    model = mlflow.pyfunc.load_model(uri).unwrap_python_model().model
    model.text_projection  # Linear(384 -> 128), model.encode_text(...) etc.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from pyproj import Transformer

from calliper_pipeline.constants import WGS84_EPSG
from calliper_pipeline.errors import ModelInputError
from calliper_pipeline.model.calliper import CalliperModel, ModelSpec, embed_points, load_model

#: Artifact key under which the folder written by ``save_model`` is logged.
MODEL_ARTIFACT_KEY = "model"
#: File name given to ``save_model`` inside that folder (any files it writes beside it travel).
WEIGHTS_FILE = "calliper_model.pt"
#: Input columns (WGS84 degrees).
LON, LAT = "lon", "lat"
#: Tolerance around ``ModelSpec.bounds_m`` before a point counts as outside the city, metres.
BOUNDS_MARGIN_M = 1000.0
#: How many offending row labels an error message lists.
_MAX_LISTED = 5


class InvalidModelInput(ModelInputError, MlflowException):
    """Input the model refuses: a :class:`~calliper_pipeline.errors.ModelInputError` for
    in-process callers and an ``MlflowException`` (``INVALID_PARAMETER_VALUE``: HTTP 400 with
    this message) for MLflow's scoring server."""

    def __init__(self, message: str) -> None:
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)


def embedding_columns(dim: int) -> list[str]:
    """Output column names: ``e000`` ... ``e{dim-1}`` (at least three digits, stable)."""
    width = max(3, len(str(dim - 1)))
    return [f"e{i:0{width}d}" for i in range(dim)]


def _first_labels(index: pd.Index, mask: np.ndarray) -> str:
    labels = [str(x) for x in index[mask][:_MAX_LISTED]]
    more = ", ..." if int(mask.sum()) > _MAX_LISTED else ""
    return "[" + ", ".join(labels) + more + "]"


class CalliperPyfunc(PythonModel):
    """``mlflow.pyfunc`` model: WGS84 ``lon, lat`` -> embedding columns ``e000`` ...

    The instance pickled at logging time is empty; the weights come from the ``"model"``
    artifact (a folder holding what :func:`calliper_pipeline.model.calliper.save_model` wrote;
    a single file for models logged before that) in :meth:`load_context`, always read through
    :func:`calliper_pipeline.model.calliper.load_model` (never ``torch.load`` here), after which
    ``.model`` is the loaded :class:`CalliperModel`.
    """

    def __init__(self) -> None:
        self.model: CalliperModel | None = None
        self._transformer: Transformer | None = None

    # -- loading ---------------------------------------------------------------------------
    def load_context(self, context: Any) -> None:
        path = Path(context.artifacts[MODEL_ARTIFACT_KEY])
        self.bind(load_model(path / WEIGHTS_FILE if path.is_dir() else path))

    def bind(self, model: CalliperModel) -> CalliperPyfunc:
        """Attach an in-memory model (what ``load_context`` does after reading the artifact)."""
        model.eval()
        self.model = model
        # (not cities.geo's cached helper: the shipped code is model/, config, constants, errors
        # and this module only)
        self._transformer = Transformer.from_crs(
            WGS84_EPSG, int(model.spec.metric_epsg), always_xy=True
        )
        return self

    @classmethod
    def from_model(cls, model: CalliperModel) -> CalliperPyfunc:
        """A ready-to-predict wrapper around ``model`` (no MLflow involved)."""
        return cls().bind(model)

    # -- prediction ------------------------------------------------------------------------
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame | np.ndarray:
        """Embed WGS84 points; see the module docstring for the contract."""
        if self.model is None or self._transformer is None:
            raise RuntimeError("CalliperPyfunc.predict called before load_context / bind")
        allow_outside = bool((params or {}).get("allow_outside", False))
        as_array = bool((params or {}).get("as_array", False))
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        index = model_input.index
        lon, lat = _read_lonlat(model_input)
        x_m, y_m = self._transformer.transform(lon, lat)
        x_m = np.asarray(x_m, np.float64)
        y_m = np.asarray(y_m, np.float64)
        spec = self.model.spec
        bad = ~(np.isfinite(x_m) & np.isfinite(y_m))
        if bad.any():
            raise InvalidModelInput(
                f"{int(bad.sum())} of {len(lon)} rows cannot be projected to "
                f"EPSG:{spec.metric_epsg}; first rows: {_first_labels(index, bad)}"
            )
        if spec.bounds_m is not None and not allow_outside:
            _check_inside(spec, x_m, y_m, index)
        emb = np.ascontiguousarray(
            embed_points(self.model, x_m=x_m, y_m=y_m, lon=lon, lat=lat), dtype=np.float32
        )
        if as_array:
            return emb
        return pd.DataFrame(
            emb,
            columns=embedding_columns(emb.shape[1]),
            index=index,
        )


def _read_lonlat(model_input: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``lon``, ``lat`` as float64 arrays; ModelInputError if missing, non-numeric, non-finite
    or outside WGS84 degrees."""
    missing = [c for c in (LON, LAT) if c not in model_input.columns]
    if missing:
        raise InvalidModelInput(
            f"input lacks column(s) {missing}; expected WGS84 degrees in 'lon' and 'lat' "
            f"(got columns {list(model_input.columns)[:10]})"
        )
    index = model_input.index
    try:
        lon = model_input[LON].to_numpy(dtype=np.float64, na_value=np.nan)
        lat = model_input[LAT].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise InvalidModelInput(f"'lon'/'lat' must be numeric: {exc}") from exc
    bad = ~(np.isfinite(lon) & np.isfinite(lat))
    if bad.any():
        raise InvalidModelInput(
            f"{int(bad.sum())} of {len(lon)} rows have a missing or non-finite lon/lat; "
            f"first rows: {_first_labels(index, bad)}"
        )
    bad = (np.abs(lon) > 180.0) | (np.abs(lat) > 90.0)
    if bad.any():
        raise InvalidModelInput(
            f"{int(bad.sum())} of {len(lon)} rows are not valid WGS84 degrees "
            f"(|lon| <= 180, |lat| <= 90); first rows: {_first_labels(index, bad)}"
        )
    return lon, lat


def _check_inside(spec: ModelSpec, x_m: np.ndarray, y_m: np.ndarray, index: pd.Index) -> None:
    """ModelInputError if a point lies more than BOUNDS_MARGIN_M outside ``spec.bounds_m``."""
    assert spec.bounds_m is not None
    min_x, min_y, max_x, max_y = spec.bounds_m
    m = BOUNDS_MARGIN_M
    outside = (x_m < min_x - m) | (x_m > max_x + m) | (y_m < min_y - m) | (y_m > max_y + m)
    if outside.any():
        raise InvalidModelInput(
            f"{int(outside.sum())} of {len(x_m)} points lie outside the "
            f"{spec.city or 'model'}'s bounds (EPSG:{spec.metric_epsg} {spec.bounds_m}, "
            f"+{m:.0f} m margin); first rows: {_first_labels(index, outside)}. "
            'Pass params={"allow_outside": true} (served: the request\'s "params" field; '
            "calliper embed: --allow-outside) to embed them anyway."
        )
