"""Helpers shared by the telemetry tests: span trees, small sagas."""

from __future__ import annotations

import asyncio
import importlib.util
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from testsupport import require

import sagakit

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan



def module_available(name: str) -> bool:
    """Whether ``import name`` would work, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require_sdk() -> None:
    """The OpenTelemetry SDK comes with ``sagakit[otel]``; the telemetry tests need it."""
    require(module_available("opentelemetry.sdk"), "opentelemetry-sdk (pip install 'sagakit[otel]')")


def span_tree(spans: Iterable[ReadableSpan]) -> list[str]:
    """The spans as indented lines: ``name #attempt outcome STATUS``, children by start time."""
    spans = list(spans)
    ids = {span.context.span_id for span in spans if span.context is not None}
    children: dict[int | None, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        parent = span.parent.span_id if span.parent is not None and span.parent.span_id in ids else None
        children[parent].append(span)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in sorted(children[parent], key=lambda s: (s.start_time or 0, s.end_time or 0)):
            attributes = span.attributes or {}
            attempt = attributes.get("sagakit.attempt")
            label = span.name if attempt is None else f"{span.name} #{attempt}"
            lines.append(f"{'  ' * depth}{label} {attributes.get('sagakit.outcome')} {span.status.status_code.name}")
            assert span.context is not None
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return lines


def noop_step(name: str, *, compensate: bool = True) -> sagakit.Step:
    """A step that passes its input through, with a no-op compensation."""

    async def action(data: Any, context: sagakit.WorkflowContext) -> Any:
        return None

    async def undo(data: Any, context: sagakit.WorkflowContext) -> None:
        return None

    return sagakit.step(action, undo if compensate else None, name=name)


def failing(error: BaseException) -> Callable[[Any, sagakit.WorkflowContext], Any]:
    """A step function that raises ``error``."""

    async def fail(data: Any, context: sagakit.WorkflowContext) -> Any:
        raise error

    return fail


def flaky(failures: int) -> Callable[[Any, sagakit.WorkflowContext], Any]:
    """A step function that fails ``failures`` times, then succeeds."""
    calls = {"n": 0}

    async def sometimes(data: Any, context: sagakit.WorkflowContext) -> Any:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise ConnectionError(f"attempt {calls['n']} lost")
        return {**data, "charged": True}

    return sometimes


def blocking(started: asyncio.Event) -> Callable[[Any, sagakit.WorkflowContext], Any]:
    """A step function that signals ``started`` and then waits until cancelled."""

    async def wait_forever(data: Any, context: sagakit.WorkflowContext) -> Any:
        started.set()
        await asyncio.Event().wait()

    return wait_forever
