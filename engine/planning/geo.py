"""Great-circle helpers live below both planning and carbon (engine.geo); re-exported for planning."""

from engine.geo import (  # noqa: F401
    EARTH_RADIUS_KM,
    distances_from_km,
    haversine_km,
    haversine_many_km,
    pairwise_km,
    unit_vectors,
)
