"""Helpers that exploration and simulation share: argument checks, input copies, derived
sagas, the worker pool and the progress bar."""

from __future__ import annotations

import asyncio
import copy
import inspect
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sagakit.runs import RunHistory
from sagakit.steps import Parallel, Stage

if TYPE_CHECKING:
    from sagakit.saga import Saga

__all__ = [
    "steps_by_modes_text",
    "check_saga",
    "Progress",
    "check_optional_callable",
    "copier",
    "derived_saga",
    "kind_labels",
    "resolve",
    "run_pooled",
    "stage_positions",
]

T = TypeVar("T")


def steps_by_modes_text(names: Sequence[str], modes: Sequence[str], cell: Callable[[str, str], str],
                        widest: str, labels: Mapping[str, str] | None = None) -> list[str]:
    """A plain-text table, one row per step and one column per mode, ``cell(step, mode)`` in each
    (``violated`` in capitals); columns are as wide as ``widest`` or the longest mode. A row is
    headed by ``labels[step]`` where given, else by the step's name."""
    shown = {name: (labels or {}).get(name, name) for name in names}
    width = max(len("step"), *(len(text) for text in shown.values()))
    column = max(len(widest), *(len(mode) for mode in modes))
    lines = ["  ".join(["step".ljust(width), *(mode.ljust(column) for mode in modes)]).rstrip()]
    for name in names:
        row = [shown[name].ljust(width)]
        for mode in modes:
            value = cell(name, mode)
            row.append((value.upper() if value == "violated" else value).ljust(column))
        lines.append("  ".join(row).rstrip())
    return lines


def kind_labels(saga: Saga) -> dict[str, str]:
    """How tables head the rows of steps that are not compensatable: ``charge (pivot)``,
    ``ship (retriable)``, ``quote (readonly)``."""
    return {member.name: f"{member.name} ({member.kind})" for member in saga.steps if member.kind != "compensatable"}


def check_saga(saga: object, what: str) -> None:
    """A TypeError naming ``what``'s ``saga`` argument unless it is a :class:`~sagakit.Saga`."""
    from sagakit.saga import Saga

    if not isinstance(saga, Saga):
        raise TypeError(f"{what} saga: expected a sagakit.Saga, got {type(saga).__name__} {saga!r:.60}")


def check_optional_callable(value: object, what: str, expected: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{what}: expected {expected} or None, got {type(value).__name__} {value!r}")


def copier(data: Any, what: str) -> Callable[[], Any]:
    """A function returning a fresh deep copy of ``data`` for each run (checked once now)."""
    if data is None or isinstance(data, str | bytes | int | float):
        return lambda: data
    try:
        copy.deepcopy(data)
    except Exception as exc:
        raise TypeError(
            f"{what} data: every run gets a deep copy of the input so that runs cannot affect each "
            f"other, but copy.deepcopy failed: {type(exc).__name__}: {exc}"
        ) from exc
    return lambda: copy.deepcopy(data)


async def resolve(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def derived_saga(saga: Saga, stages: Sequence[Stage] | None = None) -> Saga:
    """A saga with the same steps, names and settings whose runs stay out of ``saga.history``.

    Its observers, journal and fault plan are none of the saga's: the caller passes any per
    run.
    """
    changes: dict[str, Any] = {"observers": (), "journal": None, "faults": None}
    if stages is not None:
        changes["stages"] = list(stages)
    derived = saga.replace(**changes)
    derived.history = RunHistory(maxlen=1)  # the runs are collected by the caller
    return derived


def stage_positions(saga: Saga) -> dict[str, int]:
    positions: dict[str, int] = {}
    for position, stage in enumerate(saga.stages):
        for member in stage.steps if isinstance(stage, Parallel) else (stage,):
            positions[member.name] = position
    return positions


class Progress:
    """A progress bar: an ipywidgets bar in a notebook, a line on stderr, a callback, or nothing."""

    __slots__ = ("bar", "callback", "every", "label", "last", "text", "total")

    def __init__(self, spec: bool | Callable[[int, int], Any] | None, total: int, label: str) -> None:
        if spec is not None and not isinstance(spec, bool) and not callable(spec):
            raise TypeError(
                f"{label} progress: expected True, False, None (a bar in notebooks) or a callable "
                f"(done, total), got {type(spec).__name__} {spec!r}"
            )
        self.total = total
        self.label = label
        self.last = 0
        self.every = max(1, total // 100)
        self.callback: Callable[[int, int], Any] | None = None
        self.bar: Any = None
        self.text = False
        if callable(spec) and not isinstance(spec, bool):
            self.callback = spec
        elif spec is not False:
            self.bar = _notebook_bar(total, label)
            self.text = self.bar is None and spec is True

    def update(self, done: int) -> None:
        if done != self.total and done - self.last < self.every:
            return
        self.last = done
        if self.callback is not None:
            self.callback(done, self.total)
        elif self.bar is not None:
            self.bar.value = done
        elif self.text:
            sys.stderr.write(f"\r{self.label}: {done}/{self.total}")
            sys.stderr.flush()

    def finish(self, done: int) -> None:
        """End at ``done`` of ``done``: the work turned out smaller than ``total``."""
        self.total = done
        if self.bar is not None:
            self.bar.max = max(done, 1)
        self.update(done)

    def close(self, ok: bool = True) -> None:
        if self.bar is not None:
            self.bar.bar_style = "success" if ok else "danger"
        elif self.text:
            sys.stderr.write("\n")


def _notebook_bar(total: int, label: str) -> Any:
    """An ipywidgets progress bar shown in the current notebook cell, or ``None`` elsewhere."""
    if "IPython" not in sys.modules:  # not in IPython: do not import it
        return None
    try:
        import ipywidgets
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    shell = get_ipython()  # type: ignore[no-untyped-call]
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    bar = ipywidgets.IntProgress(value=0, min=0, max=total, description=label)
    bar.add_class("sagakit-progress")
    display(bar)  # type: ignore[no-untyped-call]
    return bar


async def run_pooled(
    items: Iterable[T], work: Callable[[T], Awaitable[bool | None]], limit: int, bar: Progress
) -> int:
    """``work(item)`` for every item, at most ``limit`` at a time, ticking ``bar``; the count done.

    Items are taken from ``items`` one at a time as workers free up, so a lazy iterable is
    drawn as it goes. An item whose work returns ``False`` is not counted. The first error
    cancels the other workers, waits for them (their runs roll back, shielded, before their
    tasks end) and propagates.
    """
    pending = iter(items)
    done = 0

    async def worker() -> None:
        nonlocal done
        for item in pending:
            if await work(item) is False:
                continue
            done += 1
            bar.update(done)

    workers = [asyncio.ensure_future(worker()) for _ in range(limit)]
    try:
        finished, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
        failed = next((task for task in finished if task.exception() is not None), None)
        if failed is not None:
            raise failed.exception()  # type: ignore[misc]
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    if done != bar.total:  # fewer than planned (repeated draws left out): end the bar full
        bar.finish(done)
    return done
