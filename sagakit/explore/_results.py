"""Interleavings as plain data, and what one interleaving of concurrent runs came to."""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sagakit._checks import describe
from sagakit.explore._anomaly import Anomaly
from sagakit.explore._interleave import ActionKey, Performed
from sagakit.explore._report import Shown, Timeline, table, timeline
from sagakit.explore._scenario import Schedule, is_transient
from sagakit.explore._search import switches
from sagakit.explore._world import Access
from sagakit.faults import Fault, as_fault
from sagakit.runs import Run

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ConcurrentCounterexample", "Interleaving", "InterleavingResult"]


def _fault_data(fault: Fault) -> str | dict[str, Any]:
    if fault.delay == 0 and fault.probability >= 1.0 and fault.seed is None:
        return fault.mode
    data: dict[str, Any] = {"mode": fault.mode}
    if fault.delay:
        data["delay"] = fault.delay
    if fault.probability < 1.0:
        data["probability"] = fault.probability
    if fault.seed is not None:
        data["seed"] = fault.seed
    return data


def _fault_from(value: object, where: str) -> Fault:
    if isinstance(value, Mapping):
        unknown = set(value) - {"mode", "delay", "probability", "seed"}
        if unknown or "mode" not in value:
            raise ValueError(f"{where}: expected a mode or a mapping with 'mode' (and 'delay', 'probability', "
                             f"'seed'), got {describe(value)}")
        return Fault(value["mode"], value.get("delay", 0.0), value.get("probability", 1.0), value.get("seed"))
    if isinstance(value, str | Fault):
        return as_fault(value)
    raise TypeError(f"{where}: expected a mode string or a fault mapping, got {describe(value)}")


@dataclass(frozen=True, slots=True)
class Interleaving:
    """One interleaving of concurrent runs, as plain data: which saga each run is, its faults,
    and the order in which the actions ran.

    :meth:`to_dict` gives JSON-ready data and :meth:`from_dict` reads it back: together with
    the sagas, their inputs and the world factory, that is all
    :func:`replay_interleaving` needs, in this process or another.

    Attributes:
        sagas: each run's saga name, by run number.
        faults: each run's fault schedule (``(step, Fault)`` pairs in saga order).
        order: the actions in the order they ran: ``(run, step, phase)``, phase
            ``"forward"`` or ``"compensate"``.
    """

    sagas: tuple[str, ...]
    faults: tuple[Schedule, ...]
    order: tuple[ActionKey, ...]

    @property
    def switches(self) -> int:
        """How many times the order passes from one run to another."""
        return switches(self.order)

    @property
    def fault_count(self) -> int:
        return sum(len(schedule) for schedule in self.faults)

    @property
    def label(self) -> str:
        """The faults in one line, by mode (``run 0: charge=fail``; a :func:`transient` fault as
        ``run 1: ship=fail (first attempt)``), or ``no faults``."""
        parts = [
            f"run {run}: " + " + ".join(f"{name}={fault.mode}" + (" (first attempt)" if is_transient(fault) else "")
                                        for name, fault in schedule)
            for run, schedule in enumerate(self.faults) if schedule
        ]
        return "; ".join(parts) or "no faults"

    @property
    def text(self) -> str:
        """The order in one line: ``0:check 1:check 0:reserve 1:undo reserve ...``."""
        return " ".join(f"{run}:{'undo ' if phase == 'compensate' else ''}{step}" for run, step, phase in self.order)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain data (lists, strings, numbers), which :meth:`from_dict` reads back."""
        return {
            "sagas": list(self.sagas),
            "faults": [{name: _fault_data(fault) for name, fault in schedule} for schedule in self.faults],
            "order": [[run, step, phase] for run, step, phase in self.order],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Interleaving:
        """Read :meth:`to_dict`'s data back.

        Raises:
            TypeError, ValueError: the data is not such a mapping (the message says where).
        """
        if not isinstance(data, Mapping) or set(data) != {"sagas", "faults", "order"}:
            raise ValueError(f"Interleaving.from_dict: expected a mapping with 'sagas', 'faults' and 'order', got "
                             f"{describe(data)}")
        sagas, faults, order = data["sagas"], data["faults"], data["order"]
        if isinstance(sagas, str) or not isinstance(sagas, Sequence) or not all(isinstance(n, str) for n in sagas):
            raise TypeError(f"Interleaving.from_dict sagas: expected a list of saga names, got {describe(sagas)}")
        if not isinstance(faults, Sequence) or len(faults) != len(sagas):
            raise ValueError(f"Interleaving.from_dict faults: expected one fault plan per run ({len(sagas)}), got "
                             f"{describe(faults)}")
        schedules = []
        for run, plan in enumerate(faults):
            if not isinstance(plan, Mapping):
                raise TypeError(f"Interleaving.from_dict faults[{run}]: expected a mapping of step to fault, got "
                                f"{describe(plan)}")
            schedules.append(tuple((str(name), _fault_from(value, f"Interleaving.from_dict faults[{run}][{name!r}]"))
                                   for name, value in plan.items()))
        keys: list[ActionKey] = []
        for position, item in enumerate(order if isinstance(order, Sequence) else ()):
            if (isinstance(item, str) or not isinstance(item, Sequence) or len(item) != 3
                    or not isinstance(item[0], int) or isinstance(item[0], bool) or not 0 <= item[0] < len(sagas)
                    or not isinstance(item[1], str) or item[2] not in ("forward", "compensate")):
                raise ValueError(f"Interleaving.from_dict order[{position}]: expected [run, step, 'forward' or "
                                 f"'compensate'] with run from 0 to {len(sagas) - 1}, got {describe(item)}")
            keys.append((item[0], item[1], item[2]))
        if isinstance(order, str) or not isinstance(order, Sequence):
            raise TypeError(f"Interleaving.from_dict order: expected a list of [run, step, phase], got "
                            f"{describe(order)}")
        return cls(tuple(sagas), tuple(schedules), tuple(keys))


@dataclass(frozen=True, slots=True)
class InterleavingResult:
    """One interleaving run and checked: what each action did, the runs, and the verdict.

    Attributes:
        index: its number in the exploration (``-1`` for shrunk and replayed ones).
        kind: ``exhaustive``, ``random``, ``shrunk`` or ``replay``.
        interleaving: the plain data that replays it.
        actions: each action, in order (run, step, phase, status, attempts, footprint).
        accesses: every read and write of the world, in order.
        runs: each run's :class:`~sagakit.Run`, by run number.
        labels: each run's label (``run 0 (order)``).
        holds: ``True`` the invariant held, ``False`` violated, ``None`` no invariant.
        violation: the invariant's message (secrets masked).
        violated_after: with ``check="every action"``, the action after which it failed.
        anomalies: what the reads and writes show, the most likely culprit first.
        world: the world's contents at the end (a plain dict).
    """

    index: int
    kind: str
    interleaving: Interleaving
    actions: tuple[Performed, ...]
    accesses: tuple[Access, ...]
    runs: tuple[Run, ...]
    labels: tuple[str, ...]
    holds: bool | None
    violation: str | None
    violated_after: int | None
    anomalies: tuple[Anomaly, ...]
    world: dict[Any, Any]
    shown: Shown = dataclasses.field(repr=False, compare=False)

    @property
    def violated(self) -> bool:
        return self.holds is False

    @property
    def anomaly(self) -> str | None:
        """The name of the anomaly that explains the violation (``None`` when it holds)."""
        if not self.violated:
            return None
        return self.anomalies[0].kind if self.anomalies else "invariant violated"

    @property
    def explanation(self) -> str | None:
        """The anomaly in a sentence (``None`` when it holds)."""
        if not self.violated:
            return None
        if self.anomalies:
            return self.anomalies[0].explanation
        return "no lost update, dirty read or fuzzy read explains it: " + (self.violation or "")

    @property
    def switches(self) -> int:
        return self.interleaving.switches

    def conflicts(self) -> list[tuple[int, int]]:
        """Pairs of positions of actions of different runs that touch a key one of them writes."""
        pairs = []
        for later in self.actions:
            for earlier in self.actions[: later.position]:
                if earlier.run != later.run and earlier.footprint.conflicts(later.footprint):
                    pairs.append((earlier.position, later.position))
        return pairs

    def table(self) -> pd.DataFrame:
        """The interleaving as a table: one row per action with its run, step or compensation,
        status, the values it read and wrote (redacted), and whether it is part of the anomaly."""
        involved = self.anomalies[0].actions if self.violated and self.anomalies else ()
        return table(self.actions, self.accesses, self.labels, self.shown, involved)

    def timeline(self) -> Timeline:
        """The interleaving drawn: one lane per run, conflicting actions joined, the anomaly's in red."""
        anomaly = self.anomalies[0] if self.violated and self.anomalies else None
        return timeline(self.actions, self.accesses, self.labels, self.shown, anomaly, self.conflicts())

    def to_text(self) -> str:
        lines = [f"{self.interleaving.label}; {len(self.actions)} actions, {self.switches} context switches"]
        if self.violated:
            lines.append(f"{self.anomaly}: {self.explanation}")
            lines.append(f"violation: {self.violation}")
        lines.append(self.timeline().to_text())
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        esc = html.escape
        head = esc(self.interleaving.label)
        if self.violated:
            head += f" — <b>{esc(self.anomaly or '')}</b>: {esc(self.explanation or '')}"
        page = (f'<div class="sagakit-interleaving"><div style="font-family:sans-serif;margin:4px 0">{head}</div>'
                f"{self.timeline().svg}{self.table().to_html(index=False)}</div>")
        return {"text/html": page, "text/plain": self.to_text()}

    def __repr__(self) -> str:
        verdict = f", {self.anomaly}" if self.violated else ""
        return f"<InterleavingResult {self.interleaving.label}: {len(self.actions)} actions{verdict}>"


@dataclass(frozen=True, slots=True)
class ConcurrentCounterexample:
    """A violation between concurrent runs, shrunk to the fewest faults, then the fewest
    context switches, that still violate the invariant.

    Attributes:
        minimal: the shrunk interleaving and its verdict.
        found: the first interleaving of the exploration that violated this way.
        explains: how many violating interleavings it accounts for: the same anomaly on the
            same key between the same steps, whichever runs played the parts (without an
            anomaly, the same faults).
        tried: how many executions shrinking took.
    """

    minimal: InterleavingResult
    found: InterleavingResult
    explains: int
    tried: int

    @property
    def interleaving(self) -> Interleaving:
        return self.minimal.interleaving

    @property
    def anomaly(self) -> str:
        return self.minimal.anomaly or "invariant violated"

    @property
    def explanation(self) -> str:
        return self.minimal.explanation or ""

    @property
    def violation(self) -> str:
        return self.minimal.violation or ""

    def table(self) -> pd.DataFrame:
        return self.minimal.table()

    def timeline(self) -> Timeline:
        return self.minimal.timeline()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return self.minimal._repr_mimebundle_(include, exclude)

    def __repr__(self) -> str:
        return (f"<ConcurrentCounterexample {self.anomaly}: {self.interleaving.label}, "
                f"{self.interleaving.switches} context switches, explains {self.explains}>")
