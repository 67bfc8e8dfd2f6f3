"""What counts as a number for values that crossed a file or the network."""

import math

import pytest

from engine.errors import InvalidInput
from engine.validate import finite_number


@pytest.mark.parametrize("value", [True, "3", None, [1], math.nan, math.inf, -math.inf, 10**400])
def test_non_numbers_and_non_finite_values_are_refused_naming_the_field(value):
    with pytest.raises(InvalidInput) as info:
        finite_number(value, "peers[2].free_vram_gb")
    assert info.value.field == "peers[2].free_vram_gb" and info.value.value is value


def test_bounds_inclusive_and_strict():
    assert finite_number(0, "x", minimum=0) == 0.0
    with pytest.raises(InvalidInput, match="> 0"):
        finite_number(0, "x", minimum=0, above_minimum=True)
    with pytest.raises(InvalidInput, match="<= 90"):
        finite_number(90.5, "lat", minimum=-90, maximum=90)
    assert finite_number(-90, "lat", minimum=-90, maximum=90) == -90.0


def test_integers_stay_integers_and_fractions_are_refused():
    assert finite_number(4.0, "n", integer=True) == 4 and isinstance(finite_number(4.0, "n", integer=True), int)
    with pytest.raises(InvalidInput, match="integer"):
        finite_number(4.5, "n", integer=True)
