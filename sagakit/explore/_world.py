"""The tracked world: a mapping of the state sagas act on that knows who read and wrote what.

Outside a concurrent exploration a :class:`World` is a plain mapping (one context-variable
lookup per access more than a dict). Inside one, the scheduler marks the action in flight (a
run's step or compensation) in a context variable, and every access to a world records, in that
action's :class:`Tracker`, the key, the value read or written, and the run, step, phase and
attempt. Reads of mutable values are snapshotted, so that a value changed in place
(``world["orders"].append(...)``) counts as a write when the action ends.
"""

from __future__ import annotations

import contextvars
import copy
import datetime as dt
import decimal
import enum
import fractions
import uuid
from collections.abc import Hashable, Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from sagakit.context import WorkflowContext

__all__ = ["ABSENT", "KEYS", "Access", "Footprint", "Tracker", "World", "tracked", "tracking"]


class _Marker:
    """A named stand-in: :data:`ABSENT` and :data:`KEYS`."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self) -> str:
        return self.name.strip("<>").upper()

    def __deepcopy__(self, memo: dict[int, Any]) -> _Marker:
        return self


#: The value of a read of a missing key, and of a deletion.
ABSENT: Any = _Marker("<absent>")
#: The pseudo-key of a world's set of keys: iterating or sizing a world reads it, adding or
#: deleting a key writes it.
KEYS: Any = _Marker("<keys>")

_IMMUTABLE = (
    type(None), bool, int, float, complex, str, bytes, range, decimal.Decimal, fractions.Fraction, dt.date,
    dt.time, dt.timedelta, dt.timezone, uuid.UUID, enum.Enum, _Marker,
)


def frozen(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` cannot change in place (so reading it needs no snapshot)."""
    if isinstance(value, _IMMUTABLE):
        return True
    if isinstance(value, tuple | frozenset) and depth < 8:
        return all(frozen(item, depth + 1) for item in value)
    return False


def snapshot(value: Any) -> Any:
    """``value`` as it is now: itself when it cannot change, else a deep copy (or its repr
    when it cannot be copied)."""
    if frozen(value):
        return value
    try:
        return copy.deepcopy(value)
    except Exception:
        return _Uncopyable(repr(value))


class _Uncopyable:
    """What a snapshot holds of a value that could not be copied: its repr, never equal."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return self.text


class Access(NamedTuple):
    """One read or write of a world during a concurrent exploration.

    Attributes:
        action: the position of the action in its interleaving (0 for the first).
        run: the run's number in the exploration.
        step: the step whose action or compensation it was.
        phase: ``"forward"`` (the step's action) or ``"compensate"``.
        attempt: the attempt of that action (retries count up from 1).
        kind: ``"read"`` or ``"write"``.
        key: the world key (:data:`KEYS` for the set of keys).
        value: the value read or written, as it was then (:data:`ABSENT` for a missing key or
            a deletion).
        world: which world (``0`` for the exploration's, then others in order of first use).
    """

    action: int
    run: int
    step: str
    phase: str
    attempt: int
    kind: Literal["read", "write"]
    key: Any
    value: Any
    world: int = 0


class Footprint:
    """What one action read and wrote: ``(world, key)`` pairs, for conflicts between actions."""

    __slots__ = ("reads", "writes")

    def __init__(self, reads: frozenset[tuple[int, Any]] = frozenset(),
                 writes: frozenset[tuple[int, Any]] = frozenset()) -> None:
        self.reads = reads
        self.writes = writes

    def conflicts(self, other: Footprint) -> bool:
        """Whether the two actions touch a key that one of them writes.

        Adding two different keys both write a world's set of keys (:data:`KEYS`), yet in
        either order the set ends the same: that pair alone is no conflict; reading the set
        (iterating) and changing it is.
        """
        mine, theirs = self.writes, other.writes
        if mine and not mine.isdisjoint(other.reads):
            return True
        if theirs and not theirs.isdisjoint(self.reads):
            return True
        if mine and theirs:
            common = mine & theirs
            return any(key is not KEYS for _, key in common)
        return False

    def __repr__(self) -> str:
        return f"Footprint(reads={sorted(map(repr, self.reads))}, writes={sorted(map(repr, self.writes))})"


EMPTY_FOOTPRINT = Footprint()


class Tracker:
    """The record of the action in flight: every access to any world, until :meth:`close`.

    Args:
        position: the action's position in its interleaving.
        run: the run's number.
        step: the step's name.
        phase: ``"forward"`` or ``"compensate"``.
        context: the step's context (its ``attempt`` is read at each access).
        log: the interleaving's access log, appended to.
        worlds: the interleaving's worlds, numbered in order of first use (shared).
    """

    __slots__ = ("_reads", "_writes", "context", "log", "phase", "position", "run", "status", "step", "watched",
                 "worlds")

    def __init__(self, position: int, run: int, step: str, phase: str, context: WorkflowContext | None,
                 log: list[Access], worlds: dict[int, tuple[int, World]]) -> None:
        self.position = position
        self.run = run
        self.step = step
        self.phase = phase
        self.context = context
        self.log = log
        self.worlds = worlds
        self.status = "succeeded"
        self._reads: set[tuple[int, Any]] = set()
        self._writes: set[tuple[int, Any]] = set()
        # Mutable values read, by (world, key): the value and its snapshot at the first read.
        self.watched: dict[tuple[int, Any], tuple[World, Any, Any]] = {}

    def _number(self, world: World) -> int:
        known = self.worlds.get(id(world))
        if known is None:
            known = self.worlds[id(world)] = (len(self.worlds), world)
        return known[0]

    def _attempt(self) -> int:
        context = self.context
        return max(context.attempt, 1) if context is not None else 1

    def read(self, world: World, key: Any, value: Any) -> None:
        number = self._number(world)
        shown = value
        if not frozen(value):
            shown = snapshot(value)
            if (number, key) not in self.watched:
                self.watched[(number, key)] = (world, value, shown)
        self._reads.add((number, key))
        self.log.append(Access(self.position, self.run, self.step, self.phase, self._attempt(), "read", key, shown,
                               number))

    def write(self, world: World, key: Any, value: Any) -> None:
        number = self._number(world)
        self.watched.pop((number, key), None)  # replaced, not changed in place
        self._writes.add((number, key))
        self.log.append(Access(self.position, self.run, self.step, self.phase, self._attempt(), "write", key,
                               snapshot(value), number))

    def close(self) -> Footprint:
        """End the action: values read and changed in place since count as written now."""
        for (_number, key), (world, value, before) in list(self.watched.items()):
            now = world._data.get(key, ABSENT)
            if now is not value:
                continue  # the key was rebound meanwhile (through another world handle): not ours to judge
            try:
                changed = bool(value != before)
            except Exception:
                changed = True
            if changed:
                self.write(world, key, value)
        self.watched.clear()
        return Footprint(frozenset(self._reads), frozenset(self._writes))


_TRACKER: contextvars.ContextVar[Tracker | None] = contextvars.ContextVar("sagakit_world_tracker", default=None)


def tracking(tracker: Tracker | None) -> contextvars.Token[Tracker | None]:
    """Make ``tracker`` the action in flight in this context; reset with the token."""
    return _TRACKER.set(tracker)


def tracked(token: contextvars.Token[Tracker | None]) -> None:
    """End what :func:`tracking` began."""
    _TRACKER.reset(token)


class World(MutableMapping[Hashable, Any]):
    """A mapping for the state sagas act on, which a concurrent exploration can watch.

    Build it like a dict (``World({"stock": 1})``, ``World(stock=1)``) and return it from the
    exploration's world factory; steps reach it as ``context.world``. Everywhere it behaves
    as a mutable mapping. During :func:`~sagakit.explore.explore_concurrent` every read and
    write (of a key, of the set of keys when iterating or adding one, of a mutable value
    changed in place) is recorded with the run, step or compensation, and attempt that made
    it; that is how the explorer knows which actions conflict and names the anomalies.
    Outside an exploration nothing is recorded.

    Keep the keys fine-grained (``("stock", sku)`` rather than one ``"stock"`` dict for every
    item): two actions conflict when they touch a common key, and actions that do not conflict
    are explored in one order only.
    """

    __slots__ = ("__weakref__", "_data")

    def __init__(self, data: Mapping[Hashable, Any] | Iterable[tuple[Hashable, Any]] = (), /, **values: Any) -> None:
        self._data: dict[Hashable, Any] = dict(data, **values)

    def __getitem__(self, key: Hashable) -> Any:
        tracker = _TRACKER.get()
        if tracker is None:
            return self._data[key]
        try:
            value = self._data[key]
        except KeyError:
            tracker.read(self, key, ABSENT)
            raise
        tracker.read(self, key, value)
        return value

    def __setitem__(self, key: Hashable, value: Any) -> None:
        tracker = _TRACKER.get()
        if tracker is not None:
            if key not in self._data:
                tracker.write(self, KEYS, ABSENT)
            tracker.write(self, key, value)
        self._data[key] = value

    def __delitem__(self, key: Hashable) -> None:
        tracker = _TRACKER.get()
        if tracker is not None:
            if key not in self._data:
                tracker.read(self, key, ABSENT)
            else:
                tracker.write(self, KEYS, ABSENT)
                tracker.write(self, key, ABSENT)
        del self._data[key]

    def __contains__(self, key: object) -> bool:
        tracker = _TRACKER.get()
        if tracker is None:
            return key in self._data
        value = self._data.get(key, ABSENT)  # type: ignore[call-overload]
        tracker.read(self, key, value)
        return value is not ABSENT

    def __iter__(self) -> Iterator[Hashable]:
        tracker = _TRACKER.get()
        keys = list(self._data)
        if tracker is not None:
            tracker.read(self, KEYS, tuple(keys))
        return iter(keys)

    def __len__(self) -> int:
        tracker = _TRACKER.get()
        if tracker is not None:
            tracker.read(self, KEYS, tuple(self._data))
        return len(self._data)

    def to_dict(self) -> dict[Hashable, Any]:
        """A shallow copy of the contents as a plain dict, recording nothing (for display)."""
        return dict(self._data)

    def __copy__(self) -> World:
        return World(self._data)

    def __deepcopy__(self, memo: dict[int, Any]) -> World:
        return World(copy.deepcopy(self._data, memo))

    def __repr__(self) -> str:
        return f"World({self._data!r})"
