import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.geo import pairwise_km, unit_vectors
from engine.planning.ordering import best_cycle, cycle_with_fixed_ends, held_karp_cycle, tour_length
from engine.planning.tour_heuristics import heuristic_cycle


def random_points(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.degrees(np.arcsin(rng.uniform(-0.9, 0.95, n))), rng.uniform(-180, 180, n)


def brute_force_length(dist: np.ndarray) -> float:
    n = dist.shape[0]
    return min(tour_length(dist, (0,) + perm) for perm in itertools.permutations(range(1, n)))


def assert_is_tour(tour, n):
    assert tour[0] == 0
    assert sorted(tour) == list(range(n))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 8))
def test_held_karp_is_optimal_against_brute_force(seed, n):
    dist = pairwise_km(*random_points(seed, n))
    tour = held_karp_cycle(dist)
    assert_is_tour(tour, n)
    assert tour_length(dist, tour) == pytest.approx(brute_force_length(dist), rel=1e-12)


def test_best_cycle_is_exact_up_to_twelve_stages():
    dist = pairwise_km(*random_points(7, 13))
    tour = best_cycle(dist)
    assert_is_tour(tour, 13)
    assert tour_length(dist, tour) == pytest.approx(tour_length(dist, held_karp_cycle(dist)))


@pytest.mark.parametrize("seed", range(6))
def test_heuristic_is_within_two_percent_of_held_karp_on_ten_to_twelve_stages(seed):
    n = 11 + seed % 3      # ingress + 10..12 stages
    dist = pairwise_km(*random_points(100 + seed, n))
    exact = tour_length(dist, held_karp_cycle(dist))
    tour = heuristic_cycle(dist)
    assert_is_tour(tour, n)
    assert tour_length(dist, tour) <= exact * 1.02


def test_fixed_ends_are_kept_and_optimal_among_such_tours():
    dist = pairwise_km(*random_points(11, 7))
    tour = cycle_with_fixed_ends(dist, 3, 5)
    assert tour[0] == 0 and tour[1] == 3 and tour[-1] == 5
    best = min(tour_length(dist, (0, 3) + perm + (5,))
               for perm in itertools.permutations([1, 2, 4, 6]))
    assert tour_length(dist, tour) == pytest.approx(best)


def test_fixed_ends_with_the_heuristic_on_many_stages():
    lats, lons = random_points(12, 40)
    dist = pairwise_km(lats, lons)
    tour = cycle_with_fixed_ends(dist, 17, 4, unit_vectors(lats, lons))
    assert_is_tour(tour, 40)
    assert tour[1] == 17 and tour[-1] == 4
    free = tour_length(dist, best_cycle(dist))
    assert tour_length(dist, tour) >= free - 1e-6


def test_heuristic_is_deterministic():
    dist = pairwise_km(*random_points(5, 60))
    assert heuristic_cycle(dist) == heuristic_cycle(dist)


def test_clustered_heuristic_on_a_large_tour_is_valid_and_reasonable():
    lats, lons = random_points(9, 520)
    dist = pairwise_km(lats, lons)
    tour = heuristic_cycle(dist, unit_vectors(lats, lons))
    assert_is_tour(tour, 520)
    # Nearest neighbour alone is typically ~25 % above optimal; the clustered tour must beat it.
    from engine.planning.tour_heuristics import nearest_neighbour_cycle
    assert tour_length(dist, tour) < tour_length(dist, nearest_neighbour_cycle(dist))


def test_tiny_tours():
    assert best_cycle(np.zeros((1, 1))) == [0]
    assert best_cycle(pairwise_km(np.array([0.0, 1.0]), np.array([0.0, 1.0]))) == [0, 1]
    assert tour_length(np.zeros((1, 1)), [0]) == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_iterated_local_search_never_lengthens_and_keeps_every_node(seed):
    from engine.planning.tour_heuristics import nearest_neighbour_cycle
    from engine.planning.tour_ils import iterated_local_search
    n = 20 + 25 * seed
    dist = pairwise_km(*random_points(300 + seed, n))
    start = nearest_neighbour_cycle(dist)
    for span in (8, 1000):
        improved = iterated_local_search(dist, start, kicks=100, span=span)
        assert sorted(improved.tolist()) == list(range(n))
        assert tour_length(dist, improved) <= tour_length(dist, start) + 1e-6
