"""Where the Lab's history comes from: the saga's own runs, and those a journal holds.

:class:`LabRuns` numbers the runs the Lab lists, oldest first: the runs read from a journal
(recorded by earlier kernels and other processes) that this kernel did not make, then
``saga.history``. Given a journal, the Lab's own runs are recorded there too, and the runs it
holds that need an operator (``stuck``, ``compensation_failed``) can be resumed. A resumed run
keeps its place in the list: it is the same run, carried on.
"""

from __future__ import annotations

import os
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
        if self._recorded:
            ids = {run.run_id for run in live}
            live = [run for run in self._recorded if run.run_id not in ids] + live
        return _latest(live)

    def from_journal(self) -> frozenset[str]:
        """The ids of the runs listed because the journal holds them (not made by this kernel)."""
        live = {run.run_id for run in self.saga.history}
        return frozenset(run.run_id for run in self._recorded if run.run_id not in live)

    def close(self) -> None:
        """Close the journal if it was opened here."""
        if self._owned and self.journal is not None:
            self.journal.close()


def _latest(runs: list[Run]) -> list[Run]:
    # A resumed run is in the history twice (as it stopped, and as it ended): one row for it.
    latest = {run.run_id: run for run in runs}
    if len(latest) == len(runs):
        return runs
    seen: set[str] = set()
    found = []
    for run in runs:
        if run.run_id not in seen:
            seen.add(run.run_id)
            found.append(latest[run.run_id])
    return found
