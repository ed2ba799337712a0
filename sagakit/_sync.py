"""Run a coroutine to completion from synchronous code, even inside a running loop."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["run_sync"]


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``make()`` returns and give back its result.

    Outside an event loop this is ``asyncio.run``. Inside one (a Jupyter cell, say), the
    coroutine runs on a worker thread with its own event loop and a copy of the caller's
    context variables, and this call blocks until it ends. asyncio itself is never patched.
    An interrupt (``KeyboardInterrupt``, as an interrupted kernel raises) cancels the
    coroutine on its loop, waits for it to wind down (a saga rolls back), then propagates.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
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
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]  # type: ignore[no-any-return]
