"""Great-circle distances on the WGS84 mean sphere, scalar and vectorised (numpy)."""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_KM = 6371.0088
"""IUGG mean radius R1 of the WGS84 ellipsoid, (2a + b) / 3; the radius geopy's great_circle uses."""


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees (haversine formula)."""
    return float(haversine_many_km(np.float64(lat1), np.float64(lon1), lat2, lon2))


def haversine_many_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Element-wise haversine distance in km; arguments broadcast like numpy arrays.

    Haversine (Sinnott 1984): d = 2R asin(sqrt(sin²(Δφ/2) + cos φ1 cos φ2 sin²(Δλ/2))).
    """
    p1 = np.radians(lat1)
    p2 = np.radians(lat2)
    dphi = p2 - p1
    dlam = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    h = np.sin(dphi / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlam / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def distances_from_km(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """One-to-many: km from (lat, lon) to every point of `lats`, `lons`."""
    return haversine_many_km(lat, lon, np.asarray(lats, dtype=np.float64),
                             np.asarray(lons, dtype=np.float64))


def pairwise_km(lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Symmetric n×n matrix of great-circle km between all points (zero diagonal)."""
    lats = np.asarray(lats, dtype=np.float64)
    lons = np.asarray(lons, dtype=np.float64)
    matrix = haversine_many_km(lats[:, None], lons[:, None], lats[None, :], lons[None, :])
    # Haversine is symmetric up to rounding; make it exact so tour deltas are consistent.
    matrix = np.minimum(matrix, matrix.T)
    np.fill_diagonal(matrix, 0.0)
    return matrix


def unit_vectors(lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Points as 3D unit vectors (n×3): a metric space where clustering is free of the date line."""
    phi = np.radians(np.asarray(lats, dtype=np.float64))
    lam = np.radians(np.asarray(lons, dtype=np.float64))
    cos_phi = np.cos(phi)
    return np.stack([cos_phi * np.cos(lam), cos_phi * np.sin(lam), np.sin(phi)], axis=-1)


def great_circle_path(lats, lons, points_per_leg: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """The great-circle legs through the given stops, `points_per_leg` points each (spherical linear
    interpolation of unit vectors): (lats, lons) in degrees, lons in [-180, 180]."""
    if points_per_leg < 2:
        raise ValueError(f"points_per_leg={points_per_leg}: expected >= 2")
    stops = unit_vectors(lats, lons)
    if len(stops) < 2:
        return np.asarray(lats, dtype=np.float64), np.asarray(lons, dtype=np.float64)
    start, end = stops[:-1, None, :], stops[1:, None, :]
    omega = np.arccos(np.clip(np.sum(start * end, axis=-1, keepdims=True), -1.0, 1.0))
    t = np.linspace(0.0, 1.0, points_per_leg)[None, :, None]
    sin_omega = np.sin(omega)
    safe = sin_omega > 1e-12                       # one stop twice: the leg is that point
    weight_start = np.where(safe, np.sin((1 - t) * omega) / np.where(safe, sin_omega, 1.0), 1 - t)
    weight_end = np.where(safe, np.sin(t * omega) / np.where(safe, sin_omega, 1.0), t)
    path = (weight_start * start + weight_end * end).reshape(-1, 3)
    path /= np.linalg.norm(path, axis=1, keepdims=True)
    return np.degrees(np.arcsin(np.clip(path[:, 2], -1, 1))), np.degrees(np.arctan2(path[:, 1], path[:, 0]))
