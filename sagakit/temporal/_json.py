"""What may cross to Temporal: values its JSON data converter carries back unchanged.

Temporal's default converter turns some values into others on the way (a dataclass or a set
arrives as a dict or a list, an int dict key as a string), so a step would receive something
else than it does locally. Inputs and results are therefore checked to be plain JSON values:
``dict`` with ``str`` keys, ``list``, ``tuple`` (which arrives as a list), ``str``, ``int``,
``float``, ``bool`` and ``None``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["json_problem"]

_SCALARS = (str, int, float, bool, type(None))


def json_problem(value: Any, path: str) -> str | None:
    """A sentence naming the first part of ``value`` that is not plain JSON, or ``None``."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, _SCALARS):
            continue
        if isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                if not isinstance(key, str):
                    return (f"{where} has a key {key!r} of type {type(key).__name__}; Temporal's JSON data converter "
                            "only keeps str keys")
                stack.append((child, f"{where}[{key!r}]"))
            continue
        if isinstance(item, list | tuple):
            stack.extend((child, f"{where}[{i}]") for i, child in reversed(list(enumerate(item))))
            continue
        return (f"{where} is a {type(item).__name__}, which Temporal's JSON data converter cannot carry unchanged; "
                "pass JSON-compatible values (dict with str keys, list, str, int, float, bool, None)")
    return None
