"""How step names appear in markup: CSS class suffixes and element ids, distinct for distinct steps.

Every module of the notebook layer that writes a step name into a class or an id goes through
here, so that the diagram, the view and the Lab agree on them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

__all__ = ["css_name", "css_names", "dot_id"]

_SAFE = re.compile(r"[A-Za-z0-9_-]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def css_name(step: str, digits: int = 6) -> str:
    """The form of a step name used in CSS classes (``sagakit-fault-<step>``).

    A name made of letters, digits, ``-`` and ``_`` is used as it is. Any other name has its
    other characters replaced by ``-`` and a short hash of the whole name appended, so that
    ``a b``, ``a-b`` and ``a.b`` get three different classes.
    """
    if _SAFE.fullmatch(step):
        return step
    digest = hashlib.sha1(step.encode("utf-8", "surrogatepass")).hexdigest()[:digits]
    return f"{_UNSAFE.sub('-', step)}-{digest}"


def css_names(steps: Iterable[str]) -> dict[str, str]:
    """:func:`css_name` of each step, lengthening the hash wherever two would coincide.

    Distinct steps of one saga always get distinct classes: a name that happens to equal
    another's hashed form (``a-b-1f3a2c`` next to ``a b``) pushes the hashed one to a longer
    hash.
    """
    names = list(dict.fromkeys(steps))
    digits = 6
    while True:
        found = {name: css_name(name, digits) for name in names}
        if len(set(found.values())) == len(found) or digits >= 40:
            return found
        digits += 4


def dot_id(element_id: str) -> str:
    """``element_id`` as written into a DOT ``id`` attribute, so that the SVG carries it verbatim.

    Graphviz copies ``&amp;`` and other entities into the SVG unchanged, where a browser then
    decodes them: a step named ``a&amp;b`` would come out as ``a&b``. Escaping every ``&``
    keeps the id the step's own name.
    """
    return element_id.replace("&", "&amp;")
