"""Errors across the wire: describe an exception as JSON on the worker, rebuild it for the caller.

A step that fails on a worker raises an exception object the caller never sees; what travels
is a description (type, module, message, arguments, and the structured fields of sagakit's own
errors). The caller rebuilds the closest exception it can:

* sagakit's errors (``InjectedFault``, ``StepTimeout``, ``CompensationError`` with its
  ``failures`` and ``pending``, ``SagaStuck`` with its pending step and last error) are rebuilt
  from their fields, so messages match exactly;
* built-in exceptions (``ValueError``, ``KeyError``...) are rebuilt from their arguments;
* an exception class the caller has already imported (same module and name) is rebuilt from
  its arguments when that reproduces the same message;
* anything else becomes a :class:`RemoteStepError` subclass named after the original type,
  so ``type(run.error).__name__`` and the DataFrames still show the original type name.

Nothing here imports temporalio: the workflow and the backend both use these helpers.
"""

from __future__ import annotations

import builtins
import json
import sys
from typing import Any

from sagakit.errors import (
    CompensationError,
    CompensationFailure,
    InjectedFault,
    SagaError,
    SagaStuck,
    StepTimeout,
    error_text,
)

__all__ = ["RemoteStepError", "describe_error", "rebuild_error"]

#: A JSON description of an exception (see :func:`describe_error`).
ErrorInfo = dict[str, Any]


class RemoteStepError(SagaError):
    """An error raised on a worker whose type the caller cannot rebuild.

    The caller sees a subclass named after the original type (``PaymentDeclined``), so
    frames and reprs keep the original name; ``except RemoteStepError`` catches them all.

    Attributes:
        remote_type: the original exception's class name.
        remote_module: the module that defined it on the worker.
    """

    remote_type: str = "RemoteStepError"
    remote_module: str = __name__


_REMOTE_TYPES: dict[tuple[str, str], type[RemoteStepError]] = {}


def _remote_type(module: str, name: str) -> type[RemoteStepError]:
    key = (module, name)
    cls = _REMOTE_TYPES.get(key)
    if cls is None:
        cls = type(name, (RemoteStepError,), {"remote_type": name, "remote_module": module, "__module__": __name__})
        _REMOTE_TYPES[key] = cls
    return cls


def _json_args(args: tuple[Any, ...]) -> list[Any] | None:
    try:
        json.dumps(args)
    except (TypeError, ValueError):
        return None
    return list(args)


def describe_error(error: BaseException) -> ErrorInfo:
    """A JSON-serialisable description of ``error`` that :func:`rebuild_error` turns back."""
    cls = type(error)
    info: ErrorInfo = {
        "type": cls.__qualname__,
        "module": cls.__module__,
        "message": error_text(error),
        "args": _json_args(error.args),
    }
    if isinstance(error, InjectedFault):
        info["fields"] = {"step": error.step, "mode": error.mode}
    elif isinstance(error, StepTimeout):
        info["fields"] = {"step": error.step, "timeout": error.timeout}
    elif isinstance(error, SagaStuck):
        info["fields"] = {"saga": error.saga, "step": error.step, "pivot": error.pivot,
                          "original": describe_error(error.original)}
    elif isinstance(error, CompensationError):
        info["fields"] = {
            "saga": error.saga,
            "original": describe_error(error.original) if error.original is not None else None,
            "failures": [{"step": f.step, "error": describe_error(f.error)} for f in error.failures],
            "pending": list(error.pending),
        }
    return info


def rebuild_error(info: ErrorInfo | None, memo: dict[int, BaseException] | None = None) -> BaseException | None:
    """The closest exception to the one :func:`describe_error` described.

    Descriptions carrying an ``id`` are rebuilt once per ``memo``, so the event that
    recorded a failure and the run's ``error`` are the same object, as with the local engine.
    """
    if info is None:
        return None
    key = info.get("id")
    if memo is not None and isinstance(key, int) and key in memo:
        return memo[key]
    error = _rebuild(info, memo)
    if memo is not None and isinstance(key, int):
        memo[key] = error
    return error


def _rebuild(info: ErrorInfo, memo: dict[int, BaseException] | None) -> BaseException:
    name = str(info.get("type", "Exception"))
    module = str(info.get("module", "builtins"))
    message = str(info.get("message", ""))
    fields = info.get("fields") or {}
    if module == "sagakit.errors":
        try:
            if name == "InjectedFault":
                return InjectedFault(fields["step"], fields["mode"])
            if name == "StepTimeout":
                return StepTimeout(fields["step"], float(fields["timeout"]))
            if name == "SagaStuck":
                return SagaStuck(saga=fields["saga"], step=fields["step"], pivot=fields.get("pivot"),
                                 original=rebuild_error(fields["original"], memo) or RemoteStepError(message))
            if name == "CompensationError":
                return CompensationError(
                    saga=fields["saga"],
                    original=rebuild_error(fields.get("original"), memo),
                    failures=[
                        CompensationFailure(f["step"], rebuild_error(f["error"], memo) or RemoteStepError())
                        for f in fields.get("failures", ())
                    ],
                    pending=list(fields.get("pending", ())),
                )
        except (KeyError, TypeError, ValueError):
            pass
    args = info.get("args")
    cls: Any = None
    if module == "builtins":
        cls = getattr(builtins, name, None)
    elif module in sys.modules:  # only classes the caller already imported: never import by remote name
        cls = sys.modules[module]
        for part in name.split("."):
            cls = getattr(cls, part, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            error = cls(*args) if isinstance(args, list) else cls(message)
        except Exception:
            error = None
        if error is not None and error_text(error) == message:
            return error
    remote = _remote_type(module, name.rsplit(".", 1)[-1])(message)
    return remote
