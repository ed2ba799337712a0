"""The ``sagakit`` command line.

``python -m sagakit recover --journal PATH module:saga [module:saga ...]`` rolls back the runs a
crash left unfinished in a journal, using the saga definitions it imports from your modules.

Exit status: 0 when every unfinished run was rolled back (or there was none), 1 when some run
needs attention (a compensation failed) or was skipped, 2 for a usage error (a bad argument, a
saga that cannot be imported, a journal that cannot be opened or is damaged: then every run that
could still be read was recovered, and the one line printed names the damaged runs).
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
    return parser


def _recover(options: argparse.Namespace) -> int:
    from sagakit.journal import JournalError, SqliteJournal, recover
    from sagakit.redaction import default_redactor
    from sagakit.runs import error_message

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: import the user's modules from here
    sagas = [load_saga(spec) for spec in options.sagas]
    try:
        journal = SqliteJournal(options.journal)
    except (JournalError, ValueError) as exc:
        raise UsageError(str(exc).replace("SqliteJournal path", "--journal")) from exc
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
        if run.status == "compensation_failed":
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sagakit`` command; returns the exit status."""
    options = _parser().parse_args(argv)
    try:
        if options.command == "recover":
            return _recover(options)
    except UsageError as exc:
        print(f"sagakit {options.command}: {exc}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
