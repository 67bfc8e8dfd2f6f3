"""Checks for values that crossed a file or the network: one place for what "a number" means.

Every rejection is an InvalidInput naming the field and the value. JSON gives Python ints and
floats; a bool is an int in Python but never a number here ("free_vram_gb": true is a mistake).
"""

from __future__ import annotations

import math
from typing import Any

from engine.errors import InvalidInput


def finite_number(value: Any, field: str, *, minimum: float | None = None, maximum: float | None = None,
                  above_minimum: bool = False, integer: bool = False) -> float | int:
    """`value` as a float (an int with `integer`), finite and within the bounds, else InvalidInput.

    `above_minimum` makes the lower bound strict (> minimum instead of >= minimum).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(field, value, f"expected a number, got {type(value).__name__}")
    try:
        as_float = float(value)
    except OverflowError:          # a JSON integer like 10**400
        as_float = math.inf
    if not math.isfinite(as_float):
        raise InvalidInput(field, value, "expected a finite number")
    if integer and not as_float.is_integer():
        raise InvalidInput(field, value, "expected an integer")
    too_low = minimum is not None and (value <= minimum if above_minimum else value < minimum)
    too_high = maximum is not None and value > maximum
    if too_low or too_high:
        low = "" if minimum is None else (f"> {minimum:g}" if above_minimum else f">= {minimum:g}")
        high = "" if maximum is None else f"<= {maximum:g}"
        raise InvalidInput(field, value, "expected a number " + " and ".join(filter(None, (low, high))))
    return int(value) if integer else as_float
