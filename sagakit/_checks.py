"""Argument checks shared by the definition modules, each raising a message that names the
argument and what was expected."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sagakit.events import Observer

__all__ = ["check_bool", "check_observer", "check_observers", "check_positive_int", "check_seconds", "describe"]


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


def check_positive_int(value: object, what: str) -> int:
    """``value`` if it is an int ``>= 1``; a TypeError (not an int) or ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what}: expected an int >= 1, got {describe(value)}")
    if value < 1:
        raise ValueError(f"{what}: expected an int >= 1, got {value}")
    return value


def check_observer(observer: object, what: str) -> None:
    """A TypeError naming ``what`` unless ``observer`` is callable."""
    if not callable(observer):
        raise TypeError(f"{what}: expected a callable taking an Event, got {describe(observer)}")


def check_observers(observers: object, what: str) -> tuple[Observer, ...]:
    """``observers`` as a tuple of callables, or a TypeError naming ``what``."""
    if observers is None or isinstance(observers, str | bytes) or not isinstance(observers, Iterable):
        hint = "; put a single observer in a list" if callable(observers) else ""
        raise TypeError(
            f"{what}: expected an iterable of callables taking an Event (() for none), got {describe(observers)}{hint}"
        )
    checked = tuple(observers)
    for observer in checked:
        check_observer(observer, what)
    return checked  # type: ignore[return-value]
