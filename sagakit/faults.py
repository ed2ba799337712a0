"""Failure injection: faults planned per step, acting inside the engine.

A :class:`Fault` says how a step should misbehave; a :class:`FaultPlan` maps step names to
faults. ``saga.faults`` is the plan every run uses unless ``run(..., faults=...)`` passes
another. Injected failures raise :class:`~sagakit.InjectedFault`, and every event they cause
is marked ``injected``.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Literal

from sagakit.errors import FaultError, UnknownStepError

__all__ = ["COMPENSATION_MODES", "FAULT_MODES", "Fault", "FaultLike", "FaultMode", "FaultPlan"]

#: The largest int that converts to a float; larger ones overflow in ``math.isfinite``.
_LARGEST_SECONDS = int(sys.float_info.max)

FaultMode = Literal["none", "fail", "fail_after", "fail_compensation", "cancel", "cancel_compensation"]

#: Every mode a fault can have. ``none`` only adds its delay.
FAULT_MODES: tuple[str, ...] = ("none", "fail", "fail_after", "fail_compensation", "cancel", "cancel_compensation")

#: The modes that act on a step's compensation rather than on its action.
COMPENSATION_MODES: frozenset[str] = frozenset({"fail_compensation", "cancel_compensation"})


_NEVER_DRAWS = random.Random(0)


@dataclass(frozen=True, slots=True)
class Fault:
    """How one step misbehaves.

    Args:
        mode: ``fail`` raises before the action runs; ``fail_after`` lets the action run and
            then reports failure (the lost-response case, where the remote side did act);
            ``fail_compensation`` makes the step's compensation raise instead of running;
            ``cancel`` cancels the whole run (as a caller's timeout or ``task.cancel()``
            would) while the action is in flight: the cancellation reaches the action at its
            first suspension point, or as it returns if it never waits; the completed steps
            are compensated and ``run()`` raises :class:`asyncio.CancelledError`;
            ``cancel_compensation`` cancels the run while the compensation is in flight:
            the rollback is shielded, so it finishes, and then the cancellation propagates;
            ``none`` injects no failure, only the delay.
        delay: seconds of latency added before the action (or, for the compensation modes,
            before the compensation), on every attempt.
        probability: chance that the failure fires on an attempt, from 0 to 1.
        seed: seeds this fault's random draws, for reproducible flakiness.
    """

    mode: FaultMode = "fail"
    delay: float = 0.0
    probability: float = 1.0
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in FAULT_MODES:
            raise FaultError(
                f"unknown fault mode {self.mode!r}; expected one of "
                + ", ".join(repr(mode) for mode in FAULT_MODES)
            )
        if isinstance(self.delay, bool) or not isinstance(self.delay, int | float):
            raise FaultError(f"fault delay must be a number of seconds, got {self.delay!r}")
        if isinstance(self.delay, int) and abs(self.delay) > _LARGEST_SECONDS:
            raise FaultError("fault delay must be a finite number >= 0 seconds, got an int too large for a float")
        if not math.isfinite(self.delay) or self.delay < 0:
            raise FaultError(f"fault delay must be a finite number >= 0 seconds, got {self.delay!r}")
        if isinstance(self.probability, bool) or not isinstance(self.probability, int | float):
            raise FaultError(f"fault probability must be a number, got {self.probability!r}")
        if not 0.0 <= self.probability <= 1.0:
            raise FaultError(f"fault probability must be between 0 and 1, got {self.probability!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise FaultError(f"fault seed must be an int or None, got {type(self.seed).__name__} {self.seed!r}")
        # Only a flaky fault draws; the others share one generator instead of seeding their own.
        object.__setattr__(self, "_rng", random.Random(self.seed) if 0.0 < self.probability < 1.0 else _NEVER_DRAWS)

    @property
    def phase(self) -> str:
        """``"compensate"`` for ``fail_compensation`` and ``cancel_compensation``, else ``"forward"``."""
        return "compensate" if self.mode in COMPENSATION_MODES else "forward"

    def fires(self) -> bool:
        """Draw whether the failure fires on this attempt (always, at probability 1)."""
        if self.mode == "none":
            return False
        probability = self.probability
        if probability >= 1.0:
            return True
        return probability > 0.0 and self._rng.random() < probability


FaultLike = Fault | str


def as_fault(value: FaultLike, *, step: str | None = None) -> Fault:
    """Coerce a mode string into a :class:`Fault`; pass faults through."""
    if isinstance(value, Fault):
        return value
    if isinstance(value, str):
        try:
            return Fault(value)  # type: ignore[arg-type]
        except FaultError as exc:
            where = f" for step {step!r}" if step else ""
            raise FaultError(f"{exc}{where}") from None
    where = f" for step {step!r}" if step else ""
    raise FaultError(
        f"expected a Fault or a mode string{where}, got {type(value).__name__} {value!r}"
    )


def _names(names: Iterable[str], what: str, alternative: str) -> tuple[str, ...]:
    expected = f"expected step names (an iterable of str){' ' + alternative if alternative else ''}"
    if isinstance(names, str | bytes) or not isinstance(names, Iterable):
        raise TypeError(f"FaultPlan {what}: {expected}, got {names!r}")
    names = tuple(names)
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"FaultPlan {what}: {expected}, got {names!r}")
    return names


class FaultPlan(MutableMapping[str, Fault]):
    """A mutable mapping from step names to the faults to inject.

    A plan bound to a saga (``saga.faults``) refuses names the saga does not have, and
    compensation faults (``fail_compensation``, ``cancel_compensation``) on steps that have
    no compensation, since they could never fire; it tells its watchers (such as the Lab's
    controls) about every change. A bare mode string is shorthand for ``Fault(mode)``:
    ``plan["charge_payment"] = "fail_after"``.

    Args:
        faults: the initial faults, a mapping (or pairs) of step names to faults or mode strings.
        steps: the step names the plan may name, or ``None`` for any name.
        saga: the saga's name, for error messages.
        uncompensated: the steps that have no compensation, which refuse compensation faults.

    Raises:
        TypeError: ``steps``, ``saga`` or ``uncompensated`` is of the wrong type.
        FaultError: a fault is invalid or can never fire on its step.
        UnknownStepError: a name is not one of ``steps``.
    """

    __slots__ = ("_faults", "_saga", "_steps", "_uncompensated", "_watchers")

    def __init__(
        self,
        faults: Mapping[str, FaultLike] | Iterable[tuple[str, FaultLike]] | None = None,
        *,
        steps: Iterable[str] | None = None,
        saga: str | None = None,
        uncompensated: Iterable[str] = (),
    ) -> None:
        if steps is not None:
            steps = _names(steps, "steps", "or None")
        if saga is not None and not isinstance(saga, str):
            raise TypeError(f"FaultPlan saga: expected the saga's name (a str) or None, got {saga!r}")
        self._faults: dict[str, Fault] = {}
        self._steps: tuple[str, ...] | None = steps
        self._saga = saga
        self._uncompensated: frozenset[str] = frozenset(_names(uncompensated, "uncompensated", ""))
        self._watchers: list[Callable[[FaultPlan], None]] = []
        if faults is not None:
            if isinstance(faults, str | bytes) or not isinstance(faults, Mapping | Iterable):
                raise FaultError(
                    "fault plan: expected a mapping of step names to faults (or mode strings) or None, got "
                    f"{type(faults).__name__} {faults!r}"
                )
            items = faults.items() if isinstance(faults, Mapping) else faults
            for name, fault in items:
                self._set(name, fault)

    def _check_name(self, name: object) -> str:
        if not isinstance(name, str):
            raise FaultError(f"fault plan keys are step names (str), got {type(name).__name__} {name!r}")
        if self._steps is not None and name not in self._steps:
            raise UnknownStepError(name, self._steps, saga=self._saga)
        return name

    def _set(self, name: str, fault: FaultLike) -> None:
        checked = as_fault(fault, step=self._check_name(name))
        if checked.mode in COMPENSATION_MODES and name in self._uncompensated:
            where = f" of saga {self._saga!r}" if self._saga else ""
            can = [step for step in self._steps or () if step not in self._uncompensated]
            raise FaultError(
                f"fault plan: step {name!r}{where} has no compensation, so a {checked.mode!r} fault "
                "could never fire; plan 'fail' or 'fail_after' to fail the step itself, or the "
                f"compensation fault on a step that has one"
                + (": " + ", ".join(repr(step) for step in can) if can else " (this saga has none)")
            )
        self._faults[name] = checked

    def __getitem__(self, name: str) -> Fault:
        return self._faults[name]

    def __setitem__(self, name: str, fault: FaultLike) -> None:
        self._set(name, fault)
        self._notify()

    def __delitem__(self, name: str) -> None:
        del self._faults[name]
        self._notify()

    def __iter__(self) -> Iterator[str]:
        return iter(self._faults)

    def __len__(self) -> int:
        return len(self._faults)

    def get(self, name: str, default: Fault | None = None) -> Fault | None:  # type: ignore[override]
        return self._faults.get(name, default)

    def clear(self) -> None:
        """Remove every fault (one notification)."""
        if self._faults:
            self._faults.clear()
            self._notify()

    def replace(self, faults: Mapping[str, FaultLike]) -> None:
        """Swap the whole plan for ``faults`` at once (validated first; one notification)."""
        checked = FaultPlan(faults, steps=self._steps, saga=self._saga, uncompensated=self._uncompensated)
        self._faults = dict(checked._faults)
        self._notify()

    def bound(self, steps: Iterable[str], saga: str | None = None, *, uncompensated: Iterable[str] = ()) -> FaultPlan:
        """A copy of this plan checked against ``steps`` (raises on unknown names) and, when
        given, against the steps without a compensation (raises on a compensation fault there)."""
        return FaultPlan(self._faults, steps=steps, saga=saga, uncompensated=uncompensated)

    def watch(self, callback: Callable[[FaultPlan], None]) -> Callable[[], None]:
        """Call ``callback(plan)`` after every change; returns a function that stops it."""
        if not callable(callback):
            raise TypeError(f"FaultPlan.watch callback: expected a callable taking the plan, got {callback!r}")
        self._watchers.append(callback)

        def unwatch() -> None:
            if callback in self._watchers:
                self._watchers.remove(callback)

        return unwatch

    def _notify(self) -> None:
        for callback in list(self._watchers):
            callback(self)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name!r}: {fault!r}" for name, fault in self._faults.items())
        return f"FaultPlan({{{inner}}})"
