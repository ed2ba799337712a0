"""The Lab, driven from the kernel side: clicks and edits drive faults, runs, colours, words and charts."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import sagakit
from sagakit.notebook import diagram
from sagakit.notebook.lab import Lab

from .conftest import (
    ROOT,
    Carrier,
    edit_from_browser,
    from_browser,
    linear_saga,
    make_step,
    pivot_saga,
    record_messages,
)


def choose(lab: Lab, step: str, mode: str, delay: float = 0.0, probability: float = 1.0) -> None:
    """What the browser does when a step's controls change: write the ``faults`` trait."""
    faults = dict(lab.widget.faults)
    if mode == "none" and delay == 0:
        faults.pop(step, None)
    else:
        faults[step] = [mode, delay, probability]
    edit_from_browser(lab.widget, faults=faults)


def status_text(lab: Lab) -> str:
    """The status line as it reads."""
    return "".join(text for _, text in lab.widget.status["text"])


async def settled(lab: Lab) -> None:
    """Wait until the Lab has drawn what follows a run: charts, playback, the static fallback."""
    await asyncio.sleep(max(lab.throttle, 0.1) + 0.15)


class TestControls:
    def test_the_panel_is_one_view_holding_every_control(self, order_saga: sagakit.Saga) -> None:
        """One anywidget view is the diagram, the history, the charts and the controls; it offers
        every fault mode, each explained, and no compensation fault where there is no compensation."""
        lab = order_saga.lab(data={})
        assert lab.widget is lab.diagram is lab.history is lab._display_()  # marimo shows it for `lab`
        assert lab.widget.kind == "lab" and lab.widget.stoppable and lab.widget.show_charts
        assert lab.widget.steps[0] == ["reserve_inventory", "reserve_inventory", True, "compensatable"]
        assert lab.widget.steps[-1] == ["send_receipt", "send_receipt", False, "compensatable"]
        assert [mode for mode, _ in lab.widget.modes] == list(sagakit.FAULT_MODES)
        assert all(help_text for _, help_text in lab.widget.modes)
        assert (lab.widget.n, lab.widget.progress, lab.widget.status["text"]) == (20, [0, 20], [["", "ready"]])

    def test_selector_drives_the_fault_plan(self, order_saga: sagakit.Saga) -> None:
        """Choosing a mode, a delay and a probability sets ``saga.faults``; ``none`` removes it."""
        lab = order_saga.lab(data={})
        choose(lab, "charge_payment", "fail_after", 0.25, 0.5)
        assert order_saga.faults["charge_payment"] == sagakit.Fault("fail_after", delay=0.25, probability=0.5)
        choose(lab, "charge_payment", "none")
        assert "charge_payment" not in order_saga.faults

    def test_a_refused_value_is_reported_undone_and_the_error_goes_once_fixed(self, order_saga: sagakit.Saga) -> None:
        """A negative delay leaves the plan alone, says why and puts the controls back; the error
        leaves the status as soon as a valid value comes."""
        lab = order_saga.lab(data={})
        choose(lab, "ship_order", "fail", -1.0)
        assert "ship_order" not in order_saga.faults
        assert lab.widget.status["level"] == "invalid" and "delay" in status_text(lab)
        assert lab.widget.faults == {}
        edit_from_browser(lab.widget, faults={"ship_order": "fail"})
        assert "expected [mode, delay, probability]" in status_text(lab) and lab.widget.faults == {}
        choose(lab, "ship_order", "fail", 1.0)
        assert order_saga.faults["ship_order"] == sagakit.Fault("fail", delay=1.0)
        assert lab.widget.status["level"] == "ready" and "expected" not in status_text(lab)

    def test_code_changes_update_the_controls_and_diagram(self, order_saga: sagakit.Saga) -> None:
        """Setting ``saga.faults`` in code moves the controls and marks the diagram."""
        lab = order_saga.lab(data={})
        order_saga.faults["ship_order"] = sagakit.Fault("fail_compensation", delay=0.5, probability=0.75)
        assert lab.widget.faults == {"ship_order": ["fail_compensation", 0.5, 0.75]}
        lab.flush()
        assert "injected" in lab.widget.state["s"]["ship_order"]
        order_saga.faults.clear()
        assert lab.widget.faults == {}

    def test_a_compensation_fault_nothing_can_trigger_is_explained(self) -> None:
        """The status hints why a compensation fault shows nothing: on the last step, nothing comes after it."""
        saga = sagakit.Saga("one", [sagakit.step(make_step("only"), compensate=make_step("undo"))])
        lab = saga.lab(charts=False)
        saga.faults["only"] = "fail_compensation"
        assert any("only is the last step" in hint for hint in lab.widget.status["hints"])

    def test_bad_options_are_refused(self, order_saga: sagakit.Saga, tmp_path: Path) -> None:
        """Wrong option types name the option and what was expected."""
        with pytest.raises(TypeError, match="Lab backends"):
            Lab(order_saga, backends={"local": object()})  # type: ignore[dict-item]
        with pytest.raises(ValueError, match="Lab runs"):
            Lab(order_saga, runs=0)
        with pytest.raises(ValueError, match="Lab throttle: expected a finite number of seconds >= 0, got nan"):
            Lab(order_saga, throttle=float("nan"))
        with pytest.raises(TypeError, match="Lab throttle: expected a number of seconds >= 0, got str"):
            Lab(order_saga, throttle="0.1")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"Lab pace: expected seconds per event from 0 \(off\) to 5, got 9"):
            Lab(order_saga, pace=9)
        with pytest.raises(TypeError, match="Lab charts: expected True or False"):
            Lab(order_saga, charts="yes")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"Lab journal: expected a sagakit\.SqliteJournal or the path of one"):
            Lab(order_saga, journal=42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"sagakit\.Saga"):
            Lab("order")  # type: ignore[arg-type]
        lab = Lab(order_saga)
        with pytest.raises(ValueError, match=r"Lab\.inspect step: expected one of reserve_inventory, "):
            lab.inspect("nope")
        with pytest.raises(ValueError, match=r"Lab\.inspect phase: expected 'forward' or 'compensate', got 'back'"):
            lab.inspect("ship_order", "back")


class TestRunning:
    async def test_run_n_names_a_bad_count(self, order_saga: sagakit.Saga) -> None:
        """run_n refuses what is not an int >= 1 before anything runs, naming its argument."""
        lab = order_saga.lab(data={})
        with pytest.raises(TypeError, match=r"Lab\.run_n n: expected an int >= 1, got str"):
            await lab.run_n("3")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"Lab\.run_n n: expected an int >= 1, got 0"):
            await lab.run_n(0)
        assert len(order_saga.history) == 0

    async def test_click_run_fails_the_chosen_step_and_compensates_earlier_ones(self, order_saga: sagakit.Saga) -> None:
        """Run after selecting ``fail`` in the middle: that step failed, the earlier compensated."""
        lab = order_saga.lab(data={})
        choose(lab, "charge_payment", "fail")
        from_browser(lab.widget, {"t": "run"})
        assert lab.task is not None and not lab.task.done()  # started as a task, not run inline
        run = await lab.wait()
        assert run.status == "compensated" and run.failed_step == "charge_payment"
        assert lab.states["charge_payment"] == "failed"
        assert lab.states["reserve_inventory"] == lab.states["authorize_payment"] == "compensated"
        assert lab.states["ship_order"] == "pending"
        text = status_text(lab)
        assert text.startswith("✖ rolled back: charge_payment failed (InjectedFault")
        assert "2 steps compensated" in text
        assert len(lab.widget.rows) == 1 and lab.widget.total == 1

    async def test_live_colouring_shows_the_step_in_flight(self) -> None:
        """While a slow step runs, the diagram shows it running, before its final colour."""
        saga = sagakit.Saga("slow", [
            sagakit.step(make_step("quick"), compensate=make_step("undo_quick")),
            sagakit.step(make_step("slow", delay=0.3), compensate=make_step("undo_slow")),
        ])
        lab = saga.lab(throttle=0.01)
        seen: list[set[str]] = []
        send = lab.widget.send

        def recording(message: dict[str, Any]) -> None:
            if "slow" in message.get("s", {}):
                seen.append(set(message["s"]["slow"].split()))
            send(message)

        lab.widget.send = recording
        from_browser(lab.widget, {"t": "run"})
        await lab.wait()
        assert any("state-running" in found for found in seen)
        assert "state-succeeded" in seen[-1]

    async def test_a_run_of_plain_functions_is_drawn_from_the_finished_run(self) -> None:
        """Plain synchronous steps never let a redraw in while they run: the Lab does not observe
        them live, yet draws exactly the colours a live observation of async steps gives."""

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
            assert lab.live is not sync
            run = await lab.run()
            lab.flush()
            assert run.status == "compensation_failed"
            drawn[sync] = dict(lab.widget.state["s"])
            assert "state-failed" in drawn[sync]["d"] and "state-not-undone" in drawn[sync]["b"]
        assert drawn[True] == drawn[False]
        delayed = build("delayed", True).lab(throttle=0.01)
        delayed.saga.faults["b"] = sagakit.Fault("none", delay=0.01)
        assert delayed.live  # a fault delay lets the loop in: observed live again

    async def test_async_steps_that_never_wait_are_observed_only_until_a_run_shows_it(self) -> None:
        """Async steps that never give the loop control: the first run is observed live, later ones
        are drawn from the finished run with the same colours; steps that wait stay observed, and
        a change of the fault plan observes the next run again."""

        def build(name: str, wait: bool) -> sagakit.Saga:
            def maker(label: str) -> Any:
                # Two bodies: a compensation whose code awaits at all (even behind an `if`) starts
                # in the rollback's own task, which gives the loop control.
                async def waits(data: Any, context: Any) -> Any:
                    await asyncio.sleep(0)
                    return data

                async def never_waits(data: Any, context: Any) -> Any:
                    return data

                function = waits if wait else never_waits
                function.__name__ = label
                return function

            return sagakit.Saga(name, [sagakit.step(maker(f"s{i}"), compensate=maker(f"u{i}")) for i in range(4)])

        for wait in (False, True):
            lab = build(f"waits_{wait}", wait).lab(throttle=0.01, charts=False)
            lab.saga.faults["s2"] = "fail"
            observed = []
            for _ in range(3):
                observed.append(lab.live)
                await lab.run()
                lab.flush()
                assert lab.states["s2"] == "failed" and lab.states["s0"] == "compensated"
            assert observed == [True, wait, wait]
            lab.saga.faults["s3"] = "fail_compensation"
            assert lab.live

    async def test_run_n_fills_progress_and_history_and_the_status_gives_the_totals(
            self, order_saga: sagakit.Saga) -> None:
        """Run x N runs N times in sequence, the progress bar reaching N; the status counts every run."""
        lab = order_saga.lab(data={}, runs=6)
        order_saga.faults["ship_order"] = sagakit.Fault("fail", probability=0.5, seed=3)
        from_browser(lab.widget, {"t": "run_n"})
        assert lab.widget.busy  # the buttons are disabled while the runs go
        runs = await lab.wait()
        assert len(runs) == 6 and len(order_saga.history) == 6
        assert lab.widget.progress == [6, 6] and not lab.widget.busy
        assert len(lab.widget.rows) == 6 and lab.widget.total == 6
        completed = sum(run.status == "completed" for run in runs)
        assert 0 < completed < 6
        text = status_text(lab)
        assert text.startswith(f"6 runs: {completed} completed, {6 - completed} rolled back")
        assert f"failed at ship_order ×{6 - completed}" in text

    async def test_reset_clears_faults_and_colours(self, order_saga: sagakit.Saga) -> None:
        """Reset removes every fault and returns the diagram to pending; the history stays."""
        lab = order_saga.lab(data={})
        choose(lab, "send_receipt", "fail")
        from_browser(lab.widget, {"t": "run"})
        await lab.wait()
        from_browser(lab.widget, {"t": "reset"})
        assert dict(order_saga.faults) == {}
        assert lab.widget.faults == {}
        assert set(lab.states.values()) == {"pending"}
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
        edit_from_browser(lab.widget, backend="recording")
        await lab.run()
        assert len(recording.requests) == 1

    async def test_kernel_stays_responsive_during_a_run(self) -> None:
        """Other work on the loop proceeds while a Lab run is in flight."""
        saga = sagakit.Saga("long", [sagakit.step(make_step("wait", delay=0.2))])
        lab = saga.lab()
        from_browser(lab.widget, {"t": "run"})
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

    async def test_run_sync_and_run_n_sync_work_inside_a_running_loop(self) -> None:
        """The run methods' synchronous twins work in a notebook cell (a running loop) and draw."""
        saga = linear_saga(3, name="sync-twins")
        saga.faults["s2"] = "fail"
        lab = saga.lab(charts=False)
        run = lab.run_sync()
        assert run.status == "compensated" and lab.states["s2"] == "failed"
        runs = lab.run_n_sync(2)
        assert len(runs) == 2 and lab.widget.progress == [2, 2] and lab.widget.total == 3


def test_run_sync_works_outside_a_loop() -> None:
    """In a script (no running loop) ``lab.run_sync()`` runs the saga and draws it."""
    saga = linear_saga(2, name="sync-script")
    lab = saga.lab(charts=False)
    assert lab.run_sync().status == "completed"
    assert set(lab.states.values()) == {"succeeded"} and lab.widget.total == 1


class TestWording:
    async def test_a_failed_compensation_says_what_failed_once_and_counts_right(self) -> None:
        """A rollback that fails reads "rollback failed", names the injected error once, counts the
        compensations that ran, and names the steps left to clean up by hand."""
        saga = linear_saga(4, name="half")
        saga.faults.replace({"s1": "fail_compensation", "s3": "fail"})
        lab = saga.lab(charts=False)
        await lab.run()
        lab.flush()
        text = status_text(lab)
        assert "compensation_failed" not in text and text.startswith("✖ rollback failed: s3 failed")
        assert text.count("injected fault 'fail' on step 's3'") == 1
        assert "1 step compensated" in text and "the compensation of s1 failed" in text
        assert "1 left to clean up by hand: s0" in text

    async def test_a_one_step_saga_that_fails_has_nothing_to_undo(self) -> None:
        """A saga whose only step fails says that nothing had to be undone, not "0 compensations"."""
        saga = sagakit.Saga("one", [sagakit.step(make_step("only"), compensate=make_step("undo"))])
        saga.faults["only"] = "fail"
        lab = saga.lab(charts=False)
        await lab.run()
        lab.flush()
        assert "nothing to undo (no step had completed)" in status_text(lab)

    async def test_a_run_read_from_the_history_says_which_run_it_is(self, order_saga: sagakit.Saga) -> None:
        """Selecting run 1 after a clean run 2 draws run 1's failure again, captioned as run 1."""
        lab = order_saga.lab(data={}, charts=False)
        order_saga.faults["charge_payment"] = "fail"
        await lab.run()
        del order_saga.faults["charge_payment"]
        await lab.run()
        lab.flush()
        assert [row[1] for row in lab.widget.rows] == ["completed", "compensated"]
        from_browser(lab.widget, {"t": "select", "run": 1})
        assert lab.states["charge_payment"] == "failed" and lab.widget.selected == 1
        assert lab.widget.run is order_saga.history[0]
        assert lab.widget.state["c"].startswith("run 1: rolled back")


class TestCharts:
    async def test_the_charts_follow_the_run_shown(self, order_saga: sagakit.Saga) -> None:
        """The timeline is the shown run's: the latest, or the one picked in the history; the
        compensation durations mark the shown run's own."""
        lab = order_saga.lab(data={})
        order_saga.faults["charge_payment"] = "fail"
        await lab.run()
        del order_saga.faults["charge_payment"]
        await lab.run()
        await settled(lab)
        timeline = lab.widget.charts["timeline"]
        assert "latest run: completed" in lab.widget.charts["label"]
        assert all(phase == "forward" for _, phase, *_ in timeline["bars"])
        lab.show_run(1)
        await settled(lab)
        charts = lab.widget.charts
        assert charts["label"].startswith("run 1: rolled back")
        assert {bar[1] for bar in charts["timeline"]["bars"]} == {"forward", "compensate"}
        shown = {step: mine for step, *_, mine in charts["durations"]["steps"]}
        assert shown["reserve_inventory"] is not None

    async def test_a_stuck_steps_bars_are_drawn_stuck_not_failed(self) -> None:
        """In a run stuck after its pivot, the attempts of the step it waits at are drawn in the
        diagram's stuck colour; a failed step of a rolled-back run stays failed."""
        saga = pivot_saga(Carrier())
        lab = saga.lab(data={})
        await lab.run()
        await settled(lab)
        bars = lab.widget.charts["timeline"]["bars"]
        drawn = [(step, status, state) for step, _, _, _, status, _, _, _, state in bars]
        assert [entry for entry in drawn if entry[0] == "ship"] == [("ship", "failed", "stuck")] * 3
        assert {state for step, _, state in drawn if step != "ship"} == {"succeeded"}
        rolled_back = linear_saga(2, name="rolled_back")
        rolled_back.faults["s1"] = "fail"
        lab = rolled_back.lab(data={})
        await lab.run()
        await settled(lab)
        states = {(bar[0], bar[1]): bar[8] for bar in lab.widget.charts["timeline"]["bars"]}
        assert states == {("s0", "forward"): "succeeded", ("s1", "forward"): "failed",
                          ("s0", "compensate"): "compensated"}

    async def test_a_stopped_first_run_gets_its_charts(self) -> None:
        """The very first run, stopped, still draws its timeline: the charts never show nothing."""
        saga = sagakit.Saga("slow", [sagakit.step(make_step("first"), compensate=make_step("undo_first")),
                                     sagakit.step(make_step("second", delay=5.0))])
        lab = saga.lab(throttle=0.01)
        from_browser(lab.widget, {"t": "run"})
        while lab.states["second"] != "running":
            await asyncio.sleep(0.01)
            lab.flush()
        lab.stop()
        await asyncio.wait({lab.task})  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        charts = lab.widget.charts
        assert "stopped while second ran" in charts["label"]
        assert charts["timeline"]["bars"][1][:2] == ["second", "forward"]
        assert charts["durations"]["steps"][0][0] == "first"


class TestViews:
    def test_a_lab_whose_views_are_gone_stops_watching_and_wakes_when_shown_again(
            self, order_saga: sagakit.Saga) -> None:
        """When its last view closes (the cell re-run), a Lab stops following the saga; a new view
        of it follows again, caught up with what changed meanwhile."""
        lab = order_saga.lab(data={})
        assert lab.watching
        from_browser(lab.widget, {"t": "views", "n": 1})
        from_browser(lab.widget, {"t": "views", "n": -1})
        assert not lab.watching
        order_saga.faults["ship_order"] = "fail"
        assert lab.widget.faults == {}
        from_browser(lab.widget, {"t": "views", "n": 1})
        assert lab.watching and lab.widget.faults == {"ship_order": ["fail", 0.0, 1.0]}

    async def test_labs_made_again_for_a_saga_leave_no_listeners_behind(self, order_saga: sagakit.Saga) -> None:
        """Making the Lab three times (re-running its cell): the old ones, their views gone, get no
        history updates; a closed and dropped Lab is not called at all."""
        labs = []
        for _ in range(3):
            if labs:
                from_browser(labs[-1].widget, {"t": "views", "n": -1})
            labs.append(order_saga.lab(data={}, charts=False))
            from_browser(labs[-1].widget, {"t": "views", "n": 1})
        assert [lab.watching for lab in labs] == [False, False, True]
        await order_saga.run({})
        for lab in labs:
            lab.flush()
        assert [lab.widget.total for lab in labs] == [0, 0, 1]
        labs[-1].close()
        del labs
        gc.collect()
        await order_saga.run({})  # no watcher left to call


class TestCompare:
    async def test_picking_two_runs_compares_them_side_by_side(self, order_saga: sagakit.Saga) -> None:
        """Two history rows picked: both runs' states on the diagram, the first divergence marked, the table."""
        lab = order_saga.lab(data={}, charts=False)
        await lab.run()
        order_saga.faults["charge_payment"] = "fail"
        await lab.run()
        lab.flush()
        from_browser(lab.widget, {"t": "compare", "runs": [1, 2]})
        shown = lab.widget.comparison
        assert [run["number"] for run in shown["runs"]] == [1, 2]
        assert shown["first"]["step"] == "charge_payment" and shown["first"]["what"] == "status"
        assert "diverges" in shown["runs"][1]["state"]["s"]["charge_payment"]
        assert "state-compensated" in shown["runs"][1]["state"]["s"]["reserve_inventory"]
        assert shown["columns"][:3] == ["step", "phase", "index"]
        from_browser(lab.widget, {"t": "compare_close"})
        assert lab.widget.comparison == {}
        with pytest.raises(ValueError, match=r"Lab.compare b: expected a run number 1..2, got 3"):
            lab.compare(1, 3)


class TestPace:
    async def test_a_run_too_fast_to_watch_is_played_back_at_the_pace(self) -> None:
        """With a pace, a run faster than it can show is sent back as frames to play at that pace
        (with each compensation in flight); Run x N and a pace of 0 are not played back."""
        saga = linear_saga(4, name="paced")
        saga.faults["s3"] = "fail"
        lab = saga.lab(charts=False, pace=0.2)
        await lab.run()
        await asyncio.sleep(0.3)
        playback = lab.widget.playback
        assert playback["pace"] == 0.2 and "compensation started s1" in playback["labels"]
        assert playback["run"] == saga.history.last.run_id
        await lab.run_n(3)
        await asyncio.sleep(0.3)
        assert lab.widget.playback == {}
        edit_from_browser(lab.widget, pace=0.0)
        await lab.run()
        await asyncio.sleep(0.3)
        assert lab.widget.playback == {}


JOURNAL_WRITER = textwrap.dedent("""
    import asyncio, sys
    import sagakit

    async def reserve(data, context):
        return {**data, "reserved": True}

    async def release(data, context):
        return None

    async def charge(data, context):
        return {**data, "charged": True}

    saga = sagakit.Saga("shop", [sagakit.step(reserve, compensate=release), sagakit.step(charge)])

    async def main():
        await saga.run({"order": 1}, journal=sys.argv[1])
        await saga.run({"order": 2}, journal=sys.argv[1], faults={"charge": "fail"})

    asyncio.run(main())
""")


class TestJournal:
    async def test_a_lab_shows_draws_inspects_and_compares_runs_another_process_recorded(
            self, tmp_path: Path) -> None:
        """Runs a journal holds from another process are in the history: drawn, inspected,
        replayed and compared like the Lab's own, which are recorded there too and listed once."""
        path = tmp_path / "shop.db"
        subprocess.run([sys.executable, "-c", JOURNAL_WRITER, str(path)], check=True, cwd=ROOT, timeout=120)

        async def reserve(data: Any, context: Any) -> Any:
            return {**data, "reserved": True}

        saga = sagakit.Saga("shop", [sagakit.step(reserve, compensate=make_step("release")),
                                     sagakit.step(make_step("charge"))])
        lab = saga.lab(journal=path, charts=False)
        try:
            assert lab.widget.journal == "shop.db"
            assert [row[1] for row in lab.widget.rows] == ["compensated", "completed"]
            assert all(row[8] == "journal" for row in lab.widget.rows)
            lab.show_run(2)
            assert lab.states == {"reserve": "compensated", "charge": "failed"}
            assert lab.inspect("charge")["input"] == "{'order': 2, 'reserved': True}"
            assert lab.inspect("reserve", "compensate")["input"] == "{'order': 2, 'reserved': True}"
            from_browser(lab.widget, {"t": "replay"})
            assert lab.widget.replay["labels"][-1] == "run finished"
            assert lab.compare(1, 2).first_divergence.step == "charge"  # type: ignore[union-attr]
            await lab.run()
            lab.refresh()
            assert lab.widget.total == 3 and lab.widget.rows[0][8] == ""
            assert len(sagakit.RunHistory.from_journal(path)) == 3
        finally:
            lab.close()


class TestPivotsAndResume:
    def test_the_controls_know_each_steps_kind_and_refuse_modes_that_cannot_fire(self) -> None:
        """Each step's row carries its kind; only compensatable steps with a compensation are
        offered compensation faults (the view leaves them out elsewhere), and one sent anyway is
        refused with the plan's reason; the legend lists ``stuck`` for a saga with a pivot."""
        lab = pivot_saga(Carrier()).lab(charts=False)
        assert [row[2:] for row in lab.widget.steps] == [
            [True, "compensatable"], [False, "readonly"], [False, "pivot"], [False, "retriable"], [False, "retriable"]]
        assert "stuck" in [entry[0] for entry in lab.widget.legend]
        choose(lab, "ship", "fail_compensation")
        assert lab.widget.status["level"] == "invalid" and "ship" in status_text(lab)
        assert "ship" not in lab.saga.faults and "ship" not in lab.widget.faults
        plain = linear_saga(2, name="plain").lab(charts=False)
        assert "stuck" not in [entry[0] for entry in plain.widget.legend]

    async def test_a_stuck_run_reads_stuck_and_is_offered_for_resume_from_the_journal(self, tmp_path: Path) -> None:
        """A run stuck after its pivot: the step is stuck, the status line says where, after how
        many attempts, that nothing was undone, and offers Resume; its history row too. The
        Resume click carries it on live, in the same row, which then reads completed, resumed once."""
        carrier = Carrier()
        saga = pivot_saga(carrier)
        lab = saga.lab(journal=tmp_path / "runs.db", charts=False, data={})
        try:
            run = await lab.run()
            lab.flush()
            assert run.status == "stuck" and lab.states["ship"] == "stuck"
            status = lab.widget.status
            assert status["level"] == "stuck" and status["resume"] == 1
            assert status_text(lab).startswith("⚠ stuck at ship after 3 attempts (ConnectionError: carrier "
                                               "unreachable); nothing undone (past the pivot capture)")
            assert any("Resume" in hint for hint in status["hints"])
            [row] = lab.widget.rows
            assert (row[1], row[9], row[10]) == ("stuck", True, 0)
            carrier.up = True
            calls = carrier.calls
            from_browser(lab.widget, {"t": "resume", "run": 1})
            assert lab.task is not None
            finished = await lab.wait()
            lab.flush()
            assert finished.status == "completed" and carrier.calls == calls + 1  # only ship runs again
            assert lab.states == dict.fromkeys(saga.step_names, "succeeded")
            assert lab.widget.state["n"]["ship"].endswith("\u00d74")
            [row] = lab.widget.rows
            assert (row[1], row[9], row[10]) == ("completed", False, 1)
            assert status_text(lab).startswith("✔ completed · resumed once, ")
            assert status_text(lab).endswith(" ms since it started")  # the wait for the operator included
            assert "resume" not in lab.widget.status
            assert [attempt[8] for attempt in lab.inspect("ship")["attempts"]] == [0, 0, 0, 1]
        finally:
            lab.close()

    async def test_a_resume_is_drawn_live(self, tmp_path: Path) -> None:
        """While a resumed run is in flight the diagram shows it: the run as it stopped, then the
        pending step running again."""
        carrier = Carrier()
        saga = pivot_saga(carrier)
        journal = sagakit.SqliteJournal(tmp_path / "runs.db")
        lab = saga.lab(journal=journal, charts=False, throttle=0.0, data={})
        try:
            await lab.run()
            lab.flush()
            seen: list[str] = []

            def arrived() -> None:
                lab.flush()
                seen.append(lab.states["ship"])

            carrier.up = True
            carrier.hold, carrier.arrived = asyncio.Event(), arrived
            sent = record_messages(lab.widget)
            resumed = asyncio.ensure_future(lab.resume(1))
            while not seen:
                await asyncio.sleep(0.01)
            assert seen == ["running"] and lab.states["capture"] == "succeeded"
            assert sent[-1]["st"]["level"] == "running" and ["code", "ship"] in sent[-1]["st"]["text"]
            assert sent[-1]["n"]["ship"] == "attempt 4/6"
            carrier.hold.set()
            finished = await resumed
            assert finished.status == "completed"
        finally:
            lab.close()
            journal.close()

    async def test_stop_during_a_resume_lets_the_steps_after_the_pivot_finish(self, tmp_path: Path) -> None:
        """Stop while a resumed run is past its pivot: the remaining steps run to their end,
        shielded, and the Lab draws the run as it ended (completed), not "stopped before it started"."""
        carrier = Carrier()
        lab = pivot_saga(carrier).lab(journal=tmp_path / "runs.db", data={}, charts=False)
        try:
            await lab.run()
            carrier.up, carrier.hold = True, asyncio.Event()
            arrived = asyncio.Event()
            carrier.arrived = arrived.set
            from_browser(lab.widget, {"t": "resume", "run": 1})
            await arrived.wait()
            from_browser(lab.widget, {"t": "stop"})
            carrier.hold.set()
            with pytest.raises(asyncio.CancelledError):
                await lab.wait()
            await settled(lab)
            assert lab.states["mail"] == "succeeded" and lab.widget.rows[0][1] == "completed"
            assert status_text(lab).startswith("✔ completed · resumed once")
        finally:
            lab.close()

    async def test_a_refused_resume_says_why_and_changes_nothing(self, tmp_path: Path) -> None:
        """Resume of a run that another kernel finished meanwhile: the journal's reason is in the
        status line, and the Lab shows the run as it was; a Lab without a journal offers no
        Resume, says how to get one, and refuses ``resume`` with the reason; a bad number is
        refused."""
        carrier = Carrier()
        saga = pivot_saga(carrier)
        path = tmp_path / "runs.db"
        lab = saga.lab(journal=path, charts=False, data={})
        try:
            stuck = await lab.run()
            lab.flush()
            carrier.up = True
            other = sagakit.SqliteJournal(path)  # another kernel, on the same journal
            try:
                await other.resume(stuck.run_id, pivot_saga(carrier))
            finally:
                other.close()
            calls = carrier.calls
            from_browser(lab.widget, {"t": "resume", "run": 1})
            assert await lab.wait() is None
            assert lab.widget.status["level"] == "error" and carrier.calls == calls
            assert status_text(lab).startswith(f"✖ cannot resume run {stuck.run_id}: it ended completed")
            assert lab.states["ship"] == "stuck" and lab.widget.rows[0][1] == "stuck"
            with pytest.raises(ValueError, match=r"Lab.resume number: expected a run number 1\.\.1, got 7"):
                await lab.resume(7)
            lab.refresh()  # Reload: the journal says it completed
            assert [(row[1], row[9], row[10]) for row in lab.widget.rows] == [("completed", False, 1)]
        finally:
            lab.close()
        bare = pivot_saga(Carrier(), name="bare").lab(charts=False, data={})
        run = await bare.run()
        bare.flush()
        assert run.status == "stuck" and "resume" not in bare.widget.status
        assert any("saga.lab(journal=" in hint for hint in bare.widget.status["hints"])
        assert bare.widget.rows[0][9] is False
        with pytest.raises(ValueError, match="this Lab has no journal"):
            await bare.resume(1)

    async def test_a_completed_run_cannot_be_resumed(self, tmp_path: Path) -> None:
        """The journal refuses to resume a completed run: the status line gives its reason, and the
        run stays as it was in the history."""
        carrier = Carrier()
        carrier.up = True
        saga = pivot_saga(carrier)
        lab = saga.lab(journal=tmp_path / "runs.db", charts=False, data={})
        try:
            await lab.run()
            lab.flush()
            assert lab.widget.rows[0][9] is False  # never offered
            from_browser(lab.widget, {"t": "resume", "run": 1})
            await lab.wait()
            assert lab.widget.status["level"] == "error"
            assert "cannot resume run" in status_text(lab) and "it ended completed" in status_text(lab)
            assert [row[1] for row in lab.widget.rows] == ["completed"]
        finally:
            lab.close()

    async def test_a_stuck_run_recorded_before_the_lab_and_a_failed_rollback_are_resumed(self, tmp_path: Path) -> None:
        """Runs a journal holds from before the Lab (another kernel) are offered too: a stuck one,
        and a ``compensation_failed`` one, whose resume retries the compensation and finishes the
        rollback."""
        carrier = Carrier()
        saga = pivot_saga(carrier)
        path = tmp_path / "runs.db"
        journal = sagakit.SqliteJournal(path)
        try:
            await saga.run({}, journal=journal)
            saga.faults.replace({"reserve": "fail_compensation", "capture": "fail"})
            failed = await saga.run({}, journal=journal)
            saga.faults.clear()
        finally:
            journal.close()
        assert failed.status == "compensation_failed"
        again = pivot_saga(carrier)  # the same saga, defined again in a new kernel
        lab = again.lab(journal=path, charts=False)
        try:
            assert [(row[0], row[1], row[9]) for row in lab.widget.rows] == [
                (2, "compensation_failed", True), (1, "stuck", True)]
            lab.show_run(2)
            assert lab.widget.status["resume"] == 2 and "retries the failed compensation" in " ".join(
                lab.widget.status["hints"])
            finished = await lab.resume(2)
            lab.flush()
            assert finished.status == "compensated" and lab.states["reserve"] == "compensated"
            assert "resumed once" in status_text(lab)
            carrier.up = True
            assert (await lab.resume(1)).status == "completed"
            lab.flush()
            assert [(row[1], row[10]) for row in lab.widget.rows] == [("compensated", 1), ("completed", 1)]
        finally:
            lab.close()

    async def test_run_n_totals_count_stuck_runs(self) -> None:
        """Run × N of a saga that gets stuck counts the stuck runs and where they are stuck."""
        lab = pivot_saga(Carrier(), name="stuck-batch").lab(charts=False)
        await lab.run_n(3)
        assert status_text(lab).startswith("3 runs: 3 stuck · failed at ship ×3")
        assert lab.widget.status["level"] == "stuck"


def test_close_stops_following_the_saga(order_saga: sagakit.Saga) -> None:
    """After close, fault changes no longer reach the (closed) controls."""
    lab = order_saga.lab(data={})
    lab.close()
    order_saga.faults["ship_order"] = "fail"
    assert lab.widget.faults == {} and not lab.watching
