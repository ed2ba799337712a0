"""The anywidget front-end, kernel side: deltas, inspector, replay, history clicks, Stop, interrupts."""

from __future__ import annotations

import asyncio
import html
import json
import os
import signal
from typing import Any

import pytest

import sagakit
from sagakit.notebook import widget
from sagakit.notebook.lab import Lab

from .conftest import linear_saga, make_step


def record_messages(view: Any) -> list[dict[str, Any]]:
    """Keep a copy of every custom message ``view`` sends (still sent on)."""
    sent: list[dict[str, Any]] = []
    send = view.send

    def recording(message: dict[str, Any]) -> None:
        sent.append(message)
        send(message)

    view.send = recording
    return sent


class TestLiveDeltas:
    async def test_each_redraw_sends_only_what_changed(self) -> None:
        """For a 50-step saga, a redraw after one event sends that step alone, well under 1 KiB."""
        saga = linear_saga(50, name="wide")
        lab = saga.lab(throttle=0.0, charts=False)
        svg_bytes = len(lab.diagram.svg)
        sent = record_messages(lab.diagram)
        saga.faults["s25"] = "fail"
        run = await saga.run({})
        lab.flush()
        sent.clear()
        for event in run.events:
            lab._events.append(event)
            lab.flush()
        assert sent, "no delta was sent"
        sizes = [len(json.dumps(message)) for message in sent]
        assert max(sizes) < 1024 < svg_bytes
        assert all(message["t"] == "d" for message in sent)
        failed = [message for message in sent if "s25" in message["s"] and "state-failed" in message["s"]["s25"]]
        assert failed and set(failed[0]["s"]) == {"s25"}

    def test_the_view_opens_with_the_full_state(self, order_saga: sagakit.Saga) -> None:
        """A view opened later gets every step's classes and notes from the ``state`` trait."""
        order_saga.faults["charge_payment"] = "fail"
        lab = order_saga.lab(data={})
        state = lab.diagram.state
        assert set(state["s"]) == set(order_saga.step_names)
        assert "injected" in state["s"]["charge_payment"]
        assert state["n"]["charge_payment"] == "retry=1 · ⚡ fail"
        assert 'id="step-charge_payment"' in html.unescape(lab.diagram.svg)


class TestInspector:
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
        lab.diagram._on_message(lab.diagram, {"t": "inspect", "step": "charge", "phase": "forward"}, [])
        shown = lab.diagram.inspector
        assert shown.count('class="sagakit-attempt') == 2
        assert "RuntimeError" in shown and "declined" in shown
        assert "in charge" in shown  # the error's frames
        # The step's own frames only: not the engine's nor the retry policy's.
        assert "engine.py" not in shown and "policies.py" not in shown
        assert f"{saga.history.last.run_id}:charge" in shown
        assert "4111" not in shown and "hunter2" not in shown
        lab.diagram._on_message(lab.diagram, {"t": "inspect", "step": "reserve", "phase": "compensate"}, [])
        assert "compensation of reserve" in lab.diagram.inspector
        assert ":compensate" in lab.diagram.inspector
        lab.diagram._on_message(lab.diagram, {"t": "inspect", "step": ""}, [])
        assert lab.diagram.inspector == ""


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
        lab.diagram._on_message(lab.diagram, {"t": "inspect", "step": "charge", "phase": "forward"}, [])
        shown = lab.diagram.inspector
        assert shown.count('class="sagakit-attempt') == 3
        assert shown.count("InjectedFault") == 3
        assert ".py:" not in shown


class TestReplayAndHistory:
    async def test_an_error_without_a_message_reads_as_its_type(self) -> None:
        """A cancelled run's CancelledError has no message: its history row says ``CancelledError``,
        not ``CancelledError:``; the Lab's status counts one compensation in the singular."""
        saga = sagakit.Saga("pay", [sagakit.step(make_step("reserve"), compensate=make_step("release")),
                                    sagakit.step(make_step("charge"))])
        with pytest.raises(asyncio.CancelledError):
            await saga.run({}, faults={"charge": "cancel"})
        run = saga.history.last
        assert run is not None and run.status == "cancelled"
        [row] = widget.history_rows([run], 1)
        assert row[3] == "CancelledError"
        saga.faults = {"charge": "fail"}
        lab = saga.lab(data={}, charts=False)
        await lab.run()
        lab.flush()
        status = html.unescape(lab.widget.status)
        assert "InjectedFault: injected fault" in status and " 1 compensation " in status

    async def test_replay_has_one_frame_per_event(self, order_saga: sagakit.Saga) -> None:
        """Replay frames step through every event; each frame names only the steps it changed."""
        lab = order_saga.lab(data={}, charts=False)
        order_saga.faults["ship_order"] = "fail"
        run = await lab.run()
        lab.flush()
        lab.diagram._on_message(lab.diagram, {"t": "replay"}, [])
        replay = lab.diagram.replay
        assert len(replay["frames"]) == len(run.events) == len(replay["labels"])
        assert all(state == "state-pending" for state in replay["base"]["s"].values())
        assert replay["labels"][0] == "run started"
        assert any("state-failed" in frame["s"].get("ship_order", "") for frame in replay["frames"])
        assert all(len(frame["s"]) <= 1 for frame in replay["frames"][1:])
        assert replay["frames"][-1]["c"].startswith("compensated")

    async def test_clicking_a_past_run_draws_it(self, order_saga: sagakit.Saga) -> None:
        """Selecting run 1 after a clean run 2 draws run 1's failure again."""
        lab = order_saga.lab(data={}, charts=False)
        order_saga.faults["charge_payment"] = "fail"
        await lab.run()
        del order_saga.faults["charge_payment"]
        await lab.run()
        lab.flush()
        assert [row[1] for row in lab.history.rows] == ["completed", "compensated"]
        assert lab.states["charge_payment"] == "succeeded"
        lab.history._on_message(lab.history, {"t": "select", "run": 1}, [])
        assert lab.states["charge_payment"] == "failed"
        assert lab.history.selected == 1
        assert lab.diagram.run is order_saga.history[0]
        assert lab.diagram.state["c"].startswith("run 1: compensated")


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
        """The Stop button's message cancels the run in flight; the completed step is compensated."""
        saga = self.slow_saga()
        lab = saga.lab(charts=False, throttle=0.01)
        lab.widget._on_message(lab.widget, {"t": "run"}, [])
        assert lab.diagram.busy
        await self.wait_running(lab, "second")
        lab.diagram._on_message(lab.diagram, {"t": "stop"}, [])
        await asyncio.wait({lab.task})
        assert lab.task.cancelled()
        run = saga.history.last
        assert run is not None and run.status == "cancelled"
        assert run.compensated_steps == ["first"]
        assert lab.states["first"] == "compensated"
        assert "stopped" in lab.widget.status
        assert not lab.diagram.busy

    async def test_an_interrupt_stops_a_lab_run(self) -> None:
        """SIGINT during a Lab run (a kernel interrupt) cancels it, and the handler is put back after."""
        saga = self.slow_saga()
        lab = saga.lab(charts=False, throttle=0.01)
        before = signal.getsignal(signal.SIGINT)
        lab.widget._on_message(lab.widget, {"t": "run"}, [])
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
        assert run_view.state["c"].startswith("compensated")

    def test_anything_else_is_refused(self) -> None:
        """A value that is neither a Saga nor a Run is a TypeError naming what was expected."""
        with pytest.raises(TypeError, match=r"expected a sagakit\.Saga or a sagakit\.Run, got str"):
            widget.diagram_view("order")  # type: ignore[arg-type]


def test_the_front_end_ships_in_the_package_and_loads_nothing_from_the_network() -> None:
    """The ES module and style sheet are package files; the module imports nothing (no CDN)."""
    script = (widget.STATIC / "sagakit.js").read_text()
    assert (widget.STATIC / "sagakit.css").is_file()
    assert "export default" in script
    assert "import " not in script and "http://" not in script and "https://" not in script
