"""The ``sagakit`` command line.

``python -m sagakit recover --journal PATH module:saga [module:saga ...]`` carries on the runs a
crash left unfinished in a journal (rolled back, or forward past their pivot), using the saga
definitions it imports from your modules.

``python -m sagakit runs --journal PATH [--status stuck,compensation_failed] [--saga NAME]``
lists the runs recorded in a journal (by default: those that need an operator).

``python -m sagakit resume RUN_ID --journal PATH --saga module:saga`` finishes one run that
needs an operator, once its cause is fixed (see :meth:`sagakit.SqliteJournal.resume`).

Exit status: 0 when every run taken on finished cleanly (or there was none), 1 when some run
still needs attention (a compensation failed, a step is stuck) or was skipped, 2 for a usage
error (a bad argument, a saga that cannot be imported, a journal that cannot be opened or is
damaged, a run that cannot be resumed: nothing was changed then, except that ``recover`` first
recovered every run that could still be read, and the one line printed names the damaged runs).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["load_saga", "main"]


class UsageError(Exception):
    """A command-line argument that cannot be used; the message says why."""


def load_saga(spec: str) -> Any:
    """Import ``module:attribute`` (the attribute may be dotted) and return the :class:`~sagakit.Saga` there.

    Raises:
        UsageError: the spec is malformed, the module or attribute is missing, or it is not a saga.
    """
    from sagakit.saga import Saga

    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise UsageError(f"saga {spec!r}: expected module:attribute, such as myapp.orders:order_saga")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"saga {spec!r}: cannot import module {module_name!r} ({exc}); is it on PYTHONPATH?") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"saga {spec!r}: module {module_name!r} has no attribute {attribute!r}") from None
    if callable(target) and not isinstance(target, Saga):
        target = target()  # a factory building the saga
    if not isinstance(target, Saga):
        raise UsageError(f"saga {spec!r}: expected a sagakit.Saga (or a function returning one), got "
                         f"{type(target).__name__}")
    return target


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sagakit", description="sagakit: sagas you can see, break and recover.")
    commands = parser.add_subparsers(dest="command", required=True)
    recover = commands.add_parser(
        "recover",
        help="roll back the runs a crash left unfinished in a journal",
        description="Roll back the runs a crash left unfinished in a SQLite journal. Compensations run in reverse "
        "order with the recorded data and the engine's idempotency keys.",
    )
    recover.add_argument("--journal", required=True, help="the journal file (SqliteJournal path)")
    recover.add_argument("sagas", nargs="+", metavar="module:saga", help="where to import each saga definition from")
    recover.add_argument("--force", action="store_true",
                         help="also recover runs whose process still seems alive (only if you know it is not)")
    recover.add_argument("--retry-failed", action="store_true",
                         help="also retry the failed compensations of runs marked for attention")
    recover.add_argument("--dry-run", action="store_true", help="list the unfinished runs, change nothing")
    runs = commands.add_parser(
        "runs",
        help="list the runs recorded in a journal (by default those that need an operator)",
        description="List the runs recorded in a SQLite journal, oldest first: run id, saga, status, when it "
        "started, and why it needs attention.",
    )
    runs.add_argument("--journal", required=True, help="the journal file (SqliteJournal path)")
    runs.add_argument("--status", default="stuck,compensation_failed",
                      help="comma-separated statuses to list (completed, compensated, compensation_failed, cancelled, "
                      "stuck, unfinished, or all); default: stuck,compensation_failed")
    runs.add_argument("--saga", help="only the runs of this saga (its name)")
    resume = commands.add_parser(
        "resume",
        help="finish a run that needs an operator, once its cause is fixed",
        description="Resume one run: a stuck run retries its pending step and goes on forward; a "
        "compensation_failed run retries its failed compensations and goes on with the rollback. Nothing that "
        "already succeeded runs again.",
    )
    resume.add_argument("run_id", help="the run (see `sagakit runs`)")
    resume.add_argument("--journal", required=True, help="the journal file (SqliteJournal path)")
    resume.add_argument("--saga", required=True, metavar="module:saga", help="where to import the saga definition from")
    return parser


def _recover(options: argparse.Namespace) -> int:
    from sagakit.journal import JournalError, recover
    from sagakit.redaction import default_redactor
    from sagakit.runs import error_message

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: import the user's modules from here
    sagas = [load_saga(spec) for spec in options.sagas]
    journal = _open_journal(options.journal)
    try:
        with journal:
            if options.dry_run:
                listed = journal.runs(unfinished=True, attention=options.retry_failed)
                for entry in listed:
                    state = "running" if entry.live else ("needs attention" if entry.status else "interrupted")
                    print(f"{entry.run_id}  {entry.saga}  {state}  (process {entry.owner.pid} on {entry.owner.host})")
                print(f"{len(listed)} run(s) to look at; nothing changed (--dry-run)")
                return 0
            result = asyncio.run(recover(journal, sagas, force=options.force, retry_failed=options.retry_failed))
    except JournalError as exc:  # a damaged file: what could be recovered was; the message says what to do
        raise UsageError(str(exc)) from exc
    for run in result.runs:
        line = f"{run.run_id}  {run.saga}  {run.status}"
        if run.status in ("compensation_failed", "stuck"):
            line += f"  NEEDS ATTENTION: {error_message(run.error, run=run)}"
        print(line)
    for skipped in result.skipped:
        print(f"{skipped.run_id}  {skipped.saga}  skipped: {default_redactor().scrub(skipped.reason)}")
    if not result.runs and not result.skipped:
        print("nothing to recover")
    else:
        print(f"{len(result.runs)} run(s) recovered, {len(result.needs_attention)} need attention, "
              f"{len(result.skipped)} skipped")
    return 0 if result.ok else 1


_STATUSES = ("completed", "compensated", "compensation_failed", "cancelled", "stuck", "unfinished")


def _open_journal(path: str) -> Any:
    from sagakit.journal import JournalError, SqliteJournal

    try:
        return SqliteJournal(path)
    except (JournalError, ValueError) as exc:
        raise UsageError(str(exc).replace("SqliteJournal path", "--journal")) from exc


def _runs(options: argparse.Namespace) -> int:
    from sagakit.journal import JournalError
    from sagakit.redaction import default_redactor

    wanted = {part.strip() for part in options.status.split(",") if part.strip()}
    if "all" in wanted:
        wanted = set(_STATUSES)
    unknown = sorted(wanted - set(_STATUSES))
    if unknown or not wanted:
        raise UsageError(f"--status: expected a comma-separated list of {', '.join(_STATUSES)} or all, "
                         f"got {options.status!r}")
    try:
        with _open_journal(options.journal) as journal:
            listed = [entry for entry in journal.runs()
                      if (entry.status or "unfinished") in wanted and (options.saga is None or entry.saga == options.saga)]
    except JournalError as exc:
        raise UsageError(str(exc)) from exc
    import datetime

    for entry in listed:
        started = datetime.datetime.fromtimestamp(entry.started_at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        state = entry.status or ("running" if entry.live else "interrupted")
        line = f"{entry.run_id}  {entry.saga}  {state}  started {started} UTC"
        if entry.attention:
            line += f"  {default_redactor().scrub(entry.attention)}"
        print(line)
    print(f"{len(listed)} run(s)")
    return 0


def _resume(options: argparse.Namespace) -> int:
    from sagakit.errors import ResumeRefused
    from sagakit.journal import JournalError
    from sagakit.runs import error_message

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: import the user's modules from here
    saga = load_saga(options.saga)
    try:
        with _open_journal(options.journal) as journal:
            run = journal.resume_sync(options.run_id, saga)
    except (ResumeRefused, JournalError) as exc:
        raise UsageError(str(exc)) from exc
    line = f"{run.run_id}  {run.saga}  {run.status}"
    if run.status in ("compensation_failed", "stuck"):
        line += f"  NEEDS ATTENTION: {error_message(run.error, run=run)}"
    print(line)
    return 0 if run.status in ("completed", "compensated") else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sagakit`` command; returns the exit status."""
    options = _parser().parse_args(argv)
    try:
        if options.command == "recover":
            return _recover(options)
        if options.command == "runs":
            return _runs(options)
        if options.command == "resume":
            return _resume(options)
    except UsageError as exc:
        print(f"sagakit {options.command}: {exc}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
