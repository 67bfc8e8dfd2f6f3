import math

import numpy as np
from geopy.distance import great_circle
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.geo import EARTH_RADIUS_KM, distances_from_km, haversine_km, pairwise_km, unit_vectors
from engine.planning.latency import PER_LEG_OVERHEAD_MS, ingress_one_way_ms, one_way_ms

lat = st.floats(-90, 90, allow_nan=False)
lon = st.floats(-180, 180, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(lat, lon, lat, lon)
def test_haversine_agrees_with_geopy_great_circle(lat1, lon1, lat2, lon2):
    expected = great_circle((lat1, lon1), (lat2, lon2)).km
    assert math.isclose(haversine_km(lat1, lon1, lat2, lon2), expected, rel_tol=1e-6, abs_tol=1e-3)


def test_known_distances():
    assert haversine_km(0, 0, 0, 0) == 0
    assert math.isclose(haversine_km(0, 0, 0, 180), math.pi * EARTH_RADIUS_KM, rel_tol=1e-12)
    assert math.isclose(haversine_km(90, 0, -90, 0), math.pi * EARTH_RADIUS_KM, rel_tol=1e-12)
    # Frankfurt - New York is about 6,200 km.
    assert 6150 < haversine_km(50.11, 8.68, 40.71, -74.01) < 6250


def test_pairwise_and_one_to_many_match_the_scalar_formula():
    rng = np.random.default_rng(3)
    lats, lons = rng.uniform(-80, 80, 25), rng.uniform(-180, 180, 25)
    matrix = pairwise_km(lats, lons)
    assert np.array_equal(matrix, matrix.T)
    assert np.all(np.diag(matrix) == 0)
    for i in range(25):
        row = distances_from_km(lats[i], lons[i], lats, lons)
        for j in range(25):
            scalar = haversine_km(lats[i], lons[i], lats[j], lons[j])
            assert math.isclose(matrix[i, j], scalar, rel_tol=1e-12, abs_tol=1e-9)
            assert math.isclose(row[j], scalar, rel_tol=1e-12, abs_tol=1e-9)


def test_date_line_is_short_and_unit_vectors_are_unit():
    assert haversine_km(0, 179.5, 0, -179.5) < 112
    vectors = unit_vectors(np.array([0.0, 90.0, -45.0]), np.array([0.0, 10.0, 180.0]))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


def test_latency_from_distance_and_measured_rtt():
    assert one_way_ms(0.0) == PER_LEG_OVERHEAD_MS
    assert math.isclose(float(one_way_ms(1000.0)), 1000 * 1.5 / 200 + PER_LEG_OVERHEAD_MS)
    ms = ingress_one_way_ms(np.array([1000.0, 1000.0]), np.array([np.nan, 40.0]))
    assert math.isclose(ms[0], float(one_way_ms(1000.0)))
    assert ms[1] == 20.0            # a measured RTT wins, halved
