"""The anywidget front-end, kernel side: deltas, the inspector, replay, the static fallback, views."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from typing import Any

import pytest

import sagakit
from sagakit.notebook import widget
from sagakit.notebook.lab import Lab

from .conftest import Carrier, from_browser, linear_saga, make_step, pivot_saga, record_messages


class TestLiveDeltas:
    async def test_each_redraw_sends_only_what_changed(self) -> None:
        """For a 50-step saga, a redraw during a run sends only the steps that changed since the
        last one: about a hundred bytes a step, never the drawing."""
        saga = sagakit.Saga("wide", [
            sagakit.step(make_step(f"s{i}", delay=0.002 if i in (10, 25) else 0.0), compensate=make_step(f"u{i}"))
            for i in range(50)])
        saga.faults["s25"] = "fail"
        lab = saga.lab(throttle=0.0, charts=False)
        tree_bytes = len(json.dumps(lab.widget.tree))
        sent = record_messages(lab.widget)
        await lab.run()
        lab.flush()
        assert sent, "no delta was sent"
        assert all(message["t"] == "d" for message in sent)
        for message in sent:
            size = len(json.dumps(message))
            assert size < 150 * max(1, len(message["s"])) + 100 and size * 10 < tree_bytes
            assert len(message["s"]) < 50 or "r" in message
        assert any("state-failed" in message["s"].get("s25", "") for message in sent)

    def test_the_view_opens_with_the_full_state(self, order_saga: sagakit.Saga) -> None:
        """A view opened later gets every step's classes and notes from the ``state`` trait."""
        order_saga.faults["charge_payment"] = "fail"
        lab = order_saga.lab(data={})
        state = lab.widget.state
        assert set(state["s"]) == set(order_saga.step_names)
        assert "injected" in state["s"]["charge_payment"]
        assert state["n"]["charge_payment"] == "retry=1 · ⚡ fail"


def _branch(name: str, key: str, seen: dict[str, Any]) -> Any:
    async def action(data: Any, context: sagakit.WorkflowContext) -> Any:
        seen[name] = data
        return {**data, key: True}

    action.__name__ = name
    return action


class TestInspector:
    async def test_a_parallel_branch_and_the_step_after_show_what_they_received(self) -> None:
        """A branch shows the stage's input (not its sibling's output); the step after the stage
        shows the merged outputs of every branch; both as the function received them, redacted."""
        seen: dict[str, Any] = {}
        saga = sagakit.Saga("order", [
            sagakit.step(_branch("reserve", "reserved", seen), compensate=make_step("release")),
            sagakit.parallel(_branch("notify_warehouse", "warehouse_notified", seen),
                             _branch("notify_customer", "customer_notified", seen)),
            sagakit.step(_branch("ship", "shipped", seen)),
        ])
        lab = saga.lab(data={"order": 1, "card": "4111 1111 1111 1111"}, charts=False)
        await lab.run()
        lab.flush()
        assert seen["notify_customer"] == {"order": 1, "card": "4111 1111 1111 1111", "reserved": True}
        shown = lab.inspect("notify_customer")["input"]
        assert shown == "{'card': '[REDACTED]', 'order': 1, 'reserved': True}"
        assert lab.inspect("notify_warehouse")["input"] == shown
        assert lab.inspect("ship")["input"] == (
            "{'card': '[REDACTED]', 'customer_notified': True, 'order': 1, 'reserved': True, "
            "'warehouse_notified': True}")

    async def test_a_compensation_shows_what_it_received(self) -> None:
        """Clicking a compensation arrow shows its input (the step's output) for a finished run;
        a step compensated on failure shows the step's own input."""
        seen: dict[str, Any] = {}

        async def charge(data: Any, context: sagakit.WorkflowContext) -> Any:
            raise TimeoutError("no answer")

        saga = sagakit.Saga("pay", [
            sagakit.step(_branch("reserve", "reserved", seen), compensate=make_step("release")),
            sagakit.step(charge, compensate=make_step("refund"), compensate_on_failure=True),
        ])
        lab = saga.lab(data={"order": 7}, charts=False)
        await lab.run()
        lab.flush()
        undo = lab.inspect("reserve", "compensate")
        assert undo["title"] == "compensation of reserve (release)"
        assert undo["input"] == "{'order': 7, 'reserved': True}"
        assert [row[1] for row in undo["attempts"]] == ["succeeded"]
        assert lab.inspect("charge", "compensate")["input"] == "{'order': 7, 'reserved': True}"

    async def test_clicking_a_failed_step_shows_its_attempts_redacted(self) -> None:
        """The inspector shows each attempt's status, error, frames and key; secrets are masked."""
        async def charge(data: Any, context: sagakit.WorkflowContext) -> Any:
            raise RuntimeError(f"card {data['card']} declined")

        saga = sagakit.Saga("pay", [
            sagakit.step(make_step("reserve"), compensate=make_step("release")),
            sagakit.step(charge, retry=sagakit.RetryPolicy(max_retries=1, initial_delay=0.0, jitter=0.0)),
        ])
        lab = saga.lab(data={"card": "4111 1111 1111 1111", "password": "hunter2"}, charts=False)
        await lab.run()
        lab.flush()
        from_browser(lab.widget, {"t": "inspect", "step": "charge", "phase": "forward"})
        shown = lab.widget.inspector
        assert len(shown["attempts"]) == 2
        assert {row[5] for row in shown["attempts"]} == {"RuntimeError"}
        assert all("declined" in row[6] for row in shown["attempts"])
        frames = [frame for row in shown["attempts"] for frame in row[7]]
        assert any(frame.endswith("in charge") for frame in frames)
        assert not any("engine.py" in frame or "policies.py" in frame for frame in frames)
        assert shown["key"] == f"{saga.history.last.run_id}:charge"
        text = json.dumps(shown)
        assert "4111" not in text and "hunter2" not in text
        from_browser(lab.widget, {"t": "inspect", "step": ""})
        assert lab.widget.inspector == {}

    async def test_the_inspector_follows_the_run_shown(self) -> None:
        """An open inspector never keeps a previous run's data: while a run is in flight it says
        so, and afterwards it shows the new run's attempts."""
        saga = sagakit.Saga("slow", [
            sagakit.step(make_step("first"), compensate=make_step("undo_first")),
            sagakit.step(make_step("second", delay=0.05)),
        ])
        saga.faults["second"] = "fail"
        lab = saga.lab(charts=False, throttle=0.01)
        await lab.run()
        lab.flush()
        assert lab.inspect("second")["state"] == "failed"
        del saga.faults["second"]
        from_browser(lab.widget, {"t": "run"})
        for _ in range(200):
            await asyncio.sleep(0.005)
            if lab.widget.inspector.get("message"):
                break
        assert "in flight" in lab.widget.inspector["message"]
        await lab.wait()
        shown = lab.widget.inspector
        assert shown["state"] == "succeeded" and [row[1] for row in shown["attempts"]] == ["succeeded"]
        assert shown["run"] == saga.history.last.run_id[:8]

    async def test_an_injected_fault_shows_no_machinery_frames(self) -> None:
        """A fault injected into a retried step: every attempt says injected, and no frame of
        sagakit's or a library's is passed off as the step's."""
        saga = sagakit.Saga("pay", [
            sagakit.step(make_step("charge"), retry=sagakit.RetryPolicy(max_retries=2, initial_delay=0.0, jitter=0.0)),
        ])
        saga.faults = {"charge": "fail"}
        lab = saga.lab(data={}, charts=False)
        await lab.run()
        lab.flush()
        attempts = lab.inspect("charge")["attempts"]
        assert len(attempts) == 3 and all(row[3] and row[5] == "InjectedFault" for row in attempts)
        assert all(row[7] == [] for row in attempts)


class TestReplay:
    async def test_replay_has_one_frame_per_event(self, order_saga: sagakit.Saga) -> None:
        """Replay frames step through every event; each frame names only the steps it changed."""
        lab = order_saga.lab(data={}, charts=False)
        order_saga.faults["ship_order"] = "fail"
        await lab.run()
        lab.flush()
        from_browser(lab.widget, {"t": "replay"})
        replay = lab.widget.replay
        assert len(replay["frames"]) == len(replay["labels"]) > 10
        assert all(state == "state-pending" for state in replay["base"]["s"].values())
        assert replay["labels"][0] == "run started"
        assert any("state-failed" in frame["s"].get("ship_order", "") for frame in replay["frames"])
        assert all(len(frame["s"]) <= 1 for frame in replay["frames"][1:])
        assert replay["frames"][-1]["c"].startswith("rolled back")

    async def test_a_run_observed_live_replays_its_compensations_in_flight(self) -> None:
        """A run the Lab watched live keeps the start of each attempt: its replay shows each
        compensation in flight, which a finished run's own events cannot."""
        saga = linear_saga(3, name="live-replay")
        saga.faults["s2"] = "fail"
        lab = saga.lab(charts=False)
        await lab.run()
        lab.flush()
        from_browser(lab.widget, {"t": "replay"})
        labels = lab.widget.replay["labels"]
        assert "compensation started s1" in labels
        assert labels.index("compensation started s1") < labels.index("compensation succeeded s1")

    async def test_running_closes_a_replay_left_open(self, order_saga: sagakit.Saga) -> None:
        """A replay left open never freezes the live view: a new run closes it and the view gets
        the live state again."""
        lab = order_saga.lab(data={}, charts=False)
        order_saga.faults["charge_payment"] = "fail"
        await lab.run()
        lab.flush()
        from_browser(lab.widget, {"t": "replay"})
        assert lab.widget.replay["frames"]
        del order_saga.faults["charge_payment"]
        await lab.run()
        lab.flush()
        assert lab.widget.replay == {}
        assert "state-succeeded" in lab.widget.state["s"]["charge_payment"]


class TestResumedRuns:
    async def test_the_inspector_tells_a_steps_kind_and_which_attempts_a_resume_made(self, tmp_path: Any) -> None:
        """The inspector names each step's kind (and what it means); a stuck step says how to
        finish the run; after a resume, the attempts it made are marked with their resumption."""
        carrier = Carrier()
        saga = pivot_saga(carrier)
        journal = sagakit.SqliteJournal(tmp_path / "runs.db")
        try:
            stuck = await saga.run({}, journal=journal)
            view = widget.diagram_view(stuck)
            view.inspect("ship")
            shown = view.inspector
            assert shown["kind"].startswith("retriable") and "never compensated" in shown["kind_help"]
            assert shown["state"] == "stuck" and "resume the run from its journal" in shown["hint"]
            view.inspect("capture")
            assert view.inspector["kind"].startswith("pivot") and view.inspector["other"] == ""
            view.inspect("check")
            assert view.inspector["kind"] == "read-only" and "nothing to undo" in view.inspector["kind_help"]
            carrier.up = True
            finished = await journal.resume(stuck.run_id, saga)
        finally:
            journal.close()
        view = widget.diagram_view(finished)
        view.inspect("ship")
        assert [(row[0], row[1], row[8]) for row in view.inspector["attempts"]] == [
            (1, "failed", 0), (2, "failed", 0), (3, "failed", 0), (4, "succeeded", 1)]
        view.inspect("reserve")
        assert view.inspector["kind"] == "compensatable" and view.inspector["attempts"][0][8] == 0

    async def test_the_replay_of_a_resumed_run_marks_where_it_was_resumed(self, tmp_path: Any) -> None:
        """Replaying a resumed run passes the point where it was resumed: a frame labelled with
        what the run was, whose position the replay lists; the stuck step is stuck before it and
        succeeds after it."""
        carrier = Carrier()
        saga = pivot_saga(carrier)
        journal = sagakit.SqliteJournal(tmp_path / "runs.db")
        try:
            stuck = await saga.run({}, journal=journal)
            carrier.up = True
            finished = await journal.resume(stuck.run_id, saga)
        finally:
            journal.close()
        view = widget.diagram_view(finished)
        from_browser(view, {"t": "replay"})
        replay = view.replay
        [at] = replay["resumed"]
        assert replay["labels"][at - 1] == "run resumed (it was stuck)"
        states: dict[str, str] = dict(replay["base"]["s"])
        for frame in replay["frames"][:at]:
            states.update(frame["s"])
        assert states["ship"] == "state-stuck"
        for frame in replay["frames"][at:]:
            states.update(frame["s"])
        assert states["ship"] == "state-succeeded" and states["mail"] == "state-succeeded"
        assert re.fullmatch(r"completed · resumed once, [\d.]+ ms to finish · [\d.]+ ms since it started",
                            replay["frames"][-1]["c"])


class TestStop:
    def slow_saga(self) -> sagakit.Saga:
        return sagakit.Saga("slow", [
            sagakit.step(make_step("first"), compensate=make_step("undo_first")),
            sagakit.step(make_step("second", delay=5.0), compensate=make_step("undo_second")),
        ])

    async def wait_running(self, lab: Lab, step: str) -> None:
        for _ in range(500):
            lab.flush()
            if lab.states[step] == "running":
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{step} never ran")

    async def test_stop_cancels_the_run_and_rolls_it_back(self) -> None:
        """The Stop button's message cancels the run in flight; the completed step is compensated,
        and the status says it was stopped, where, and how many steps were compensated."""
        saga = self.slow_saga()
        lab = saga.lab(charts=False, throttle=0.01)
        from_browser(lab.widget, {"t": "run"})
        assert lab.widget.busy
        await self.wait_running(lab, "second")
        from_browser(lab.widget, {"t": "stop"})
        await asyncio.wait({lab.task})
        assert lab.task.cancelled()
        run = saga.history.last
        assert run is not None and run.status == "cancelled"
        assert run.compensated_steps == ["first"]
        assert lab.states["first"] == "compensated" and lab.states["second"] == "cancelled"
        status = "".join(text for _, text in lab.widget.status["text"])
        assert lab.widget.status["level"] == "stopped"
        assert "stopped while second ran" in status and "1 step compensated" in status and "failed" not in status
        assert not lab.widget.busy

    async def test_an_interrupt_stops_a_lab_run(self) -> None:
        """SIGINT during a Lab run (a kernel interrupt) cancels it, and the handler is put back after."""
        saga = self.slow_saga()
        lab = saga.lab(charts=False, throttle=0.01)
        before = signal.getsignal(signal.SIGINT)
        from_browser(lab.widget, {"t": "run"})
        await self.wait_running(lab, "second")
        # Checked first: without the Lab's handler, the signal would stop the whole test session.
        assert signal.getsignal(signal.SIGINT) is not before
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.wait({lab.task})
        assert lab.task.cancelled()
        assert saga.history.last is not None and saga.history.last.compensated_steps == ["first"]
        assert signal.getsignal(signal.SIGINT) is before


class TestDiagramView:
    async def test_views_of_a_saga_and_of_a_run(self, order_saga: sagakit.Saga) -> None:
        """``diagram_view`` marks a saga's planned faults; a run's view inspects and replays that run."""
        order_saga.faults["ship_order"] = "fail"
        saga_view = widget.diagram_view(order_saga)
        assert "injected" in saga_view.state["s"]["ship_order"] and saga_view.run is None
        run = await order_saga.run({})
        run_view = widget.diagram_view(run)
        assert run_view.run is run and run_view.replayable
        assert "state-failed" in run_view.state["s"]["ship_order"]
        assert run_view.state["c"].startswith("rolled back")

    def test_anything_else_is_refused(self) -> None:
        """A value that is neither a Saga nor a Run is a TypeError naming what was expected."""
        with pytest.raises(TypeError, match=r"expected a sagakit\.Saga or a sagakit\.Run, got str"):
            widget.diagram_view("order")  # type: ignore[arg-type]

    def test_a_wide_saga_is_wrapped_to_the_width_the_view_reports(self) -> None:
        """The view's width (in points) wraps a long saga onto rows; the same width again changes nothing."""
        view = widget.diagram_view(linear_saga(25, name="view-wraps"))
        rows = len(view.template.rows)
        from_browser(view, {"t": "width", "pt": 600})
        assert len(view.template.rows) > rows and view.template.width <= 601
        tree = view.tree
        from_browser(view, {"t": "width", "pt": 600})
        assert view.tree is tree

    async def test_the_static_fallback_is_the_diagram_and_the_status(self) -> None:
        """What shows without the view: the coloured SVG and the status line, marked for the view to hide."""
        saga = linear_saga(3, name="static")
        saga.faults["s2"] = "fail"
        run = await saga.run({})
        bundle = widget.diagram_view(run).static_bundle("✖ rolled back: s2 failed")
        assert 'class="sagakit-static"' in bundle["text/html"] and "rolled back: s2 failed" in bundle["text/html"]
        assert "state-compensated" in bundle["image/svg+xml"] and "state-failed" in bundle["image/svg+xml"]


def test_the_front_end_ships_in_the_package_builds_from_data_and_loads_nothing_from_the_network() -> None:
    """The ES module and style sheet are package files; the module imports nothing (no CDN), and
    never turns a string into markup (no innerHTML, outerHTML, insertAdjacentHTML or DOMParser)."""
    script = (widget.STATIC / "sagakit.js").read_text()
    assert (widget.STATIC / "sagakit.css").is_file()
    assert "export default" in script
    assert not re.search(r"^\s*import\b|\bimport\(", script, re.MULTILINE)
    assert "https://" not in script and script.count("http://") == script.count('"http://www.w3.org/2000/svg"')
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "DOMParser", "document.write", "eval("):
        assert sink not in script, sink
