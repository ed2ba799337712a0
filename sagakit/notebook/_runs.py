"""Where the Lab's history comes from: the saga's own runs, and those a journal holds.

:class:`LabRuns` numbers the runs the Lab lists, oldest first: the runs read from a journal
(recorded by earlier kernels and other processes) that this kernel did not make, then
``saga.history``. Given a journal, the Lab's own runs are recorded there too, and the runs it
holds that need an operator (``stuck``, ``compensation_failed``) can be resumed. A resumed run
keeps its place in the list: it is the same run, carried on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sagakit._resume import RESUMABLE

if TYPE_CHECKING:
    from sagakit.runs import Run
    from sagakit.saga import Saga

__all__ = ["RESUMABLE", "LabRuns"]


class LabRuns:
    """The runs a Lab lists.

    Args:
        saga: the Lab's saga (its journal runs are matched by name).
        journal: a :class:`~sagakit.SqliteJournal`, the path of one (opened here, closed by
            :meth:`close`), or ``None``.

    Raises:
        TypeError: ``journal`` is neither.
        JournalError: the journal cannot be opened or read.
    """

    def __init__(self, saga: Saga, journal: Any = None) -> None:
        self.saga = saga
        self._owned = False
        if journal is not None:
            if isinstance(journal, str | os.PathLike):
                from sagakit.journal import SqliteJournal

                journal, self._owned = SqliteJournal(journal), True
            elif not callable(getattr(journal, "history", None)) or not isinstance(getattr(journal, "path", None), Path):
                raise TypeError(f"Lab journal: expected a sagakit.SqliteJournal or the path of one, got {journal!r}")
        self.journal = journal
        self._recorded: list[Run] = []
        self._in_journal: set[str] = set()  # the ids of runs known to be recorded in the journal
        self.refresh()

    @property
    def label(self) -> str:
        """The journal's file name (``""`` without a journal)."""
        return "" if self.journal is None else Path(self.journal.path).name

    @property
    def record_to(self) -> Any:
        """The journal to record the Lab's runs in, unless the saga records them there already."""
        journal = self.journal
        return journal if journal is not None and self.saga.journal is not journal else None

    def refresh(self) -> None:
        """Read the journal again (runs other processes recorded since)."""
        if self.journal is not None:
            self._recorded = list(self.journal.history(saga=self.saga))
            self._in_journal.update(run.run_id for run in self._recorded)

    def recorded(self, run: Run) -> None:
        """Note that ``run`` is in the journal (the Lab ran or resumed it there)."""
        if self.journal is not None:
            self._in_journal.add(run.run_id)

    def resumable(self, run: Run) -> bool:
        """Whether ``run`` can be offered for resuming: it needs an operator, and this Lab's
        journal holds it."""
        if self.journal is None or run.status not in RESUMABLE:
            return False
        return run.run_id in self._in_journal or self.saga.journal is self.journal

    def all(self) -> list[Run]:
        """Every run, oldest first: the journal's (not made by this kernel), then ``saga.history``;
        a run resumed since is listed once, where it first was, as it stands now."""
        live = list(self.saga.history)
        if not self._recorded:
            return _latest(live, ())
        made = _made_here(live)
        return _latest([run for run in self._recorded if run.run_id not in made] + live, self._recorded)

    def from_journal(self) -> frozenset[str]:
        """The ids of the runs listed because the journal holds them (not made by this kernel)."""
        made = _made_here(self.saga.history)
        return frozenset(run.run_id for run in self._recorded if run.run_id not in made)

    def close(self) -> None:
        """Close the journal if it was opened here."""
        if self._owned and self.journal is not None:
            self.journal.close()


def _made_here(live: Iterable[Run]) -> set[str]:
    # The runs this kernel made: first seen here as they began, not as a resumption of a run
    # another process (or an earlier kernel) recorded.
    made: set[str] = set()
    seen: set[str] = set()
    for run in live:
        if run.run_id not in seen:
            seen.add(run.run_id)
            if not _resumed(run):
                made.add(run.run_id)
    return made


def _latest(listed: list[Run], recorded: Sequence[Run]) -> list[Run]:
    # A resumed run is in the history twice (as it stopped, and as it ended), and the journal may
    # hold a later version than this kernel saw (another process resumed it): one row per run,
    # where it was first listed, as it was last carried on.
    latest: dict[str, Run] = {}
    for run in (*recorded, *listed):  # on a tie the kernel's own object wins
        current = latest.get(run.run_id)
        if current is None or _resumed(run) >= _resumed(current):
            latest[run.run_id] = run
    if len(latest) == len(listed) and all(latest[run.run_id] is run for run in listed):
        return listed
    seen: set[str] = set()
    found = []
    for run in listed:
        if run.run_id not in seen:
            seen.add(run.run_id)
            found.append(latest[run.run_id])
    return found


def _resumed(run: Run) -> int:
    return int((run.info or {}).get("resumed", 0) or 0)
