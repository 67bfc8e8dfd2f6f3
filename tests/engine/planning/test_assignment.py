import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.planning.assignment import allocate_layers_proportionally


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=12), st.data())
def test_allocation_sums_and_respects_each_capacity(capacities, data):
    total = data.draw(st.integers(len(capacities), sum(capacities)))
    counts = allocate_layers_proportionally(total, capacities)
    assert sum(counts) == total
    assert all(1 <= c <= cap for c, cap in zip(counts, capacities, strict=True))


def test_allocation_is_proportional_to_spare_capacity():
    assert allocate_layers_proportionally(32, [16, 16]) == [16, 16]
    assert allocate_layers_proportionally(10, [10, 10, 10]) == [4, 3, 3]   # ties to the first
    assert allocate_layers_proportionally(22, [31, 11]) == [16, 6]   # 20 spread 30:10
    assert allocate_layers_proportionally(3, [1, 1, 1]) == [1, 1, 1]
    assert allocate_layers_proportionally(5, [5]) == [5]


@pytest.mark.parametrize(("total", "capacities", "message"), [
    (0, [4], "total_layers=0"),
    (True, [4], "total_layers=True"),
    (4, [], r"capacities=\[\]"),
    (4, [2, 0], r"capacities\[1\]=0"),
    (4, [2, 1.5], r"capacities\[1\]=1.5"),
    (2, [1, 1, 1], "3 stages for 2 layers"),
    (9, [4, 4], "sum to 8 < total_layers=9"),
])
def test_allocation_rejects_bad_input_precisely(total, capacities, message):
    with pytest.raises(ValueError, match=message):
        allocate_layers_proportionally(total, capacities)
