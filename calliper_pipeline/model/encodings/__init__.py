"""Location encoders: a positional encoding (by name) followed by a network (by name).

Input convention: ``"metric"`` encodings (grid, theory, direct) take *centred* metres in the
city's metric CRS, ``(x_m - centre_x, y_m - centre_y)``, float32 (float64 also works); the centre
is given as float64 ``centre_m`` when building. ``"wgs84"`` encodings (spherec, spherec+, spherem,
spherem+, sphericalharmonics, wrap) take ``(lon, lat)`` in degrees.

Importing this package registers every encoding and network.
"""

from calliper_pipeline.model.encodings import (  # noqa: F401  (imported to register)
    direct,
    grid,
    networks,
    sphere2vec,
    spherical_harmonics,
    theory,
    wrap,
)
from calliper_pipeline.model.encodings.base import (
    NETWORK_REGISTRY,
    PE_REGISTRY,
    InputSpace,
    Network,
    PositionalEncoding,
    register_network,
    register_pe,
)
from calliper_pipeline.model.encodings.encoder import (
    LocationEncoder,
    build_location_encoder,
    build_network,
    build_positional_encoding,
)

__all__ = [
    "NETWORK_REGISTRY",
    "PE_REGISTRY",
    "InputSpace",
    "LocationEncoder",
    "Network",
    "PositionalEncoding",
    "build_location_encoder",
    "build_network",
    "build_positional_encoding",
    "register_network",
    "register_pe",
]
