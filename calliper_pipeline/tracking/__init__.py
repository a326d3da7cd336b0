"""MLflow tracking and the model registry: the only code in the library that talks to MLflow.

- :mod:`~calliper_pipeline.tracking.runs`: :class:`~.runs.TrackingConfig`, runs, params,
  metrics, tags, figures and tables.
- :mod:`~calliper_pipeline.tracking.registry`: logging and registering a model, aliases,
  the promotion gate, resolving ``models:/`` URIs.
- :mod:`~calliper_pipeline.tracking.serving`: loading a registered pyfunc and embedding
  points or whole files with it.
- :mod:`~calliper_pipeline.tracking.pyfunc`: the pyfunc wrapper itself. It ships inside every
  registered model (with the model code it needs, see :func:`.registry.inference_modules`), so
  it imports neither the MLflow client code above nor anything outside the model.

This package imports nothing at import time, so loading a registered model (which imports
``calliper_pipeline.tracking.pyfunc``) never pulls in the registry code.
"""
