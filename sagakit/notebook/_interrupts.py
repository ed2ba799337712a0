"""A kernel interrupt stops the Lab's run in flight, as the Stop button does.

A kernel interrupt is SIGINT, which ipykernel ignores while no cell runs: while a Lab run is in
flight, :class:`InterruptStop` makes it stop that run instead. Signal handlers belong to the
main thread, and a click may be handled on another one (a kernel subshell), so the handler is
installed, kept and removed from the main thread's loop.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["InterruptStop"]


def _kernel() -> Any:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    shell = ipython.get_ipython()
    return getattr(shell, "kernel", None)


class InterruptStop:
    """Turns SIGINT into ``stop()`` while ``running()`` says a run is in flight.

    Args:
        stop: what an interrupt does (called on the run's loop).
        running: whether the run is still in flight.
    """

    def __init__(self, stop: Callable[[], object], running: Callable[[], bool]) -> None:
        self._stop = stop
        self._running = running
        self._previous: Any = None
        self._installed = False
        self._handler: Callable[[int, Any], None] | None = None
        try:  # the kernel's own loop (a Lab is made in a cell): SIGINT handling happens there
            self._main_loop: asyncio.AbstractEventLoop | None = (
                asyncio.get_running_loop() if threading.current_thread() is threading.main_thread() else None)
        except RuntimeError:
            self._main_loop = None

    @property
    def active(self) -> bool:
        """Whether a handler was set up for the run in flight."""
        return self._handler is not None

    def _on_main_thread(self, callback: Callable[[], None]) -> None:
        if threading.current_thread() is threading.main_thread():
            callback()
        elif self._main_loop is not None and not self._main_loop.is_closed():
            self._main_loop.call_soon_threadsafe(callback)

    def catch(self, loop: asyncio.AbstractEventLoop) -> None:
        """From now on, an interrupt stops the run in flight on ``loop``."""
        stop = self._stop

        def interrupted(_signum: int, _frame: Any) -> None:
            loop.call_soon_threadsafe(stop)

        self._handler = interrupted
        self._on_main_thread(self._install)

    def _install(self) -> None:
        if self._installed or self._handler is None or not self._running():
            return
        handler = self._handler
        kernel = _kernel()
        current = signal.getsignal(signal.SIGINT)
        if kernel is not None and current is signal.default_int_handler and hasattr(kernel, "saved_sigint_handler"):
            # Inside a kernel message handler: the kernel restores its saved handler when the
            # handler returns, so that is the one to replace.
            self._previous = kernel.saved_sigint_handler
            kernel.saved_sigint_handler = handler
        else:
            self._previous = current
            signal.signal(signal.SIGINT, handler)
        self._installed = True

    def keep(self) -> None:
        """Put the handler back if a kernel message handler replaced it meanwhile."""
        if self._handler is not None:
            self._on_main_thread(self._keep)

    def _keep(self) -> None:
        # Kernel message handlers save and restore the SIGINT handler around themselves; when
        # they overlap, ours can be lost. Between handlers, put it back.
        if not self._installed or not self._running():
            return
        current = signal.getsignal(signal.SIGINT)
        if current is not self._handler and current is not signal.default_int_handler:
            self._previous = current
            signal.signal(signal.SIGINT, self._handler)

    def release(self) -> None:
        """The run ended: interrupts do what they did before."""
        self._on_main_thread(self._release)

    def _release(self) -> None:
        if not self._installed:
            return
        self._installed = False
        kernel = _kernel()
        if kernel is not None and getattr(kernel, "saved_sigint_handler", None) is self._handler:
            kernel.saved_sigint_handler = self._previous
        if signal.getsignal(signal.SIGINT) is self._handler:
            signal.signal(signal.SIGINT, self._previous)
