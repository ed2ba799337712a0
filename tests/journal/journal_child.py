"""A child process for the journal tests: it runs sagas on a journal until it is killed.

Usage: ``python journal_child.py MODE JOURNAL SERVICE [options]``; it prints ``ready`` once the
journal is open and work has begun, so that the parent can time a kill.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys

import journal_service

import sagakit
from sagakit.events import Event


def ready() -> None:
    sys.stdout.write("ready\n")
    sys.stdout.flush()


async def run_forever(journal: sagakit.SqliteJournal, service: str, concurrency: int, seed: int) -> None:
    random.seed(seed)
    saga = journal_service.order_saga(jitter=0.004)
    announced = False
    while True:
        batch = [saga.run({"service": service}, journal=journal) for _ in range(concurrency)]
        if not announced:
            loop = asyncio.get_running_loop()
            loop.call_later(0.005, ready)  # once the first runs are under way
            announced = True
        await asyncio.gather(*batch)


async def run_once(journal: sagakit.SqliteJournal, service: str, saga_name: str, exit_on: str | None,
                   pad: int = 0) -> None:
    saga = {"order": journal_service.order_saga, "checkout": journal_service.checkout_saga,
            "shipment": journal_service.pivot_saga}[saga_name]()
    if exit_on:

        def crash(event: Event) -> None:
            if event.kind == exit_on:
                os._exit(17)

        saga.observe(crash)
    ready()
    data: dict[str, object] = {"service": service}
    if pad:
        data["pad"] = "PADDING-" * pad  # a run whose records fill pages of their own
    await saga.run(data, sagakit.WorkflowContext(correlation_id="crash-test"), journal=journal)


async def write(journal: sagakit.SqliteJournal, service: str, runs: int, parquet: str | None) -> None:
    saga = journal_service.checkout_saga()
    ready()
    finished = await asyncio.gather(*(saga.run({"service": service}, journal=journal) for _ in range(runs)))
    assert all(run.status == "completed" for run in finished), finished
    if parquet:
        saga.history.to_parquet(parquet)


async def recover(journal: sagakit.SqliteJournal) -> None:
    ready()
    await sagakit.recover(journal, [journal_service.order_saga(), journal_service.checkout_saga(),
                                    journal_service.pivot_saga()])


async def resume(journal: sagakit.SqliteJournal, run_id: str) -> None:
    ready()
    await journal.resume(run_id, journal_service.pivot_saga())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["forever", "once", "write", "recover", "resume"])
    parser.add_argument("journal")
    parser.add_argument("service")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--saga", default="order")
    parser.add_argument("--exit-on", default=None)
    parser.add_argument("--pad", type=int, default=0, help="once mode: add this many 8-byte units to the input")
    parser.add_argument("--durability", default="full")
    parser.add_argument("--parquet", default=None, help="write mode: save the history there too")
    parser.add_argument("--run-id", default=None, help="resume mode: the run to resume")
    options = parser.parse_args()
    journal = sagakit.SqliteJournal(options.journal, durability=options.durability)
    if options.mode == "forever":
        asyncio.run(run_forever(journal, options.service, options.concurrency, options.seed))
    elif options.mode == "once":
        asyncio.run(run_once(journal, options.service, options.saga, options.exit_on, options.pad))
    elif options.mode == "write":
        asyncio.run(write(journal, options.service, options.runs, options.parquet))
    elif options.mode == "resume":
        asyncio.run(resume(journal, options.run_id))
    else:
        asyncio.run(recover(journal))
    journal.close()


if __name__ == "__main__":
    main()
