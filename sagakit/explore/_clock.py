"""The virtual clock: an event loop whose time jumps to the next timer instead of waiting.

The maintained ``looptime`` package fakes loop time for test suites, as a pytest plugin with
idle timeouts and no-op cycles before each jump; a simulation needs only the jump itself,
which is the thirty lines of :class:`VirtualClockLoop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import selectors
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sagakit._sync import in_running_loop, unwrap

__all__ = ["VirtualClockLoop", "on_virtual_clock", "run_on_virtual_clock"]

T = TypeVar("T")

_RESOLUTION = time.get_clock_info("monotonic").resolution


class _JumpingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The platform's selector, except that a timed wait with no I/O ready jumps the clock."""

    def __init__(self, jump: Callable[[float], None], idle: Callable[[float | None], bool]) -> None:
        super().__init__()
        self._jump = jump
        self._idle = idle

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or timeout == 0:
            return ready
        if self._idle(timeout):
            # Someone waits for the loop to go idle: wake them before time moves on.
            return ready
        if timeout is None:
            # No timer is pending: only the outside (a thread, a socket) can wake the
            # loop, so wait for it in real time, as an ordinary loop would.
            return super().select(None)  # type: ignore[no-any-return]
        self._jump(timeout)
        return ready


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is virtual and jumps ahead instead of waiting.

    Args:
        start: the clock's first reading, in the same units as ``loop.time()`` (seconds).

    Example::

        loop = VirtualClockLoop(start=0.0)
        loop.run_until_complete(asyncio.sleep(3600))   # returns at once
        assert loop.time() == 3600.0
        loop.close()
    """

    #: Read by code that must know whether real time passes (a plain ``def`` step under a
    #: timeout runs in place here instead of on a worker thread; see ``TimeoutPrimitive``).
    virtual_clock = True

    def __new__(cls, start: float = 0.0) -> VirtualClockLoop:
        # Checked before the loop exists, so that a refused loop leaves nothing to close.
        if (
            isinstance(start, bool)
            or not isinstance(start, int | float)
            or not abs(start) <= sys.float_info.max  # also an int too large for a float, and NaN
            or not math.isfinite(start)
        ):
            raise TypeError(f"VirtualClockLoop start: expected a finite number of seconds, got {start!r}")
        return super().__new__(cls)

    def __init__(self, start: float = 0.0) -> None:
        self._virtual_now = float(start)
        self._idle_waiters: list[asyncio.Future[bool]] = []
        super().__init__(_JumpingSelector(self._jump, self._wake_idle_waiters))
        self._keep_resolution(self._virtual_now)

    def time(self) -> float:
        """The virtual clock's reading, in seconds."""
        return self._virtual_now

    def idle(self) -> asyncio.Future[bool]:
        """A future resolved the next time nothing is ready to run, before the clock moves.

        Its result says whether timers are pending (``False``: only the outside, a thread or
        a socket, could wake the loop). A scheduler awaits it to know that every task has
        gone as far as it can without time passing or being let through.
        """
        waiter = self.create_future()
        self._idle_waiters.append(waiter)
        return waiter

    def quiet(self) -> bool | None:
        """``None`` if anything but the caller is ready to run now; else whether timers are pending.

        What :meth:`idle` tells, without the round trip through the selector: a scheduler that
        has just been woken checks it first. (It reads the base loop's queues, which this
        subclass shares; where they are missing it answers ``None``, and the caller waits.)
        """
        ready = getattr(self, "_ready", None)
        scheduled = getattr(self, "_scheduled", None)
        if ready is None or scheduled is None or ready:
            return None
        if scheduled and scheduled[0].when() <= self._virtual_now + self._clock_resolution:
            return None  # a timer is due: it runs before time moves
        return bool(scheduled)

    def _wake_idle_waiters(self, timeout: float | None) -> bool:
        waiters = self._idle_waiters
        if not waiters:
            return False
        self._idle_waiters = []
        woke = False
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(timeout is not None)
                woke = True
        return woke

    def _jump(self, seconds: float) -> None:
        now = self._virtual_now
        later = now + seconds
        # The loop computes the wait as ``when - time()``; adding it back lands on ``when``
        # exactly whenever both have the same sign. Elsewhere, never stall on rounding.
        later = later if later > now else math.nextafter(now, math.inf)
        self._virtual_now = later
        self._keep_resolution(later)

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """Wait for the default executor's threads in real time, however long they take.

        ``asyncio.Runner`` passes a timeout (recent Pythons, 3.13 among them), which on this clock would expire at
        once (the clock jumps ahead while the loop only waits for the threads) and leave them
        running past the loop; the threads' work is real, so the wait is too.
        """
        await super().shutdown_default_executor()

    def _keep_resolution(self, now: float) -> None:
        # A timer is due when ``when < time() + resolution``. Far from zero (a simulated
        # clock set to a past date reads millions of seconds below it) adding the clock's
        # nanosecond resolution can round away, and a timer due now would never run.
        self._clock_resolution = max(_RESOLUTION, 4.0 * math.ulp(now))


def run_on_virtual_clock(make: Callable[[], Coroutine[Any, Any, T]], *, start: float, virtual: bool = True) -> T:
    """Run the coroutine ``make()`` returns on a fresh loop and give back its result.

    The loop is a :class:`VirtualClockLoop` starting at ``start`` (or, with
    ``virtual=False``, an ordinary loop). Called from inside a running loop (a notebook
    cell), the work happens on a worker thread with a copy of the caller's context
    variables, and this call blocks until it ends; nothing global is patched.
    """

    def factory() -> asyncio.AbstractEventLoop:
        return VirtualClockLoop(start) if virtual else asyncio.new_event_loop()

    def work() -> T:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(make())

    if not in_running_loop():  # outside an except clause: see sagakit._sync.run_sync
        return work()
    context = contextvars.copy_context()
    outcome: dict[str, Any] = {}

    def thread_main() -> None:
        try:
            outcome["result"] = context.run(work)
        except BaseException as exc:  # handed back to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=thread_main, name="sagakit-simulate", daemon=True)
    worker.start()
    worker.join()
    return unwrap(outcome)  # type: ignore[no-any-return]


async def on_virtual_clock(make: Callable[[], Coroutine[Any, Any, T]], *, virtual: bool = True) -> T:
    """Await the coroutine ``make()`` returns on a virtual clock, from any running loop.

    On a :class:`VirtualClockLoop` (or with ``virtual=False``) it is simply awaited here.
    Elsewhere it runs on a fresh :class:`VirtualClockLoop` (starting at the caller's
    ``time.monotonic()``, so that recorded times read as now) on a worker thread, with a copy
    of the caller's context variables, while the caller's loop stays free. Cancelling the
    caller cancels the work on its loop, waits for it to wind down (runs roll back, shielded),
    then propagates the cancellation.
    """
    loop = asyncio.get_running_loop()
    if not virtual or getattr(loop, "virtual_clock", False):
        return await make()
    finished = loop.create_future()
    context = contextvars.copy_context()
    outcome: dict[str, Any] = {}
    handle: dict[str, Any] = {}
    guard = threading.Lock()

    async def main() -> T:
        with guard:
            handle["loop"], handle["task"] = asyncio.get_running_loop(), asyncio.current_task()
            stop = handle.get("stop", False)
        if stop:  # cancelled before it began
            raise asyncio.CancelledError
        return await make()

    def settle() -> None:
        if not finished.done():
            finished.set_result(None)

    def thread_main() -> None:
        try:
            with asyncio.Runner(loop_factory=lambda: VirtualClockLoop(time.monotonic())) as runner:
                outcome["result"] = runner.run(main(), context=context)
        except BaseException as exc:  # handed back to the caller's loop
            outcome["error"] = exc
        finally:
            with contextlib.suppress(RuntimeError):  # the caller's loop has closed: nobody waits
                loop.call_soon_threadsafe(settle)

    threading.Thread(target=thread_main, name="sagakit-virtual-clock", daemon=True).start()
    cancelled = False
    while not finished.done():
        try:
            await asyncio.wait((finished,))
        except asyncio.CancelledError:
            cancelled = True
            with guard:
                task = handle.get("task")
                if task is None:
                    handle["stop"] = True
                else:
                    with contextlib.suppress(RuntimeError):  # its loop is closing: the work is over
                        handle["loop"].call_soon_threadsafe(task.cancel)
    if cancelled:
        outcome.clear()  # the work's own outcome (its cancellation, say) gives way to the caller's
        raise asyncio.CancelledError
    return unwrap(outcome)  # type: ignore[no-any-return]
