"""The conformance table: scenarios as data, one frozen :class:`Row` each.

A row names a saga shape (a few named steps, see :class:`S` and :class:`P`), what each step
and compensation does (``behave``, see :mod:`conformance.world`), the input, the injected
faults, where a caller interrupts the run, where the crash child is SIGKILLed, and the
outcome the local engine must give (``expect``). :data:`SAGAS` holds one saga per row, built
the same way in every process that needs it (the test process, the crash child, the
in-process Temporal worker), so each backend runs the very same definition.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import sagakit as sk
from conformance import world
from conformance.world import Point

__all__ = ["BACKENDS", "ROWS", "SAGAS", "TEMPORAL", "Expect", "P", "Row", "S", "fresh_faults"]

Backend = Literal["local", "crash", "temporal", "temporal-local"]
#: Every backend a row runs on, in the order the cells are listed.
BACKENDS: tuple[Backend, ...] = ("local", "crash", "temporal", "temporal-local")
TEMPORAL: tuple[Backend, ...] = ("temporal", "temporal-local")


@dataclass(frozen=True, slots=True)
class S:
    """One step of a row's saga.

    Attributes:
        name: the step's name (its action is ``world.action(name, ...)``).
        compensate: whether it has a compensation.
        retry: ``step(retry=...)``: retries after the first attempt (short, jitter-free backoff).
        timeout: ``step(timeout=...)`` in seconds.
        compensate_on_failure: ``step(compensate_on_failure=True)``.
        compensation_retry: wrap the compensation in ``RetryPrimitive(max_retries=...)``.
        plain: a plain ``def`` action (runs on a thread on a Temporal worker).
        seed: wrap the action as the seed's tuple form does: ``retry`` (``RetryPrimitive``, 2
            retries), ``timeout`` (``TimeoutPrimitive``, 0.4 s) or ``fallback``
            (``FallbackPrimitive`` to ``<name>_fallback``); only in ``seed_form`` rows.
        kind: the step kind of issue 22 (``pivot``, ``retriable``, ``readonly``); ``None`` is
            today's compensatable step. Passed to ``sagakit.step(kind=...)`` when given.
    """

    name: str
    compensate: bool = True
    retry: int | None = None
    timeout: float | None = None
    compensate_on_failure: bool = False
    compensation_retry: int | None = None
    plain: bool = False
    seed: Literal["retry", "timeout", "fallback"] | None = None
    kind: str | None = None


@dataclass(frozen=True, slots=True, init=False)
class P:
    """A parallel stage of a row's saga."""

    steps: tuple[S, ...]

    def __init__(self, *steps: S) -> None:
        object.__setattr__(self, "steps", steps)


@dataclass(frozen=True, slots=True)
class Expect:
    """What the local engine's run of a row must be (the other backends must then equal it).

    The steps of one parallel stage are listed sorted, whatever order they ran in (see
    :func:`conformance.drivers.observe`).

    Attributes:
        status: the run's status.
        failed_step: the step blamed for the rollback.
        error: the type name of ``run.error``.
        compensated: the compensations that succeeded, in order.
        standing: the steps whose effect stands in the world at the end, sorted.
        raised: the type name of what ``saga.run`` raised (a cancellation or interruption
            re-raised after the rollback), or ``None``.
        message_has: a text ``run.error``'s message contains.
    """

    status: str
    failed_step: str | None = None
    error: str | None = None
    compensated: tuple[str, ...] = ()
    standing: tuple[str, ...] = ()
    raised: str | None = None
    message_has: str | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """One scenario of the table.

    Attributes:
        name: the row's id, also its saga's name.
        shape: the stages, in order.
        expect: the local engine's run (one per run for rows with several ``runs``).
        behave: what steps (``"b"``) and compensations (``"b:compensate"``) do, see
            :mod:`conformance.world`.
        input: the saga's input.
        faults: ``run(..., faults=...)`` (built fresh for every run: a seeded fault's draws
            start over).
        cancel_at: the caller cancels the run (``task.cancel()``) when it reaches this point,
            on every backend; the crash child is SIGKILLed there instead. Past the pivot the
            call in flight is shielded and goes on (on Temporal, once the workflow's history
            holds the cancellation request, so that the workflow learns of it mid-run).
        timeout_at: the caller's ``asyncio.timeout()`` around the call expires when the call
            reaches one of these points (around ``saga.run`` locally and on Temporal, around
            ``recover()`` on the crash backend).
        kill_at: the crash backend only: SIGKILL the child at this point, or on this event kind
            (through an observer), while the other backends run through. A point in a step's
            forward phase up to the pivot must be where the other backends are interrupted
            (``cancel_at`` or ``timeout_at``): a crash there stands for that interruption. Past
            the pivot it need not be: ``recover()`` carries the run forward to the run the others
            made (the other branches of a parallel stage must be in ``kill_once_recorded``, so
            that the call the crash cut short is the only one).
        kill_once_recorded: before that SIGKILL, wait until the journal holds these steps'
            completions (the writer commits on its own thread: this pins the interleaving).
        runs: how many runs start at once (correlation ids ``<cell>#0`` ... ``#n-1``).
        continue_on_compensation_failure: the saga's option.
        seed_form: build the saga with ``CompensationPrimitive`` tuples, as the seed does.
        regular: steps that stay regular activities on the ``temporal-local`` backend.
        backends: where the row runs (every backend unless a comment says why not).
        xfail: backend -> why that cell fails today (a defect: by number in issue 21, or
            described in full).
        cause_on_record: the crash backend: the journal holds what started the rollback (every
            completion of a parallel stage whose outputs cannot merge), so ``recover()`` fails the
            run exactly as the engine did, with the engine's own error.
        expect_on: backend -> the run that backend must give instead of the local engine's, where
            the backend itself cannot do otherwise (the comment on the row says why).
        temporal_queue: ``nobody`` (no worker polls the task queue) or ``wrong-key`` (the
            worker's payload key differs from the caller's): the run cannot be executed.
    """

    name: str
    shape: tuple[S | P, ...]
    expect: Expect | tuple[Expect, ...]
    behave: Mapping[str, str] = field(default_factory=dict)
    input: Mapping[str, Any] = field(default_factory=lambda: {"order": 7})
    faults: Mapping[str, sk.FaultLike] = field(default_factory=dict)
    cancel_at: Point | None = None
    timeout_at: tuple[Point, ...] = ()
    kill_at: Point | str | None = None
    kill_once_recorded: tuple[str, ...] = ()
    runs: int = 1
    continue_on_compensation_failure: bool = False
    seed_form: bool = False
    regular: tuple[str, ...] = ()
    backends: tuple[Backend, ...] = BACKENDS
    xfail: Mapping[Backend, str] = field(default_factory=dict)
    expect_on: Mapping[Backend, Expect] = field(default_factory=dict)
    cause_on_record: bool = False
    temporal_queue: Literal["nobody", "wrong-key"] | None = None

    def __post_init__(self) -> None:
        point = self.crash_point
        if isinstance(point, Point) and point.phase == "forward" and point.step not in self.past_pivot():
            interrupted = {self.cancel_at, *self.timeout_at}
            if Point(point.step) not in {Point(p.step) for p in interrupted if p is not None}:
                raise ValueError(f"row {self.name}: a crash in a step's forward phase, up to the pivot, must be where "
                                 "the other backends are interrupted (cancel_at or timeout_at)")
        if isinstance(point, Point) and point.step in self.past_pivot():
            siblings = {name for name, stage in self.stage_of().items() if stage == self.stage_of()[point.step]}
            if point.phase != "forward" or siblings - {point.step} - set(self.kill_once_recorded):
                raise ValueError(f"row {self.name}: a crash past the pivot is in a step's forward phase, and the "
                                 "other branches of its stage have their completion recorded (kill_once_recorded)")
        expectations = self.expect if isinstance(self.expect, tuple) else (self.expect,)
        if len(expectations) not in (1, self.runs):
            raise ValueError(f"row {self.name}: expected one Expect, or one per run")

    def past_pivot(self) -> frozenset[str]:
        """The steps after the pivot (retriable), if the row's saga has one."""
        stages = [stage.steps if isinstance(stage, P) else (stage,) for stage in self.shape]
        pivot = next((number for number, members in enumerate(stages) if members[0].kind == "pivot"), None)
        if pivot is None:
            return frozenset()
        return frozenset(member.name for members in stages[pivot + 1:] for member in members)

    @property
    def crash_point(self) -> Point | str | None:
        """Where the crash child dies: ``kill_at``, else where the caller would cancel."""
        return self.kill_at if self.kill_at is not None else self.cancel_at

    def expected(self, run: int, backend: Backend = "local") -> Expect:
        """The local engine's run number ``run`` (or what ``backend`` must give, see ``expect_on``)."""
        if backend in self.expect_on:
            return self.expect_on[backend]
        return self.expect[run] if isinstance(self.expect, tuple) else self.expect

    def stage_of(self) -> dict[str, int]:
        """Each step's stage number."""
        return {member.name: number for number, stage in enumerate(self.shape)
                for member in (stage.steps if isinstance(stage, P) else (stage,))}

    def parallel_steps(self) -> dict[str, int]:
        """The steps of parallel stages, with their stage number."""
        return {member.name: number for number, stage in enumerate(self.shape) if isinstance(stage, P)
                for member in stage.steps}


def fresh_faults(row: Row) -> dict[str, sk.FaultLike]:
    """The row's faults for one run: a seeded fault starts its draws over."""
    return {name: dataclasses.replace(fault) if isinstance(fault, sk.Fault) else fault
            for name, fault in row.faults.items()}


_RETRY = {"initial_delay": 0.05, "max_delay": 0.1, "jitter": 0.0}


def _step(spec: S, plan: Mapping[str, str], seed_form: bool) -> Any:
    act: Any = (world.plain_action if spec.plain else world.action)(spec.name, plan)
    undo: Any = world.compensation(spec.name, plan) if spec.compensate else None
    if undo is not None and spec.compensation_retry is not None:
        undo = sk.RetryPrimitive(undo, max_retries=spec.compensation_retry, **_RETRY)
    if spec.seed == "retry":
        act = sk.RetryPrimitive(act, max_retries=2, **_RETRY)
    elif spec.seed == "timeout":
        act = sk.TimeoutPrimitive(act, timeout=0.4)
    elif spec.seed == "fallback":
        act = sk.FallbackPrimitive(act, world.action(f"{spec.name}_fallback", plan))
    if seed_form:
        return (act, undo)
    options: dict[str, Any] = {}
    if spec.retry is not None:
        options["retry"] = sk.RetryPolicy(max_retries=spec.retry, **_RETRY)
    if spec.kind is not None:
        options["kind"] = spec.kind
    return sk.step(act, compensate=undo, name=spec.name, timeout=spec.timeout,
                   compensate_on_failure=spec.compensate_on_failure, **options)


def build_saga(row: Row) -> sk.Saga:
    """The row's saga: named after the row, its functions behaving as the row says."""
    stages = [sk.parallel(*(_step(member, row.behave, False) for member in stage.steps)) if isinstance(stage, P)
              else _step(stage, row.behave, row.seed_form) for stage in row.shape]
    if row.seed_form:
        return sk.CompensationPrimitive(stages, row.continue_on_compensation_failure, name=row.name)
    return sk.Saga(row.name, stages, continue_on_compensation_failure=row.continue_on_compensation_failure)


# -- shapes ---------------------------------------------------------------------------------

LINEAR = (S("a"), S("b"), S("sync_step", plain=True, compensate=False), S("c"), S("d"))
FANOUT = (S("a"), P(S("p1"), S("p2"), S("p3", compensate=False)), S("c"))
ABC = (S("a"), S("b"), S("c"))
ABCD = (S("a"), S("b"), S("c"), S("d"))
RETRYING = (S("a"), S("b", retry=2), S("c"))
SEED = (S("a", seed="retry"), S("b", seed="timeout"), S("c", seed="fallback", compensate=False), S("d"))
LAST_PARALLEL = (S("a"), P(S("p1"), S("p2")))

LINEAR_DONE = ("a", "b", "c", "d", "sync_step")

# Issue 22's kinds: a compensatable step, a read-only one, the pivot, then retriable steps (ship
# says so, mail and close are made so by the pivot), one parallel stage of them; close is a
# plain def (a thread on a Temporal worker) under the default FORWARD_RETRY, which never
# retries here. Every retriable step that fails retries once (ship twice in PIVOTED_PATIENT),
# quickly: on Temporal each retry waits for a server timer.
PIVOTED = (S("a"), S("check", compensate=False, kind="readonly"), S("pay", compensate=False, kind="pivot"),
           S("ship", compensate=False, kind="retriable", retry=1),
           P(S("mail", compensate=False, retry=1), S("label", compensate=False, kind="retriable", retry=1)),
           S("close", compensate=False, plain=True))
#: The same, where ship may retry twice.
PIVOTED_PATIENT = tuple(S("ship", compensate=False, kind="retriable", retry=2) if stage == PIVOTED[3] else stage
                        for stage in PIVOTED)
PIVOTED_DONE = ("a", "check", "close", "label", "mail", "pay", "ship")
PIVOT_PAID = ("a", "check", "pay")  # standing when a run is stuck at ship

# Defects of forward recovery the table found (the crash cells they fail).
ROWS: tuple[Row, ...] = (
    # -- migrated from tests/temporal/test_temporal_conformance.py --------------------------------
    Row("completes", LINEAR, Expect("completed", standing=LINEAR_DONE)),
    Row("parallel-merges", FANOUT, Expect("completed", standing=("a", "c", "p1", "p2", "p3")),
        behave={"p2": "sleep:0.05", "p3": "sleep:0.1"}),
    Row("fails-at-a", LINEAR, Expect("compensated", "a", "ValueError"), behave={"a": "raise"}),
    Row("fails-at-b", LINEAR, Expect("compensated", "b", "ValueError", ("a",)), behave={"b": "raise"},
        kill_at=Point("a", "compensate")),
    Row("fails-at-c", LINEAR, Expect("compensated", "c", "ValueError", ("b", "a"), ("sync_step",)),
        behave={"c": "raise"}, kill_at=Point("b", "compensate")),
    Row("fails-at-d", LINEAR, Expect("compensated", "d", "ValueError", ("c", "b", "a"), ("sync_step",)),
        behave={"d": "raise"}, kill_at=Point("c", "compensate")),
    Row("user-error-type", LINEAR, Expect("compensated", "b", "PaymentDeclined", ("a",), message_has="declined"),
        behave={"b": "declined"}, kill_at=Point("a", "compensate")),
    Row("builtin-error-args", LINEAR,
        Expect("compensated", "c", "KeyError", ("b", "a"), ("sync_step",), message_has="'c'"),
        behave={"c": "keyerror"}, kill_at=Point("b", "compensate")),
    Row("parallel-branch-fails", FANOUT, Expect("compensated", "p2", "ValueError", ("p1", "a")),
        behave={"p2": "after:p1", "p3": "hang"}, kill_at=Point("p1", "compensate")),
    Row("fails-after-parallel", FANOUT, Expect("compensated", "c", "ValueError", ("p1", "p2", "a"), ("p3",)),
        behave={"p2": "sleep:0.05", "p3": "sleep:0.1", "c": "raise"}, kill_at=Point("p2", "compensate")),
    Row("branch-returns-list", FANOUT, Expect("compensated", "p1", "TypeError", ("p1", "p2", "a"), ("p3",),
                                              message_has="'p1' returned list"),
        behave={"p1": "list", "p2": "sleep:0.05", "p3": "sleep:0.1"}, kill_at=Point("p2", "compensate")),
    Row("timeout-compensates-on-failure", (S("a"), S("b", timeout=0.4, compensate_on_failure=True)),
        Expect("compensated", "b", "StepTimeout", ("b", "a")),
        behave={"b": "hang"}, kill_at=Point("b", "compensate")),
    Row("compensation-fails-and-stops", LINEAR, Expect("compensation_failed", "d", "CompensationError", ("c",),
                                                       ("a", "b", "sync_step"), message_has="left uncompensated: 'a'"),
        behave={"d": "raise", "b:compensate": "raise"}, kill_at=Point("c", "compensate")),
    Row("compensation-fails-and-goes-on", LINEAR,
        Expect("compensation_failed", "d", "CompensationError", ("a",), ("b", "c", "sync_step")),
        behave={"d": "raise", "b:compensate": "raise", "c:compensate": "keyerror"},
        continue_on_compensation_failure=True, kill_at=Point("c", "compensate")),
    Row("retry-then-success", RETRYING, Expect("completed", standing=("a", "b", "c")), behave={"b": "flaky:2"}),
    Row("retries-spent", RETRYING, Expect("compensated", "b", "ConnectionError", ("a",)), behave={"b": "flaky:5"},
        kill_at=Point("a", "compensate")),
    Row("seed-form", SEED, Expect("compensated", "d", "ValueError", ("b", "a"), ("c_fallback",)),
        behave={"a": "flaky:1", "c": "raise", "d": "raise"}, seed_form=True, kill_at=Point("b", "compensate")),
    Row("seed-form-timeout", SEED, Expect("compensated", "b", "StepTimeout", ("a",)), behave={"b": "hang"},
        seed_form=True, kill_at=Point("a", "compensate")),
    Row("fault-fail", LINEAR, Expect("compensated", "b", "InjectedFault", ("a",)), faults={"b": "fail"},
        kill_at=Point("a", "compensate")),
    Row("fault-fail-after", LINEAR, Expect("compensated", "b", "InjectedFault", ("a",), ("b",)),
        faults={"b": "fail_after"}, kill_at=Point("a", "compensate")),
    # No crash point: an injected fault belongs to the run's call, not to its journal, so the
    # compensations recover() runs after a crash act for real.
    Row("fault-fail-compensation", LINEAR,
        Expect("compensation_failed", "d", "CompensationError", ("c",), ("a", "b", "sync_step")),
        behave={"d": "raise"}, faults={"b": "fail_compensation"}),
    Row("fault-delay-only", LINEAR, Expect("completed", standing=LINEAR_DONE),
        faults={"a": sk.Fault("none", delay=0.05)}),
    Row("fault-seeded-probability", RETRYING, Expect("completed", standing=("a", "b", "c")),
        faults={"b": sk.Fault("fail", probability=0.5, seed=7)}),  # fires on attempts 1 and 2, not 3
    # In the rows a caller cancels, the step in flight stays a regular activity on
    # temporal-local (``regular``): with every step local, they would all meet defect 1 (and
    # past the pivot, the cancellation would reach the workflow only once every step ran).
    Row("cancel-mid-step", LINEAR, Expect("cancelled", "c", "CancelledError", ("b", "a"), ("sync_step",),
                                          raised="CancelledError"),
        cancel_at=Point("c"), regular=("c",)),
    # -- issue 21 ---------------------------------------------------------------------------------
    # 1: cancelled mid-saga after a, b and c took effect, every step a local activity. Temporal
    # delivers a cancellation to a workflow at the end of its workflow task, and a local activity
    # in flight holds that task: the cancellation cannot reach d there (it waits for it), so d
    # ends by its local-activity timeout and the run rolls back with that StepTimeout; what
    # defect 1 lost, the compensation of a, b and c, must happen.
    Row("d1-cancel-after-three-steps", ABCD,
        Expect("cancelled", "d", "CancelledError", ("c", "b", "a"), raised="CancelledError"),
        cancel_at=Point("d"),
        expect_on={"temporal-local": Expect("compensated", "d", "StepTimeout", ("c", "b", "a"),
                                            raised="CancelledError")}),
    # 2: the last stage is parallel, a branch returns a list; SIGKILL as the rollback begins, once
    # the journal holds both branches' completions.
    Row("d2-last-stage-branch-returns-list", LAST_PARALLEL,
        Expect("compensated", "p1", "TypeError", ("p1", "p2", "a")),
        behave={"p1": "list", "p2": "sleep:0.05"}, kill_at="rollback_started", kill_once_recorded=("p1", "p2"),
        cause_on_record=True),
    # 3: the compensation of b is interrupted, three ways; the engine goes on with a.
    *(Row(f"d3-compensation-interrupted-{kind}", ABC,
          Expect("compensation_failed", "c", "CompensationError", ("a",), ("b",), raised=raised),
          behave={"c": "raise", "b:compensate": kind}, kill_at=Point("b", "compensate"))
      for kind, raised in (("keyboard", "KeyboardInterrupt"), ("exit", "SystemExit"), ("cancel", "CancelledError"))),
    # 4: five runs killed in c, recovered together; run 0's compensation of b is interrupted
    # while the other four are in theirs. Run 0 was cancelled before that interruption, so the
    # cancellation is what its call raises.
    Row("d4-five-recoveries-one-interrupted", ABC,
        (Expect("compensation_failed", "c", "CompensationError", ("a",), ("b",), raised="CancelledError"),
         *(Expect("cancelled", "c", "CancelledError", ("b", "a"), raised="CancelledError"),) * 4),
        behave={"c": "hang", "b:compensate": "sleep:0.1+keyboard@0|sleep:0.3"}, cancel_at=Point("c"), runs=5,
        regular=("c",)),
    # 5: the caller's asyncio.timeout() expires in c (around saga.run), or in the compensation of
    # b (around recover(), after a crash in c); the compensation must finish either way.
    Row("d5-timeout-around-recover", ABC,
        Expect("cancelled", "c", "CancelledError", ("b", "a"), raised="TimeoutError"),
        behave={"c": "hang", "b:compensate": "sleep:0.3"}, timeout_at=(Point("c"), Point("b", "compensate")),
        kill_at=Point("c"), regular=("c",)),
    # 6: a step with retry=2 raises SystemExit: one call, no retry.
    Row("d6-step-exit-not-retried", (S("a"), S("b", retry=2)),
        Expect("cancelled", "b", "SystemExit", ("a",), raised="SystemExit"),
        behave={"b": "exit"}),
    Row("step-keyboard-interrupt", ABC, Expect("cancelled", "b", "KeyboardInterrupt", ("a",),
                                               raised="KeyboardInterrupt"),
        behave={"b": "keyboard"}),
    Row("step-cancels-itself", ABC, Expect("cancelled", "b", "CancelledError", ("a",), raised="CancelledError"),
        behave={"b": "cancel"}),
    # The engine's own run is wrong here (the xfail on "local"): the other cells check the row's
    # expect instead of comparing with it.
    Row("parallel-branch-exits", FANOUT, Expect("cancelled", "p2", "SystemExit", ("p1", "a"), raised="SystemExit"),
        behave={"p2": "sleep:0.05+exit", "p3": "hang"}),
    # 7: a run no worker can execute, cancelled by its caller. Temporal only: no worker ever runs
    # the workflow, so whether its steps would be local activities never matters either.
    Row("d7-cancel-run-without-worker", ABC,
        Expect("cancelled", error="CancelledError", raised="CancelledError"),
        backends=("temporal",), temporal_queue="nobody"),
    Row("d7-cancel-run-with-wrong-key-worker", ABC,
        Expect("cancelled", error="CancelledError", raised="CancelledError"),
        backends=("temporal",), temporal_queue="wrong-key"),
    # 8: b's compensation is a RetryPrimitive that fails twice: attempts 1, 2, 3.
    Row("d8-retried-compensation-attempts", (S("a"), S("b", compensation_retry=2), S("c")),
        Expect("cancelled", "c", "CancelledError", ("b", "a"), raised="CancelledError"),
        behave={"c": "hang", "b:compensate": "flaky:2"}, cancel_at=Point("c"), regular=("c",)),
    # 9: interrupted (cancelled, or SIGKILLed) in c, after c took effect: c is the step to blame.
    Row("d9-crash-blames-step-in-flight", ABCD,
        Expect("cancelled", "c", "CancelledError", ("b", "a"), ("c",), raised="CancelledError"),
        cancel_at=Point("c", moment="after"), regular=("c",)),
    # Not in issue 21: SIGKILL in the compensation of b, after c's compensation succeeded.
    Row("crash-mid-rollback", ABCD, Expect("compensated", "d", "ValueError", ("c", "b", "a")),
        behave={"d": "raise"}, kill_at=Point("b", "compensate")),
    # -- issue 22: step kinds and forward recovery --------------------------------------------------
    # SIGKILL once ship acted, before its completion was recorded: recover() runs it again.
    Row("pivot-completes", PIVOTED, Expect("completed", standing=PIVOTED_DONE),
        kill_at=Point("ship", moment="after")),
    # Up to the pivot, a failure rolls back: the compensatable step ...
    Row("pivot-compensatable-fail", PIVOTED, Expect("compensated", "a", "InjectedFault"), faults={"a": "fail"}),
    Row("pivot-compensatable-fail-after", PIVOTED, Expect("compensated", "a", "InjectedFault", standing=("a",)),
        faults={"a": "fail_after"}),
    # (no crash point: the injected fault is the run's call's, see fault-fail-compensation)
    Row("pivot-compensatable-fail-compensation", PIVOTED,
        Expect("compensation_failed", "pay", "CompensationError", standing=("a", "check")),
        behave={"pay": "raise"}, faults={"a": "fail_compensation"}),
    # ... the read-only step (nothing to undo: skipped) ...
    Row("pivot-readonly-fail", PIVOTED, Expect("compensated", "check", "InjectedFault", ("a",)),
        faults={"check": "fail"}, kill_at=Point("a", "compensate")),
    Row("pivot-readonly-fail-after", PIVOTED, Expect("compensated", "check", "InjectedFault", ("a",), ("check",)),
        faults={"check": "fail_after"}, kill_at=Point("a", "compensate")),
    # ... and the pivot itself (its lost response leaves its effect: nothing undoes a pivot).
    Row("pivot-fails", PIVOTED, Expect("compensated", "pay", "PaymentDeclined", ("a",), ("check",),
                                       message_has="declined"),
        behave={"pay": "declined"}, kill_at=Point("a", "compensate")),
    Row("pivot-fail-after", PIVOTED, Expect("compensated", "pay", "InjectedFault", ("a",), ("check", "pay")),
        faults={"pay": "fail_after"}, kill_at=Point("a", "compensate")),
    # Cancelled (SIGKILLed) in the pivot, before and after it acted: rolled back.
    Row("pivot-cancelled-in-pivot", PIVOTED,
        Expect("cancelled", "pay", "CancelledError", ("a",), ("check",), raised="CancelledError"),
        cancel_at=Point("pay"), regular=("pay",)),
    Row("pivot-cancelled-after-pivot-acted", PIVOTED,
        Expect("cancelled", "pay", "CancelledError", ("a",), ("check", "pay"), raised="CancelledError"),
        cancel_at=Point("pay", moment="after"), regular=("pay",)),
    # Past the pivot: a caller's cancellation lets the run complete, then propagates. SIGKILLed
    # right after the pivot (before ship acted), recover() carries the run forward.
    Row("pivot-cancelled-past-pivot", PIVOTED, Expect("completed", standing=PIVOTED_DONE, raised="CancelledError"),
        cancel_at=Point("ship"), regular=("ship",)),
    # The caller's timeout expires past the pivot: around saga.run, or around recover() after a
    # SIGKILL there. On Temporal a caller's timeout is a cancellation (the row above).
    Row("pivot-timeout-past-pivot", PIVOTED, Expect("completed", standing=PIVOTED_DONE, raised="TimeoutError"),
        timeout_at=(Point("ship"),), kill_at=Point("ship"), backends=("local", "crash")),
    # A retriable step fails twice, then succeeds forward; SIGKILLed during its first retry.
    Row("pivot-retriable-flaky", PIVOTED_PATIENT, Expect("completed", standing=PIVOTED_DONE),
        behave={"ship": "flaky:2"}, kill_at=Point("ship", attempt=2)),
    # It fails for good: stuck, nothing compensated; SIGKILLed during its retry.
    Row("pivot-retriable-stuck", PIVOTED, Expect("stuck", "ship", "SagaStuck", standing=PIVOT_PAID,
                                                 message_has="ValueError: ship refused"),
        behave={"ship": "raise"}, kill_at=Point("ship", attempt=2)),
    # Injected faults belong to the run's call (no crash point): every attempt fails, stuck.
    Row("pivot-retriable-fail", PIVOTED, Expect("stuck", "ship", "SagaStuck", standing=PIVOT_PAID),
        faults={"ship": "fail"}),
    Row("pivot-retriable-fail-after", PIVOTED,
        Expect("stuck", "ship", "SagaStuck", standing=(*PIVOT_PAID, "ship", "ship")), faults={"ship": "fail_after"}),
    # A hard interruption past the pivot leaves the run stuck, then propagates (not retried).
    Row("pivot-retriable-exit", PIVOTED, Expect("stuck", "ship", "SagaStuck", standing=PIVOT_PAID, raised="SystemExit"),
        behave={"ship": "exit"}),
    Row("pivot-retriable-keyboard", PIVOTED,
        Expect("stuck", "ship", "SagaStuck", standing=PIVOT_PAID, raised="KeyboardInterrupt"),
        behave={"ship": "keyboard"}),
    Row("pivot-retriable-cancels-itself", PIVOTED,
        Expect("stuck", "ship", "SagaStuck", standing=PIVOT_PAID, raised="CancelledError"),
        behave={"ship": "cancel"}),
    # The parallel stage of retriable steps: a branch flakes, and is SIGKILLed in its retry once
    # label's completion is recorded ...
    Row("pivot-parallel-flaky", PIVOTED, Expect("completed", standing=PIVOTED_DONE), behave={"mail": "flaky:1"},
        kill_at=Point("mail", attempt=2), kill_once_recorded=("label",)),
    # ... fails for good once label completed; label acts but its response is lost, for good; mail
    # raises SystemExit once label completed ...
    Row("pivot-parallel-stuck", PIVOTED,
        Expect("stuck", "mail", "SagaStuck", standing=("a", "check", "label", "pay", "ship")),
        behave={"mail": "wait:label+raise"}),
    Row("pivot-parallel-fail-after", PIVOTED,
        Expect("stuck", "label", "SagaStuck", standing=("a", "check", "label", "label", "mail", "pay", "ship")),
        faults={"label": "fail_after"}),
    Row("pivot-parallel-exit", PIVOTED,
        Expect("stuck", "mail", "SagaStuck", standing=("a", "check", "label", "pay", "ship"), raised="SystemExit"),
        behave={"mail": "wait:label+exit"}),
    # ... and the caller cancels while mail is in flight (mail had acted, label completed): the
    # run completes; SIGKILLed there, recover() calls mail again.
    Row("pivot-parallel-cancelled", PIVOTED, Expect("completed", standing=PIVOTED_DONE, raised="CancelledError"),
        behave={"mail": "wait:label"}, cancel_at=Point("mail", moment="after"), kill_once_recorded=("label",),
        regular=("mail",)),
)

#: One saga per row, by row name.
SAGAS: dict[str, sk.Saga] = {row.name: build_saga(row) for row in ROWS}
