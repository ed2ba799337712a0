"""Naming what went wrong between concurrent runs, from the reads and writes they made.

Three anomalies of sagas without isolation (Richardson, *Microservices Patterns*, 4.3), read
off an interleaving's access log:

* **lost update**: a run reads a key, another run writes it, then the first run writes it on
  the strength of its earlier read: the other run's write is lost;
* **dirty read**: a run reads a value another run wrote in a step that run later compensates:
  it acted on an effect that, in the end, never happened;
* **fuzzy read** (non-repeatable read): a run reads a key twice, in different actions, and
  sees two values, because another run wrote it in between.

A violation none of these explains is ``invariant violated``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sagakit.explore._interleave import Performed
from sagakit.explore._world import KEYS, Access

__all__ = ["ANOMALIES", "Anomaly", "classify"]

#: The anomaly names, in the order they are preferred when several explain one violation.
ANOMALIES: tuple[str, ...] = ("lost update", "dirty read", "fuzzy read", "invariant violated")


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One anomaly found in an interleaving.

    Attributes:
        kind: one of :data:`ANOMALIES`.
        key: the world key it happened on (``None`` for ``invariant violated``).
        runs: the runs involved, the one that suffered it first.
        actions: the positions of the actions involved, in order (the timeline joins them).
        explanation: what happened, in one sentence.
    """

    kind: str
    key: Any
    runs: tuple[int, ...]
    actions: tuple[int, ...]
    explanation: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.explanation}"


def _same(first: Any, second: Any) -> bool:
    try:
        return bool(first == second)
    except Exception:
        return False


def _name(action: Performed) -> str:
    verb = "compensation of" if action.phase == "compensate" else "step"
    return f"run {action.run}'s {verb} {action.step!r}"


def classify(
    actions: Sequence[Performed], accesses: Iterable[Access], invariant_keys: Iterable[Any] = (),
    text: Callable[[Any, Any], str] = lambda value, key: repr(value),
) -> tuple[Anomaly, ...]:
    """Every anomaly the access log shows, the most likely culprit first.

    Anomalies on keys the invariant read come first, then by kind (:data:`ANOMALIES` order),
    then by where they happened. ``text(value, key)`` shows a value in an explanation (through
    a redactor, so that no secret is written there). Empty when the log shows none.
    """
    by_key: dict[tuple[int, Any], list[Access]] = {}
    for access in accesses:
        if access.key is KEYS:
            continue
        by_key.setdefault((access.world, access.key), []).append(access)
    found: list[Anomaly] = []
    for (_, key), log in by_key.items():
        found.extend(_lost_updates(key, log, actions, text))
        found.extend(_dirty_reads(key, log, actions, text))
        found.extend(_fuzzy_reads(key, log, actions, text))
    watched = set()
    for key in invariant_keys:
        with contextlib.suppress(TypeError):
            watched.add(key)

    def rank(anomaly: Anomaly) -> tuple[int, int, int]:
        try:
            seen = anomaly.key in watched
        except TypeError:
            seen = False
        return (0 if seen else 1, ANOMALIES.index(anomaly.kind), anomaly.actions[-1])

    unique: dict[tuple[str, Any, tuple[int, ...]], Anomaly] = {}
    for anomaly in found:
        unique.setdefault((anomaly.kind, repr(anomaly.key), anomaly.actions), anomaly)
    return tuple(sorted(unique.values(), key=rank))


def _lost_updates(key: Any, log: list[Access], actions: Sequence[Performed], text: Callable[[Any, Any], str]) -> list[Anomaly]:
    found = []
    for index, write in enumerate(log):
        if write.kind != "write":
            continue
        run = write.run
        # The writer's latest read of the key before this write, in an earlier action.
        reads = [a for a in log[:index] if a.run == run and a.kind == "read"]
        if not reads or reads[-1].action == write.action:
            continue
        read = reads[-1]
        between = [a for a in log[:index] if a.kind == "write" and a.run != run and a.action > read.action]
        if not between:
            continue
        lost = between[-1]
        found.append(Anomaly(
            "lost update", key, (lost.run, run), (read.action, lost.action, write.action),
            f"{_name(actions[read.action])} read {key!r} = {text(read.value, key)}, then "
            f"{_name(actions[lost.action])} wrote {text(lost.value, key)}, then {_name(actions[write.action])} wrote "
            f"{text(write.value, key)} over it from its stale read: run {lost.run}'s update is lost",
        ))
    return found


def _dirty_reads(key: Any, log: list[Access], actions: Sequence[Performed], text: Callable[[Any, Any], str]) -> list[Anomaly]:
    found = []
    last_write: Access | None = None
    for access in log:
        if access.kind == "write":
            last_write = access
            continue
        if last_write is None or last_write.run == access.run or last_write.phase != "forward":
            continue
        undo = next(
            (a for a in actions[access.action + 1:]
             if a.run == last_write.run and a.step == last_write.step and a.phase == "compensate"),
            None,
        )
        if undo is None:
            continue
        found.append(Anomaly(
            "dirty read", key, (access.run, last_write.run), (last_write.action, access.action, undo.position),
            f"{_name(actions[access.action])} read {key!r} = {text(access.value, key)}, written by "
            f"{_name(actions[last_write.action])}, which run {last_write.run} then compensated: run {access.run} "
            "acted on an effect that was undone",
        ))
    return found


def _fuzzy_reads(key: Any, log: list[Access], actions: Sequence[Performed], text: Callable[[Any, Any], str]) -> list[Anomaly]:
    found = []
    for index, again in enumerate(log):
        if again.kind != "read":
            continue
        earlier = [a for a in log[:index] if a.run == again.run and a.kind == "read" and a.action < again.action]
        if not earlier:
            continue
        first = earlier[-1]
        writes = [a for a in log[:index] if a.kind == "write" and a.run != again.run and a.action > first.action]
        if not writes or _same(first.value, again.value):
            continue
        write = writes[-1]
        found.append(Anomaly(
            "fuzzy read", key, (again.run, write.run), (first.action, write.action, again.action),
            f"{_name(actions[first.action])} read {key!r} = {text(first.value, key)}, {_name(actions[write.action])} "
            f"wrote {text(write.value, key)}, and {_name(actions[again.action])} read it again as {text(again.value, key)}",
        ))
    return found
