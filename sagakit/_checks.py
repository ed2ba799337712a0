"""Argument checks shared by the definition modules, each raising a message that names the
argument and what was expected."""

from __future__ import annotations

import math

__all__ = ["check_bool", "check_seconds", "describe"]


def describe(value: object) -> str:
    """``value`` as an error message shows it: its type and a repr cut to 60 characters."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the real complaint
        text = "<unprintable>"
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def check_seconds(
    value: object, what: str, *, allow_zero: bool = False, error: type[ValueError] = ValueError
) -> float:
    """``value`` as float seconds, finite and ``> 0`` (``>= 0`` with ``allow_zero``).

    Raises:
        TypeError: ``value`` is not a real number (a bool is not one).
        ValueError: (``error``, a subclass) it is negative, zero where that is refused, infinite, NaN, or too large
            for a float (``10**400``).
    """
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what}: expected a number of seconds {bound}, got {describe(value)}")
    try:
        seconds = float(value)
    except OverflowError:
        raise error(f"{what}: expected a finite number of seconds {bound}, got an int too large "
                    "for a float") from None
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise error(f"{what}: expected a finite number of seconds {bound}, got {value!r}")
    return seconds


def check_bool(value: object, what: str) -> bool:
    """``value`` if it is a bool; else a TypeError naming ``what``."""
    if not isinstance(value, bool):
        raise TypeError(f"{what}: expected True or False, got {describe(value)}")
    return value
