"""Space2Vec "grid cell" encoding (Mai et al., ICLR 2020): the paper's default."""

from __future__ import annotations

from calliper_pipeline.model.encodings.base import register_pe
from calliper_pipeline.model.encodings.multiscale import MultiScaleSinusoidal


@register_pe("grid")
class GridEncoding(MultiScaleSinusoidal):
    """Sin and cos of each axis at S geometric wavelengths: ``4 * S`` features (128 for S = 32).

    With raw coordinates ``(x, y)`` in metres and ``lambda_s = min_lambda_m *
    (max_lambda_m / min_lambda_m) ** (s / (S - 1))`` (s = 0..S-1, smallest first), the features
    are, in this order::

        for axis in (x, y):
            for s in 0..S-1:
                sin(axis / lambda_s), cos(axis / lambda_s)

    Input is *centred* metres; the centre is added back as a phase (see
    :mod:`calliper_pipeline.model.encodings.multiscale`), so the output equals the authors' float64
    encoding of the raw coordinates (to ~1e-6 for float32 input within 32 km of the centre).
    """

    directions = ((1.0, 0.0), (0.0, 1.0))
    scale_major = False
