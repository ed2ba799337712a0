"""Run a coroutine to completion from synchronous code, even inside a running loop."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["in_running_loop", "run_sync", "unwrap"]


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``make()`` returns and give back its result.

    Outside an event loop this is ``asyncio.run``. Inside one (a Jupyter cell, say), the
    coroutine runs on a worker thread with its own event loop and a copy of the caller's
    context variables, and this call blocks until it ends. asyncio itself is never patched.
    An interrupt (``KeyboardInterrupt``, as an interrupted kernel raises) cancels the
    coroutine on its loop, waits for it to wind down (a saga rolls back), then propagates.
    """
    if not in_running_loop():
        # Outside the ``except`` clause that found no loop: the caller's exception must not
        # carry that lookup's RuntimeError as its __context__.
        return asyncio.run(make())
    context = contextvars.copy_context()
    outcome: dict[str, Any] = {}
    started = threading.Event()
    running: dict[str, Any] = {}

    async def main() -> T:
        running["loop"], running["task"] = asyncio.get_running_loop(), asyncio.current_task()
        started.set()
        return await make()

    def work() -> None:
        try:
            outcome["result"] = context.run(asyncio.run, main())
        except BaseException as exc:  # handed back to the caller's thread
            outcome["error"] = exc
        finally:
            started.set()

    worker = threading.Thread(target=work, name="sagakit-run-sync", daemon=True)
    worker.start()
    try:
        worker.join()
    except KeyboardInterrupt:
        started.wait()
        task = running.get("task")
        if task is not None:
            with contextlib.suppress(RuntimeError):  # the loop may have closed meanwhile
                running["loop"].call_soon_threadsafe(task.cancel)
        worker.join()
        raise
    return unwrap(outcome)  # type: ignore[no-any-return]


def in_running_loop() -> bool:
    """Whether this thread is running an event loop (a notebook cell, an async test)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def unwrap(outcome: dict[str, Any]) -> Any:
    """A worker thread's result, or its exception raised here as it was (no added context)."""
    error: BaseException | None = outcome.pop("error", None)
    if error is None:
        return outcome["result"]
    try:
        raise error
    finally:
        del error  # the frame would otherwise keep the traceback, and with it the run, alive
