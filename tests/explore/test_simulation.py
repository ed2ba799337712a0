"""Simulation on a virtual clock: the loop, latency, flaky faults, reproducibility, bad input."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import pandas as pd
import pytest
from explore_shop import ORDER, Shop, order_saga

import sagakit as sk
from sagakit.explore import DEFAULT_START, Latency, VirtualClockLoop, run_on_virtual_clock, simulate


def run_in_thread(work: Callable[[], Any]) -> Any:
    """Run ``work`` on a thread and give up after a while: a hung loop fails the test instead of hanging it."""
    outcome: dict[str, Any] = {}

    def main() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the virtual clock stalled"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class TestVirtualClockLoop:
    @pytest.mark.parametrize("start", [0.0, 1e6, -2.9e7, 1.7e9])
    def test_sleeps_jump_the_clock_exactly(self, start: float) -> None:
        """An hour of sleeping moves the clock by exactly an hour, at any clock magnitude."""

        async def main() -> list[float]:
            loop = asyncio.get_running_loop()
            readings = []
            for _ in range(3):
                await asyncio.sleep(1200)
                readings.append(loop.time() - start)
            await asyncio.sleep(0.1)
            loop.call_later(0, lambda: None)  # a timer due now must run, not stall the loop
            await asyncio.sleep(0)
            readings.append(loop.time() - start)
            return readings

        readings = run_in_thread(lambda: run_on_virtual_clock(main, start=start))
        assert readings[:3] == pytest.approx([1200, 2400, 3600], abs=1e-6)
        assert readings[3] == pytest.approx(3600.1, abs=1e-6)

    def test_timers_fire_in_order_and_ready_work_runs_first(self) -> None:
        """Time moves only when nothing is ready; timers fire in the order of their deadlines."""
        order: list[tuple[str, float]] = []

        async def sleeper(name: str, seconds: float) -> None:
            await asyncio.sleep(seconds)
            order.append((name, asyncio.get_running_loop().time()))

        async def busy() -> None:
            for _ in range(100):
                await asyncio.sleep(0)
            order.append(("busy", asyncio.get_running_loop().time()))

        async def main() -> None:
            await asyncio.gather(sleeper("late", 2.0), sleeper("early", 0.5), busy(), sleeper("middle", 1.0))

        run_on_virtual_clock(main, start=10.0)
        assert order == [("busy", 10.0), ("early", 10.5), ("middle", 11.0), ("late", 12.0)]

    def test_timeouts_use_virtual_time(self) -> None:
        """asyncio.timeout fires at its virtual deadline."""

        async def main() -> float:
            loop = asyncio.get_running_loop()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(5):
                    await asyncio.sleep(60)
            return loop.time()

        assert run_on_virtual_clock(main, start=0.0) == 5.0

    def test_threads_are_awaited_in_real_time(self) -> None:
        """With no timer pending, the loop waits for the outside world (a thread) as usual."""

        async def main() -> int:
            return await asyncio.to_thread(lambda: 42)

        assert run_in_thread(lambda: run_on_virtual_clock(main, start=0.0)) == 42

    async def test_inside_a_running_loop_it_uses_a_worker_thread(self) -> None:
        """Called from a running loop (a notebook cell), it runs on a worker thread and blocks until done."""

        async def main() -> tuple[float, str]:
            await asyncio.sleep(30)
            return asyncio.get_running_loop().time(), threading.current_thread().name

        reading, thread = run_on_virtual_clock(main, start=0.0)
        assert (reading, thread) == (30.0, "sagakit-simulate")

    def test_bad_start(self) -> None:
        """The start must be a finite number."""
        with pytest.raises(TypeError, match="VirtualClockLoop start: expected a finite number"):
            VirtualClockLoop(float("nan"))


def steps_of(history: sk.RunHistory) -> pd.DataFrame:
    return history.steps.drop(columns=["run_id"])


class TestLatency:
    def test_constant_latency_sets_every_duration(self) -> None:
        """With constant latencies each attempt lasts exactly its latency, and a run the sum of its steps."""
        history = order_saga().simulate(
            20, ORDER, world=Shop, latency={"reserve_inventory": 0.05, "charge_payment": 0.2, "ship_order": 0.1}
        )
        steps = history.steps
        expected = steps["step"].map({"reserve_inventory": 50.0, "charge_payment": 200.0, "ship_order": 100.0})
        assert steps["duration_ms"].to_numpy() == pytest.approx(expected.to_numpy(), abs=1e-3)
        runs = history.runs
        assert runs["duration_ms"].to_numpy() == pytest.approx([350.0] * 20, abs=1e-3)
        assert (runs["started_at"] - pd.Timestamp(DEFAULT_START)).abs().max() < pd.Timedelta(microseconds=1)
        first = steps[steps["run_id"] == runs["run_id"].iloc[0]]
        gaps = (first["started_at"] - first["ended_at"].shift()).dropna()
        assert (gaps.abs() < pd.Timedelta(microseconds=1)).all()

    def test_one_latency_for_every_step_and_compensations(self) -> None:
        """A single spec applies to every step, and to compensations unless compensation_latency says otherwise."""
        saga = order_saga()
        history = saga.simulate(5, ORDER, world=Shop, latency=0.1, faults={"ship_order": "fail"})
        compensations = history.steps[history.steps["phase"] == "compensate"]
        assert set(compensations["status"]) == {"succeeded", "skipped"} or set(compensations["status"]) == {"succeeded"}
        assert compensations[compensations["status"] == "succeeded"]["duration_ms"].to_numpy() == pytest.approx(
            [100.0] * 10, abs=1e-3
        )
        faster = saga.simulate(
            5, ORDER, world=Shop, latency=0.1, compensation_latency=0.01, faults={"ship_order": "fail"}
        )
        done = faster.steps[(faster.steps["phase"] == "compensate") & (faster.steps["status"] == "succeeded")]
        assert done["duration_ms"].to_numpy() == pytest.approx([10.0] * 10, abs=1e-3)

    def test_distributions(self) -> None:
        """Uniform latencies stay in bounds; exponential ones have the asked mean; callables get the run's generator."""
        saga = order_saga()
        history = saga.simulate(
            2000,
            ORDER,
            world=Shop,
            seed=3,
            latency={
                "reserve_inventory": Latency.uniform(0.02, 0.06),
                "charge_payment": Latency.exponential(0.15, minimum=0.01),
                "ship_order": lambda rng: rng.choice([0.1, 0.3]),
            },
        )
        by_step = history.steps.groupby("step")["duration_ms"]
        reserve = history.steps[history.steps["step"] == "reserve_inventory"]["duration_ms"]
        assert reserve.between(20.0 - 1e-3, 60.0 + 1e-3).all()
        assert by_step.mean()["charge_payment"] == pytest.approx(160.0, rel=0.1)
        assert by_step.min()["charge_payment"] >= 10.0 - 1e-3
        assert set(by_step.unique()["ship_order"].round(3)) == {100.0, 300.0}

    def test_zero_argument_callables(self) -> None:
        """A latency callable may take no argument."""
        history = order_saga().simulate(3, ORDER, world=Shop, latency=lambda: 0.25)
        assert history.steps["duration_ms"].to_numpy() == pytest.approx([250.0] * 9, abs=1e-3)

    def test_latency_sits_inside_retries_and_timeouts(self) -> None:
        """Every attempt draws its own latency, inside the step's timeout: too slow an attempt times out."""
        draws = iter([3.0, 0.5])

        async def pay(data: Any, context: sk.WorkflowContext) -> Any:
            return data

        policy = sk.RetryPolicy(max_retries=2, initial_delay=1.0, jitter=0)
        saga = sk.Saga("slow", [sk.step(pay, retry=policy, timeout=1.0)])
        history = saga.simulate(1, {}, latency=lambda: next(draws))
        steps = history.steps
        assert list(steps["attempt"]) == [1, 2]
        assert list(steps["error_type"].fillna("")) == ["StepTimeout", ""]
        assert steps["duration_ms"].to_numpy() == pytest.approx([1000.0, 500.0], abs=1e-3)
        backoff = steps["started_at"].iloc[1] - steps["ended_at"].iloc[0]
        assert abs(backoff - pd.Timedelta(seconds=1)) < pd.Timedelta(microseconds=1)
        assert history[0].status == "completed"

    def test_parallel_stages(self) -> None:
        """Branches of a parallel stage overlap in simulated time: the stage lasts as long as its slowest branch."""

        async def a(data: Any, context: sk.WorkflowContext) -> dict[str, Any]:
            return {"a": 1}

        async def b(data: Any, context: sk.WorkflowContext) -> dict[str, Any]:
            return {"b": 2}

        saga = sk.Saga("fan", [sk.parallel(a, b)])
        history = saga.simulate(3, {}, latency={"a": 0.1, "b": 0.4})
        assert history.runs["duration_ms"].to_numpy() == pytest.approx([400.0] * 3, abs=1e-3)
        assert history[0].result == {"a": 1, "b": 2}


class TestReproducibility:
    OPTIONS: ClassVar[dict[str, Any]] = {
        "latency": {
            "reserve_inventory": Latency.uniform(0.02, 0.06),
            "charge_payment": Latency.exponential(0.15),
            "ship_order": 0.1,
        },
        "faults": {"charge_payment": sk.Fault("fail", probability=0.2), "ship_order": sk.Fault("fail_after", probability=0.1)},
    }

    def test_the_same_seed_gives_the_same_frames(self) -> None:
        """Two simulations with one seed agree on everything but the run ids."""
        saga = order_saga(fixed=True)
        first = saga.simulate(300, ORDER, world=Shop, seed=11, **self.OPTIONS)
        second = saga.simulate(300, ORDER, world=Shop, seed=11, concurrency=7, **self.OPTIONS)
        other = saga.simulate(300, ORDER, world=Shop, seed=12, **self.OPTIONS)
        assert set(first.runs["status"]) == {"completed", "compensated"}
        pd.testing.assert_frame_equal(steps_of(first).drop(columns=["started_at", "ended_at"]),
                                      steps_of(second).drop(columns=["started_at", "ended_at"]))
        pd.testing.assert_frame_equal(first.runs.drop(columns=["run_id", "started_at"]),
                                      second.runs.drop(columns=["run_id", "started_at"]))
        again = saga.simulate(300, ORDER, world=Shop, seed=11, **self.OPTIONS)
        pd.testing.assert_frame_equal(steps_of(first), steps_of(again))
        pd.testing.assert_frame_equal(first.runs.drop(columns=["run_id"]), again.runs.drop(columns=["run_id"]))
        assert not first.runs["status"].equals(other.runs["status"]) or not steps_of(first).equals(steps_of(other))
        assert list(first.runs["correlation_id"]) == [f"sim-{i}" for i in range(300)]

    def test_retry_jitter_repeats_too(self) -> None:
        """Retry backoff jitter is drawn from the run's seeded generator, so retried steps time the same."""

        async def pay(data: Any, context: sk.WorkflowContext) -> Any:
            return data

        saga = sk.Saga("retrying", [sk.step(pay, retry=3)])
        options = {"latency": 0.01, "faults": {"pay": sk.Fault("fail", probability=0.5)}, "seed": 5}
        first, second = saga.simulate(50, {}, **options), saga.simulate(50, {}, **options)
        assert first.steps["attempt"].max() > 1
        pd.testing.assert_frame_equal(steps_of(first), steps_of(second))
        pd.testing.assert_frame_equal(first.runs.drop(columns=["run_id"]), second.runs.drop(columns=["run_id"]))

    def test_global_random_is_left_alone(self) -> None:
        """simulate neither seeds nor draws from Python's global random generator."""
        random.seed(99)
        expected = random.Random(99).random()
        order_saga().simulate(3, ORDER, world=Shop, latency=0.1)
        assert random.random() == expected

    def test_virtual_and_real_clocks_agree(self) -> None:
        """Run for run, a virtual-clock simulation has the same steps, order and outcomes as the same seed in real time."""
        saga = order_saga(fixed=True)
        options: dict[str, Any] = {
            "latency": Latency.uniform(0.001, 0.005),
            "faults": {"charge_payment": sk.Fault("fail_after", probability=0.3), "ship_order": sk.Fault("fail", probability=0.2)},
            "seed": 21,
            "concurrency": 10,
        }
        virtual = saga.simulate(40, ORDER, world=Shop, **options)
        real = saga.simulate(40, ORDER, world=Shop, clock="real", **options)
        assert len(set(virtual.runs["status"])) == 2
        for fake, true in zip(virtual, real, strict=True):
            assert (fake.correlation_id, fake.status, fake.failed_step) == (true.correlation_id, true.status, true.failed_step)
            assert [(e.kind, e.step, e.attempt, e.injected) for e in fake.events] == [
                (e.kind, e.step, e.attempt, e.injected) for e in true.events
            ]
        columns = ["step", "phase", "attempt", "status"]
        pd.testing.assert_frame_equal(virtual.steps[columns], real.steps[columns])
        simulated = virtual.steps["duration_ms"].to_numpy()
        measured = real.steps["duration_ms"].to_numpy()
        acted = (virtual.steps["error_type"] != "InjectedFault") | (virtual.steps["duration_ms"] > 0)
        assert (virtual.steps["duration_ms"][~acted] == 0).all()  # `fail` raises before the action and its latency
        assert ((simulated[acted] >= 1.0 - 1e-3) & (simulated[acted] <= 5.0 + 1e-3)).all()
        assert (measured >= simulated - 0.01).all()  # real sleeps never end before their simulated length
        started = virtual.runs["started_at"].min()
        assert abs(started - pd.Timestamp(DEFAULT_START)) < pd.Timedelta(microseconds=1)
        assert abs(real.runs["started_at"].min() - pd.Timestamp.now(tz="UTC")) < pd.Timedelta(minutes=5)


class TestSimulate:
    def test_returns_a_new_history_and_leaves_the_saga_alone(self) -> None:
        """The runs come back as a RunHistory in run order; the saga's history, observers and steps are untouched."""
        saga = order_saga()
        seen: list[sk.Event] = []
        saga.observe(seen.append)
        before = saga.steps
        history = saga.simulate(25, ORDER, world=Shop, latency=0.1, concurrency=4)
        assert isinstance(history, sk.RunHistory) and len(history) == 25
        assert len(saga.history) == 0 and seen == []
        assert saga.steps == before and all(run.definition is saga for run in history)
        assert list(history.runs["correlation_id"]) == [f"sim-{i}" for i in range(25)]
        starts = history.runs["started_at"]
        waited = starts.iloc[4] - starts.iloc[0]  # the fifth run waits for a free slot
        assert abs(waited - pd.Timedelta(milliseconds=300)) < pd.Timedelta(microseconds=1)

    def test_start_and_saga_faults(self) -> None:
        """start sets the simulated clock; without faults= the saga's own plan applies."""
        saga = order_saga()
        saga.faults["ship_order"] = "fail"
        when = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC)
        history = saga.simulate(3, ORDER, world=Shop, latency=0.1, start=when)
        assert set(history.runs["status"]) == {"compensated"}
        assert abs(history.runs["started_at"].iloc[0] - pd.Timestamp(when)) < pd.Timedelta(microseconds=1)
        naive = simulate(saga, 1, ORDER, world=Shop, start=dt.datetime(2030, 6, 1, 12, 0), faults={})
        assert naive[0].status == "completed"
        assert abs(naive.runs["started_at"].iloc[0] - pd.Timestamp(when)) < pd.Timedelta(microseconds=1)

    def test_worlds_and_observers(self) -> None:
        """Each run gets its own world; extra observers see every run."""
        worlds: list[Shop] = []

        def make_world() -> Shop:
            worlds.append(Shop())
            return worlds[-1]

        events: list[sk.Event] = []
        history = order_saga().simulate(10, ORDER, world=make_world, observers=[events.append])
        assert len(worlds) == 10 and all(w.orders == {7: "shipped"} for w in worlds)
        assert {e.run_id for e in events} == set(history.runs["run_id"])

    def test_progress_callable(self) -> None:
        """progress receives (done, total), ending at (n, n)."""
        calls: list[tuple[int, int]] = []
        order_saga().simulate(500, ORDER, world=Shop, progress=lambda done, total: calls.append((done, total)))
        assert calls[-1] == (500, 500) and len(calls) <= 101

    async def test_inside_a_running_loop(self) -> None:
        """simulate is synchronous; inside a running loop it runs on a worker thread."""
        history = order_saga().simulate(5, ORDER, world=Shop, latency=1.0)
        assert list(history.runs["duration_ms"].round(3)) == [3000.0] * 5

    def test_a_failing_world_factory_propagates(self) -> None:
        """An exception outside the saga (here, the world factory) stops the simulation and propagates."""

        def broken() -> Shop:
            raise RuntimeError("no shop today")

        with pytest.raises(RuntimeError, match="no shop today"):
            order_saga().simulate(10, ORDER, world=broken)


class TestBadInput:
    def test_a_saga_is_required(self) -> None:
        """simulate() and explore() called with something else than a Saga name their saga argument."""
        from sagakit.explore import explore, simulate

        with pytest.raises(TypeError, match=r"simulate saga: expected a sagakit\.Saga, got str"):
            simulate("order", 5, ORDER)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"explore saga: expected a sagakit\.Saga, got str"):
            asyncio.run(explore("order", ORDER))  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("n", "options", "error", "message"),
        [
            (0, {}, ValueError, "simulate n: expected an int >= 1, got 0"),
            ("3", {}, TypeError, "simulate n: expected an int >= 1, got str '3'"),
            (True, {}, TypeError, "simulate n: expected an int >= 1"),
            (5, {"latency": -1}, ValueError, "simulate latency: expected a finite number of seconds >= 0, got -1"),
            (5, {"latency": "fast"}, TypeError, "simulate latency: expected seconds, a Latency"),
            (5, {"latency": {"charge_payment": "fast"}}, TypeError, "simulate latency for step 'charge_payment'"),
            (5, {"latency": {"pay": 0.1}}, sk.UnknownStepError, "no step named 'pay'"),
            (5, {"compensation_latency": float("inf")}, ValueError, "simulate compensation_latency: expected a finite"),
            (5, {"faults": {"pay": "fail"}}, sk.UnknownStepError, "no step named 'pay'"),
            (5, {"faults": {"ship_order": "explode"}}, sk.FaultError, "unknown fault mode 'explode'"),
            (5, {"concurrency": 0}, ValueError, "simulate concurrency: expected an int >= 1, got 0"),
            (5, {"seed": "abc"}, TypeError, "simulate seed: expected an int or None"),
            (5, {"clock": "warp"}, ValueError, "simulate clock: expected 'virtual' or 'real'"),
            (5, {"start": "yesterday"}, TypeError, "simulate start: expected a datetime or epoch seconds"),
            (5, {"world": Shop()}, TypeError, "simulate world: expected a factory callable"),
            (5, {"progress": 3}, TypeError, "simulate progress: expected True, False, None"),
            (5, {"latency": 10**400}, ValueError, "simulate latency: expected a finite number of seconds >= 0, got an int"),
            (5, {"observers": None}, TypeError, "simulate observers: expected an iterable of callables"),
        ],
    )
    def test_bad_arguments_are_named(self, n: Any, options: dict[str, Any], error: type[Exception], message: str) -> None:
        """Each bad argument fails before anything runs, naming the argument and what was expected."""
        with pytest.raises(error) as caught:
            order_saga().simulate(n, ORDER, **options)
        assert message in str(caught.value)

    def test_a_latency_callable_returning_nonsense(self) -> None:
        """A latency callable must return seconds >= 0; the error names the step and phase."""
        with pytest.raises(ValueError, match=r"for step 'reserve_inventory' \(forward\) returned -0.5"):
            order_saga().simulate(2, ORDER, world=Shop, latency=lambda rng: -0.5)

    @pytest.mark.parametrize(
        ("build", "message"),
        [
            (lambda: Latency.uniform(0.5, 0.1), "expected low <= high"),
            (lambda: Latency.constant(-1), "Latency.constant seconds: expected a finite number"),
            (lambda: Latency.exponential("1"),  # type: ignore[arg-type]
             "Latency.exponential mean: expected a number"),
            (lambda: Latency.of(3),  # type: ignore[arg-type]
             "Latency.of: expected a callable"),
        ],
    )
    def test_bad_distributions(self, build: Callable[[], Latency], message: str) -> None:
        """Distributions check their parameters when built."""
        with pytest.raises((TypeError, ValueError), match=message):
            build()

    def test_latency_reprs(self) -> None:
        """Latencies say what they are."""
        assert repr(Latency.uniform(0.01, 0.02)) == "Latency.uniform(0.01, 0.02)"
        assert repr(Latency.constant(0.1)) == "Latency.constant(0.1)"

        def jitter(rng: random.Random) -> float:
            return rng.random()

        assert repr(Latency.of(jitter)) == "Latency.of(jitter)"


class TestForwardRecovery:
    """simulate with a pivot: retriable steps retry forward on the virtual clock; stuck runs are reported."""

    @staticmethod
    def checkout(retry: sk.RetryPolicy | None = None) -> sk.Saga:
        async def reserve(data: Any, context: sk.WorkflowContext) -> Any:
            return data

        async def release(data: Any, context: sk.WorkflowContext) -> None:
            return None

        async def capture(data: Any, context: sk.WorkflowContext) -> Any:
            return data

        async def ship(data: Any, context: sk.WorkflowContext) -> Any:
            return data

        return sk.Saga("checkout", [sk.step(reserve, release), sk.step(capture, kind="pivot"),
                                    sk.step(ship, retry=retry)])

    def test_latency_keeps_the_step_kinds(self) -> None:
        """With latencies the pivot stays the pivot: a failing shipment leaves the run stuck, never rolled back,
        and the step frame keeps each step's kind."""
        history = self.checkout().simulate(20, {}, latency=0.1, faults={"ship": "fail"}, seed=1)
        assert set(history.runs["status"]) == {"stuck"}
        assert set(history.runs["failed_step"]) == {"ship"} and history.runs["compensations_run"].eq(0).all()
        kinds = dict(zip(history.steps["step"], history.steps["kind"], strict=True))
        assert kinds == {"reserve": "compensatable", "capture": "pivot", "ship": "retriable"}

    def test_backoff_of_a_retriable_step_advances_virtual_time(self) -> None:
        """Two failed attempts and a success: the run lasts its latencies plus two backoffs of 2 s each."""
        async def ship(data: Any, context: sk.WorkflowContext) -> Any:
            if context.attempt < 3:
                raise ConnectionError("carrier busy")
            return data

        policy = sk.RetryPolicy(max_retries=3, initial_delay=2.0, max_delay=2.0, jitter=0)
        saga = self.checkout()
        saga = saga.replace(stages=[*saga.stages[:2], sk.step(ship, retry=policy)])
        history = saga.simulate(1, {}, latency=0.5)
        run = history[0]
        assert run.status == "completed"
        ship_rows = history.steps[history.steps["step"] == "ship"]
        assert ship_rows["attempt"].tolist() == [1, 2, 3]
        assert ship_rows["status"].tolist() == ["failed", "failed", "succeeded"]
        # reserve, capture and three attempts of ship take 0.5 s each, plus 2 + 2 s of backoff.
        assert run.duration_ms == pytest.approx(5 * 500.0 + 4000.0, abs=1e-3)

    def test_the_default_forward_policy_runs_out_at_its_deadline_on_the_virtual_clock(self) -> None:
        """FORWARD_RETRY stops starting attempts 60 virtual seconds after the first: with 25 s attempts, three."""
        history = self.checkout().simulate(3, {}, latency={"ship": 25.0}, faults={"ship": "fail_after"}, seed=2)
        assert set(history.runs["status"]) == {"stuck"}
        attempts = history.steps[history.steps["step"] == "ship"].groupby("run_id")["attempt"].max()
        assert set(attempts) == {3}
        assert (history.runs["duration_ms"] > 75_000).all()

    def test_many_runs_report_their_stuck_ones_reproducibly(self) -> None:
        """A flaky shipment: most runs complete forward after retries, some run out and are stuck;
        the history lists them with the pending step, and the same seed gives the same ones."""
        options = {"latency": 0.05, "faults": {"ship": sk.Fault("fail", probability=0.7)}, "seed": 9}
        first = self.checkout().simulate(300, {}, **options)
        again = self.checkout().simulate(300, {}, **options)
        statuses = first.runs["status"].value_counts().to_dict()
        assert set(statuses) == {"completed", "stuck"} and statuses["stuck"] > 0
        stuck = first.runs[first.runs["status"] == "stuck"]
        assert set(stuck["failed_step"]) == {"ship"} and set(stuck["error_type"]) == {"SagaStuck"}
        retried = first.steps[(first.steps["step"] == "ship") & (first.steps["attempt"] > 1)]
        assert len(retried) > 0
        assert first.runs["status"].tolist() == again.runs["status"].tolist()
        pd.testing.assert_frame_equal(steps_of(first), steps_of(again))

    def test_a_transient_fault_fails_the_first_attempt_of_every_run(self) -> None:
        """simulate keeps a transient fault as it is (it is not redrawn per run like a flaky one)."""
        from sagakit.explore import transient

        history = self.checkout().simulate(5, {}, faults={"ship": transient()}, seed=3)
        ship = history.steps[history.steps["step"] == "ship"]
        assert set(history.runs["status"]) == {"completed"}
        assert ship.groupby("run_id")["status"].apply(list).tolist() == [["failed", "succeeded"]] * 5

