"""run_sync/execute_sync from plain code and from inside a running loop (a notebook cell)."""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import threading
from typing import Any

import pytest

import sagakit as sk

REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")


async def where(data: Any, context: sk.WorkflowContext) -> Any:
    return {"thread": threading.current_thread().name, "request": REQUEST.get()}


async def boom(data: Any, context: sk.WorkflowContext) -> Any:
    raise LookupError("nope")


class TestRunSync:
    def test_outside_a_loop(self) -> None:
        """Without a running loop, run_sync runs right here."""
        run = sk.Saga("s", [where]).run_sync({})
        assert run.status == "completed"
        assert run.result["thread"] == threading.current_thread().name

    async def test_inside_a_running_loop_uses_a_worker_thread(self) -> None:
        """Inside a running loop (as in Jupyter) it runs on a worker thread, copying contextvars."""
        REQUEST.set("req-7")
        saga = sk.Saga("s", [where])
        result = saga.execute_sync({})
        assert result["thread"] == "sagakit-run-sync"
        assert result["request"] == "req-7"
        assert len(saga.history) == 1

    async def test_errors_cross_back_unchanged(self) -> None:
        """execute_sync raises the step's original exception in the caller's thread."""
        with pytest.raises(LookupError, match="nope"):
            sk.Saga("s", [boom]).execute_sync({})

    def test_asyncio_is_not_patched(self) -> None:
        """No global patching: asyncio.run refuses to nest, as it always does."""

        async def outer() -> None:
            sk.Saga("s", [where]).run_sync({})
            nested = asyncio.sleep(0)
            with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
                asyncio.run(nested)
            nested.close()

        asyncio.run(outer())


SCRIPT = """
import sagakit

def reserve(data, context):
    return data

def release(data, context):
    pass

def charge(data, context):
    raise ValueError("card declined")

saga = sagakit.Saga("order", [sagakit.step(reserve, compensate=release), charge])
saga.{call}
"""


class TestTracebacks:
    @pytest.mark.parametrize("call", ["execute_sync({})", "run_sync({}).raise_for_status()"])
    def test_a_script_prints_only_the_users_error(self, call: str) -> None:
        """A script whose step raises prints that error alone: no RuntimeError about a missing loop."""
        script = SCRIPT.format(call=call)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1
        assert done.stderr.rstrip().endswith("ValueError: card declined")
        assert "RuntimeError" not in done.stderr
        assert "During handling of the above exception" not in done.stderr

    def test_the_error_has_no_context_outside_a_loop(self) -> None:
        """execute_sync outside a loop raises the step's error with no __context__."""
        with pytest.raises(LookupError) as raised:
            sk.Saga("s", [boom]).execute_sync({})
        assert raised.value.__context__ is None

    async def test_the_error_has_no_context_inside_a_loop(self) -> None:
        """From the worker thread too, the error arrives without a __context__."""
        with pytest.raises(LookupError) as raised:
            sk.Saga("s", [boom]).execute_sync({})
        assert raised.value.__context__ is None

    def test_simulate_raises_without_context(self) -> None:
        """An error escaping simulate (a failing invariant-free setup: a broken world factory) has no
        RuntimeError as its context."""

        def broken_world() -> Any:
            raise KeyError("no world")

        with pytest.raises(KeyError) as raised:
            sk.Saga("s", [where]).simulate(2, {}, world=broken_world)
        assert raised.value.__context__ is None


class TestVirtualClockArguments:
    def test_a_start_too_large_for_a_float(self) -> None:
        """VirtualClockLoop(10**400) is a TypeError naming start, not an OverflowError."""
        from sagakit.explore import VirtualClockLoop

        with pytest.raises(TypeError, match="VirtualClockLoop start: expected a finite number of seconds"):
            VirtualClockLoop(10**400)
