"""Where the Lab's history comes from: the saga's own runs, and those a journal holds.

:class:`LabRuns` numbers the runs the Lab lists, oldest first: the runs read from a journal
(recorded by earlier kernels and other processes) that this kernel did not make, then
``saga.history``. Given a journal, the Lab's own runs are recorded there too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagakit.runs import Run
    from sagakit.saga import Saga

__all__ = ["LabRuns"]


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

    def all(self) -> list[Run]:
        """Every run, oldest first: the journal's (not made by this kernel), then ``saga.history``."""
        live = list(self.saga.history)
        if not self._recorded:
            return live
        ids = {run.run_id for run in live}
        return [run for run in self._recorded if run.run_id not in ids] + live

    def from_journal(self) -> frozenset[str]:
        """The ids of the runs listed because the journal holds them (not made by this kernel)."""
        live = {run.run_id for run in self.saga.history}
        return frozenset(run.run_id for run in self._recorded if run.run_id not in live)

    def close(self) -> None:
        """Close the journal if it was opened here."""
        if self._owned and self.journal is not None:
            self.journal.close()
