"""The Lab, driven from the kernel side: clicks and selections drive faults, runs and colours."""

from __future__ import annotations

import asyncio
import html
import re
from typing import Any

import pytest

import sagakit
from sagakit.notebook import diagram
from sagakit.notebook.lab import Lab

from .conftest import linear_saga, make_step

ELEMENT = re.compile(r'<g id="([^"]*)" class="([^"]*)"')


def classes(svg: str) -> dict[str, set[str]]:
    return {html.unescape(i): set(c.split()) for i, c in ELEMENT.findall(svg)}


def choose(lab: Lab, step: str, mode: str, delay: float = 0.0, probability: float = 1.0) -> None:
    """What the browser does when a step's controls change: write the ``faults`` trait."""
    faults = dict(lab.widget.faults)
    if mode == "none" and delay == 0:
        faults.pop(step, None)
    else:
        faults[step] = [mode, delay, probability]
    lab.widget.faults = faults


def click(lab: Lab, button: str) -> None:
    """What the browser sends when ``button`` (``run``, ``run_n``, ``reset``, ``stop``) is clicked."""
    lab.widget._on_message(lab.widget, {"t": button}, [])


class TestControls:
    def test_the_panel_is_one_view_holding_every_control(self, order_saga: sagakit.Saga) -> None:
        """One anywidget view is the diagram, the history and the controls; it offers every fault mode."""
        lab = order_saga.lab(data={})
        assert lab.widget is lab.diagram is lab.history is lab._display_()  # marimo shows it for `lab`
        assert lab.widget.kind == "lab" and lab.widget.stoppable
        assert lab.widget.steps == [[name, name] for name in order_saga.step_names]
        assert lab.widget.modes == ["none", "fail", "fail_after", "fail_compensation", "cancel", "cancel_compensation"]
        assert (lab.widget.n, lab.widget.progress, lab.widget.status) == (20, [0, 20], "ready")
        assert "sagakit-charts" in lab.charts._dom_classes

    def test_selector_drives_the_fault_plan(self, order_saga: sagakit.Saga) -> None:
        """Choosing a mode, a delay and a probability sets ``saga.faults``; ``none`` removes it."""
        lab = order_saga.lab(data={})
        choose(lab, "charge_payment", "fail_after", 0.25, 0.5)
        assert order_saga.faults["charge_payment"] == sagakit.Fault("fail_after", delay=0.25, probability=0.5)
        choose(lab, "charge_payment", "none")
        assert "charge_payment" not in order_saga.faults

    def test_a_value_the_plan_refuses_is_reported_and_undone(self, order_saga: sagakit.Saga) -> None:
        """A negative delay or a malformed row from the browser leaves the plan alone, says why, and puts the
        controls back."""
        lab = order_saga.lab(data={})
        choose(lab, "ship_order", "fail", -1.0)
        assert "ship_order" not in order_saga.faults
        assert "delay" in lab.widget.status
        assert lab.widget.faults == {}
        lab.widget.faults = {"ship_order": "fail"}
        assert "ship_order" not in order_saga.faults
        assert "expected [mode, delay, probability]" in lab.widget.status and lab.widget.faults == {}

    def test_code_changes_update_the_controls_and_diagram(self, order_saga: sagakit.Saga) -> None:
        """Setting ``saga.faults`` in code moves the controls and marks the diagram."""
        lab = order_saga.lab(data={})
        order_saga.faults["ship_order"] = sagakit.Fault("fail_compensation", delay=0.5, probability=0.75)
        assert lab.widget.faults == {"ship_order": ["fail_compensation", 0.5, 0.75]}
        lab.flush()
        assert "injected" in classes(lab.svg)["step-ship_order"]
        order_saga.faults.clear()
        assert lab.widget.faults == {}

    def test_bad_options_are_refused(self, order_saga: sagakit.Saga) -> None:
        """Wrong option types name the option and what was expected."""
        with pytest.raises(TypeError, match="Lab backends"):
            Lab(order_saga, backends={"local": object()})  # type: ignore[dict-item]
        with pytest.raises(ValueError, match="Lab runs"):
            Lab(order_saga, runs=0)
        with pytest.raises(ValueError, match="Lab throttle: expected a finite number of seconds >= 0, got nan"):
            Lab(order_saga, throttle=float("nan"))
        with pytest.raises(TypeError, match="Lab throttle: expected a number of seconds >= 0, got str"):
            Lab(order_saga, throttle="0.1")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"sagakit\.Saga"):
            Lab("order")  # type: ignore[arg-type]


class TestRunning:
    async def test_run_n_names_a_bad_count(self, order_saga: sagakit.Saga) -> None:
        """run_n refuses what is not an int >= 1 before anything runs, naming its argument."""
        lab = order_saga.lab(data={})
        with pytest.raises(TypeError, match=r"Lab\.run_n n: expected an int >= 1, got str"):
            await lab.run_n("3")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"Lab\.run_n n: expected an int >= 1, got float"):
            await lab.run_n(2.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"Lab\.run_n n: expected an int >= 1, got 0"):
            await lab.run_n(0)
        assert len(order_saga.history) == 0

    async def test_click_run_fails_the_chosen_step_and_compensates_earlier_ones(self, order_saga: sagakit.Saga) -> None:
        """Run after selecting ``fail`` in the middle: that step failed, the earlier compensated."""
        lab = order_saga.lab(data={})
        choose(lab, "charge_payment", "fail")
        click(lab, "run")
        assert lab.task is not None and not lab.task.done()  # started as a task, not run inline
        run = await lab.wait()
        assert run.status == "compensated" and run.failed_step == "charge_payment"
        assert len(order_saga.history) == 1
        found = classes(lab.svg)
        assert "state-failed" in found["step-charge_payment"]
        assert "state-compensated" in found["step-reserve_inventory"]
        assert "state-compensated" in found["step-authorize_payment"]
        assert "state-pending" in found["step-ship_order"]
        assert "charge_payment" in lab.widget.status and "InjectedFault" in lab.widget.status
        assert len(lab.history.rows) == 1 and lab.history.total == 1

    async def test_live_colouring_shows_the_step_in_flight(self) -> None:
        """While a slow step runs, the diagram shows it running, before its final colour."""
        saga = sagakit.Saga("slow", [
            sagakit.step(make_step("quick"), compensate=make_step("undo_quick")),
            sagakit.step(make_step("slow", delay=0.3), compensate=make_step("undo_slow")),
        ])
        lab = saga.lab(throttle=0.01)
        seen: list[set[str]] = []
        send = lab.diagram.send

        def recording(message: dict[str, Any]) -> None:
            if "slow" in message.get("s", {}):
                seen.append(set(message["s"]["slow"].split()))
            send(message)

        lab.diagram.send = recording
        click(lab, "run")
        await lab.wait()
        assert any("state-running" in found for found in seen)
        assert "state-succeeded" in seen[-1]

    async def test_a_run_of_plain_functions_is_drawn_from_the_finished_run(self) -> None:
        """Plain synchronous steps never let a redraw in while they run: the Lab does not observe
        them event by event, yet draws exactly the colours a live observation gives."""

        def plain(name: str, fail: bool = False) -> Any:
            def function(data: Any, context: Any) -> Any:
                if fail:
                    raise ValueError(f"{name} broke")
                return data

            function.__name__ = name
            return function

        def coroutine(name: str, fail: bool = False) -> Any:
            async def function(data: Any, context: Any) -> Any:
                return plain(name, fail)(data, context)

            function.__name__ = name
            return function

        class Told(list[Any]):
            """The Lab's event list, counting the events the engine hands it one by one."""

            count = 0

            def append(self, event: Any) -> None:
                Told.count += 1
                super().append(event)

        def build(name: str, sync: bool) -> sagakit.Saga:
            maker = plain if sync else coroutine
            return sagakit.Saga(name, [
                sagakit.step(maker("a"), compensate=maker("undo_a")),
                sagakit.step(maker("b")),
                sagakit.step(maker("c"), compensate=maker("undo_c", fail=True)),
                sagakit.step(maker("d", fail=True), compensate=maker("undo_d")),
            ], continue_on_compensation_failure=True)

        drawn = {}
        for sync in (True, False):
            lab = build(f"lab_{sync}", sync).lab(throttle=0.01)
            lab._events = Told()
            Told.count = 0
            assert lab._draws_live() is not sync
            run = await lab.run()
            lab.flush()
            assert run.status == "compensation_failed"
            assert (Told.count == 0) is sync  # plain functions: no event observed one by one
            drawn[sync] = {k: v for k, v in classes(lab.svg).items() if k.startswith("step-")}
            assert "state-failed" in drawn[sync]["step-d"]
        assert drawn[True] == drawn[False]

        sync_lab = build("delayed", True).lab(throttle=0.01)
        sync_lab.saga.faults["b"] = sagakit.Fault("none", delay=0.01)
        assert sync_lab._draws_live()  # a fault delay lets the loop in: observed live again

    async def test_async_steps_that_never_wait_are_observed_only_until_a_run_shows_it(self) -> None:
        """Async steps that never give the loop control: the first run is observed event by event,
        later ones are drawn from the finished run with the same colours; steps that wait stay observed,
        and a change of the fault plan observes the next run again."""

        def build(name: str, wait: bool) -> sagakit.Saga:
            def maker(label: str) -> Any:
                async def function(data: Any, context: Any) -> Any:
                    if wait:
                        await asyncio.sleep(0)
                    return data

                function.__name__ = label
                return function

            return sagakit.Saga(name, [sagakit.step(maker(f"s{i}"), compensate=maker(f"u{i}")) for i in range(4)])

        for wait in (False, True):
            lab = build(f"waits_{wait}", wait).lab(throttle=0.01, charts=False)
            lab.saga.faults["s2"] = "fail"
            observed = []
            for _ in range(3):
                live = lab._draws_live()
                await lab.run()
                lab.flush()
                observed.append(live)
                assert lab.states["s2"] == "failed" and lab.states["s0"] == "compensated"
            assert observed == [True, wait, wait]
            lab.saga.faults["s3"] = "fail_compensation"
            assert lab._draws_live()

    async def test_run_n_fills_progress_and_history(self, order_saga: sagakit.Saga) -> None:
        """Run x N runs N times in sequence, the progress bar reaching N."""
        lab = order_saga.lab(data={}, runs=5)
        order_saga.faults["ship_order"] = sagakit.Fault("fail", probability=0.5, seed=3)
        click(lab, "run_n")
        assert lab.widget.busy  # the buttons are disabled while the runs go
        runs = await lab.wait()
        assert len(runs) == 5 and len(order_saga.history) == 5
        assert lab.widget.progress == [5, 5] and not lab.widget.busy
        assert len(lab.history.rows) == 5 and lab.history.total == 5
        statuses = {run.status for run in runs}
        assert statuses <= {"completed", "compensated"} and len(statuses) == 2

    async def test_reset_clears_faults_and_colours(self, order_saga: sagakit.Saga) -> None:
        """Reset removes every fault and returns the diagram to pending; the history stays."""
        lab = order_saga.lab(data={})
        choose(lab, "send_receipt", "fail")
        click(lab, "run")
        await lab.wait()
        click(lab, "reset")
        assert dict(order_saga.faults) == {}
        assert lab.widget.faults == {}
        assert all("state-pending" in classes(lab.svg)[f"step-{n}"] for n in order_saga.step_names)
        assert len(order_saga.history) == 1

    async def test_backend_dropdown_chooses_the_backend(self, order_saga: sagakit.Saga) -> None:
        """With ``backends``, the drop-down's choice is the backend the run goes to."""

        class Recording:
            name = "recording"

            def __init__(self) -> None:
                self.requests: list[Any] = []
                self.local = sagakit.LocalBackend()

            async def run(self, request: sagakit.RunRequest) -> sagakit.Run:
                self.requests.append(request)
                return await self.local.run(request)

        recording = Recording()
        lab = order_saga.lab(data={}, backends={"local": None, "recording": recording})
        assert lab.widget.backends == ["local", "recording"] and lab.widget.backend == "local"
        await lab.run()
        assert recording.requests == []
        lab.widget.backend = "recording"
        await lab.run()
        assert len(recording.requests) == 1

    async def test_charts_show_timeline_and_compensations(self, order_saga: sagakit.Saga) -> None:
        """After a rolled-back run the charts area holds a Vega-Lite chart with a static SVG."""
        lab = order_saga.lab(data={})
        order_saga.faults["send_receipt"] = "fail"
        await lab.run()
        lab._draw_charts()
        (output,) = lab.charts.outputs
        assert any(key.startswith("application/vnd.vegalite") for key in output["data"])
        assert "<svg" in output["data"]["image/svg+xml"]

    async def test_kernel_stays_responsive_during_a_run(self) -> None:
        """Other work on the loop proceeds while a Lab run is in flight."""
        saga = sagakit.Saga("long", [sagakit.step(make_step("wait", delay=0.2))])
        lab = saga.lab()
        click(lab, "run")
        ticks = 0
        while lab.task is not None and not lab.task.done():
            ticks += 1
            await asyncio.sleep(0)
        assert ticks > 10

    async def test_live_updates_never_run_the_layout_again(self) -> None:
        """Runs in the Lab re-colour the template: the layout program runs at most once per shape."""
        saga = linear_saga(12, name="no-relayout")
        lab = saga.lab(throttle=0.0)
        before = diagram.layout_count()
        for mode in ("fail", "fail_after", "none"):
            choose(lab, "s6", mode)
            await lab.run()
        assert diagram.layout_count() == before


def test_close_stops_following_the_saga(order_saga: sagakit.Saga) -> None:
    """After close, fault changes no longer reach the (closed) controls."""
    lab = order_saga.lab(data={})
    lab.close()
    order_saga.faults["ship_order"] = "fail"
    assert lab.widget.faults == {}
