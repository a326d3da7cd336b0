"""Space2Vec "theory" encoding (Mai et al., ICLR 2020): three directions 120 degrees apart."""

from __future__ import annotations

import math

from calliper_pipeline.model.encodings.base import register_pe
from calliper_pipeline.model.encodings.multiscale import MultiScaleSinusoidal


@register_pe("theory")
class TheoryEncoding(MultiScaleSinusoidal):
    """Sin and cos of projections on three unit vectors: ``6 * S`` features (192 for S = 32).

    Unit vectors ``u_1 = (1, 0)``, ``u_2 = (-1/2, sqrt(3)/2)``, ``u_3 = (-1/2, -sqrt(3)/2)``
    (0, 120 and 240 degrees); wavelengths ``lambda_s`` (metres) as in the grid encoding. With
    raw coordinates ``p`` in metres the features are, in this order::

        for s in 0..S-1:
            for d in (1, 2, 3):
                sin(u_d . p / lambda_s), cos(u_d . p / lambda_s)

    Input is *centred* metres; the centre is added back as a phase, so the output equals the
    authors' float64 encoding of the raw coordinates.
    """

    directions = ((1.0, 0.0), (-1.0 / 2.0, math.sqrt(3) / 2.0), (-1.0 / 2.0, -math.sqrt(3) / 2.0))
    scale_major = True
