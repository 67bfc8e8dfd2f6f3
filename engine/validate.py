"""Checks for values that crossed a file or the network: one place for what "a number" means.

Every rejection is an InvalidInput naming the field and the value. JSON gives Python ints and
floats; a bool is an int in Python but never a number here ("free_vram_gb": true is a mistake).
"""

from __future__ import annotations

import json
import math
import unicodedata
from pathlib import Path
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


def read_json_file(path: str | Path, field: str, max_bytes: int) -> Any:
    """Parse the JSON file at `path`, read with a bound (a device file such as /dev/zero reports size
    0 and never ends); every failure is InvalidInput(field, path, ...), never a traceback."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as error:
        raise InvalidInput(field, str(path), f"cannot read: {error.strerror or error}") from None
    if len(data) > max_bytes:
        raise InvalidInput(field, str(path), f"larger than {max_bytes} bytes")
    try:
        # utf-8-sig: Windows editors (Notepad, PowerShell 5 Out-File) start UTF-8 with a BOM.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidInput(field, str(path), f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    return parse_json(text, field, str(path))


def parse_json(text: str, field: str, shown: str) -> Any:
    """json.loads with its other failures named: nesting too deep for the parser, integers over
    Python's 4,300-digit conversion limit."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInput(field, shown, f"not valid JSON: {error.msg} (line {error.lineno}, "
                                         f"column {error.colno})") from None
    except RecursionError:
        raise InvalidInput(field, shown, "not valid JSON here: nested too deeply") from None
    except ValueError as error:                       # an integer literal of thousands of digits
        raise InvalidInput(field, shown, f"not valid JSON here: {str(error).split(';')[0]}") from None


def printable_text(raw: Any, field: str, max_chars: int = 256) -> str:
    """A name or id that is safe to print: a string without control characters (newlines, ANSI
    escapes) or lone surrogates (which no terminal encoding can write), at most `max_chars`."""
    if not isinstance(raw, str):
        raise InvalidInput(field, raw, f"expected a string, got {type(raw).__name__}")
    if len(raw) > max_chars:
        raise InvalidInput(field, raw[:40] + "...", f"longer than {max_chars} characters")
    if raw.isprintable():        # the common case in one C pass: no Cc / Cs (nor other unprintables)
        return raw
    for char in raw:
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidInput(field, raw.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace"),
                               f"contains the control character or lone surrogate {ascii(char)}")
    return raw
