"""Run the same saga on Temporal (``pip install sagakit[temporal]``).

``TemporalBackend`` runs a saga as a workflow on a Temporal cluster and returns the same
``Run`` as the local engine; ``serve`` runs a worker in this process; ``python -m
sagakit.temporal worker`` runs one as its own process. ``import sagakit`` never imports this
package, and this package imports ``temporalio`` only when one of its names is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagakit.temporal._binary import dev_server_path
    from sagakit.temporal._errors import RemoteStepError
    from sagakit.temporal._tracing import StepSpans, tracing_interceptors
    from sagakit.temporal.backend import TemporalBackend, default_workflow_id
    from sagakit.temporal.codec import AesGcmCodec, EncryptionKeyError, encrypted_data_converter, read_key_file
    from sagakit.temporal.worker import build_worker, serve
    from sagakit.temporal.workflow import SagaWorkflow

__all__ = [
    "AesGcmCodec",
    "EncryptionKeyError",
    "RemoteStepError",
    "SagaWorkflow",
    "StepSpans",
    "TemporalBackend",
    "build_worker",
    "default_workflow_id",
    "dev_server_path",
    "encrypted_data_converter",
    "read_key_file",
    "serve",
    "tracing_interceptors",
]

_WHERE = {
    "AesGcmCodec": "sagakit.temporal.codec",
    "EncryptionKeyError": "sagakit.temporal.codec",
    "encrypted_data_converter": "sagakit.temporal.codec",
    "read_key_file": "sagakit.temporal.codec",
    "RemoteStepError": "sagakit.temporal._errors",
    "SagaWorkflow": "sagakit.temporal.workflow",
    "StepSpans": "sagakit.temporal._tracing",
    "TemporalBackend": "sagakit.temporal.backend",
    "build_worker": "sagakit.temporal.worker",
    "default_workflow_id": "sagakit.temporal.backend",
    "dev_server_path": "sagakit.temporal._binary",
    "serve": "sagakit.temporal.worker",
    "tracing_interceptors": "sagakit.temporal._tracing",
}


def require_temporalio() -> None:
    """Raise a clear ``ImportError`` when the ``temporal`` extra is missing."""
    try:
        import temporalio  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "sagakit.temporal needs the temporalio package: pip install sagakit[temporal]"
        ) from exc


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sagakit.temporal' has no attribute {name!r}")
    if module not in ("sagakit.temporal._errors", "sagakit.temporal._binary"):
        require_temporalio()
    return getattr(importlib.import_module(module), name)
