"""The durable SQLite journal: a run's progress is on disk before the run moves on.

:class:`SqliteJournal` is one more observer of the event stream. It records each run's start,
the end of every step attempt (with the data a completed step's compensation will need), every
compensation and the run's end in a SQLite file (stdlib :mod:`sqlite3`, WAL mode, a
versioned schema, created with mode ``0600``). The engine awaits :meth:`SqliteJournal.settle`
after each stage, so a step's completion is committed before the next step starts.

Writes happen on one writer thread per journal. The events of one event-loop turn form one
batch, and the writer commits every batch waiting for it in one transaction (group commit),
so a thousand concurrent sagas share their commits instead of paying one ``fsync`` each.

Reading back: :func:`load_history` (``RunHistory.from_journal``) rebuilds the runs of a
journal as :class:`~sagakit.Run` objects, so ``runs`` and ``steps`` frames survive a kernel
restart; :func:`history_to_parquet` and :func:`history_from_parquet` share an analysis
without payloads. :func:`recover` carries on the runs a crash left unfinished (rolled back, or
forward past their pivot), and :meth:`SqliteJournal.resume` finishes a run that needs an
operator (``stuck``, ``compensation_failed``).

The package's private modules: ``_sqlite`` (the writer), ``_file`` (schema, checks, process
liveness), ``_payload`` (serializers and masking), ``_history`` (reading back), ``_carry``
(claiming a run and handing it to the engine) and ``_recovery``. Where a recorded run stands is
read by the core's ``sagakit._resume``, which the Temporal backend's resume shares.

Secrets: payloads are redacted before they are stored (values under sensitive keys are
replaced by ``[REDACTED]``, see :mod:`sagakit.redaction`), and error messages are scrubbed.
By default the keys are those of the run's saga (``saga.redactor``) when the journal knows
the saga (:meth:`SqliteJournal.attach`, :meth:`SqliteJournal.bind`), else the default keys.
Compensations run by :func:`sagakit.recover` therefore see redacted data: they should depend
on ids, not on secrets. ``SqliteJournal(path, redact=False)`` stores payloads as given; the
file is created readable by its owner only either way.
"""

from __future__ import annotations

from sagakit.errors import JournalError, PayloadError, RunInterrupted
from sagakit.journal._file import SCHEMA_VERSION, Durability, JournalPermissionWarning
from sagakit.journal._history import (
    RecordedError,
    RecordedRun,
    history_from_parquet,
    history_to_parquet,
    load_history,
    read_runs,
)
from sagakit.journal._payload import JsonSerializer, Serializer
from sagakit.journal._recovery import Recovery, SkippedRun, recover, recover_sync
from sagakit.journal._sqlite import JournalRun, JournalStats, SqliteJournal

__all__ = [
    "SCHEMA_VERSION",
    "Durability",
    "JournalError",
    "JournalPermissionWarning",
    "JournalRun",
    "JournalStats",
    "JsonSerializer",
    "PayloadError",
    "RecordedError",
    "RecordedRun",
    "Recovery",
    "RunInterrupted",
    "Serializer",
    "SkippedRun",
    "SqliteJournal",
    "history_from_parquet",
    "history_to_parquet",
    "load_history",
    "read_runs",
    "recover",
    "recover_sync",
]
