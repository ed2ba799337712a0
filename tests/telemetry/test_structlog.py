"""StructlogEvents: the seed's compensation events and the step events, on the sagakit logger."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs
from telemetry_support import failing, noop_step

import sagakit
from sagakit.telemetry import StructlogEvents


def order_saga(**options: Any) -> sagakit.Saga:
    return sagakit.Saga(
        "OrderWorkflow",
        [noop_step("reserve_inventory"), noop_step("charge_payment"), noop_step("ship_order", compensate=False),
         sagakit.step(failing(RuntimeError("carrier down")), name="notify")],
        **options,
    )


class TestEvents:
    """Which events, in which order, with which fields."""

    async def test_a_rollback_tells_its_story(self) -> None:
        """Steps, the failure, rollback_started, then compensation_* in reverse, then saga_finished."""
        saga = order_saga()
        StructlogEvents().attach(saga)
        with capture_logs() as logs:
            run = await saga.run({}, sagakit.WorkflowContext(correlation_id="order-7"))
        assert [(log["event"], log.get("step"), log["log_level"]) for log in logs] == [
            ("saga_started", None, "debug"),
            ("step_started", "reserve_inventory", "debug"),
            ("step_succeeded", "reserve_inventory", "debug"),
            ("step_started", "charge_payment", "debug"),
            ("step_succeeded", "charge_payment", "debug"),
            ("step_started", "ship_order", "debug"),
            ("step_succeeded", "ship_order", "debug"),
            ("step_started", "notify", "debug"),
            ("step_failed", "notify", "warning"),
            ("rollback_started", None, "warning"),
            ("compensation_skipped", "ship_order", "info"),
            ("compensation_started", "charge_payment", "info"),
            ("compensation_completed", "charge_payment", "info"),
            ("compensation_started", "reserve_inventory", "info"),
            ("compensation_completed", "reserve_inventory", "info"),
            ("saga_finished", None, "warning"),
        ]
        for log in logs:
            assert log["saga"] == log["primitive"] == "OrderWorkflow"
            assert log["run_id"] == run.run_id
            assert log["correlation_id"] == "order-7"

    async def test_compensation_events_carry_the_seeds_fields(self) -> None:
        """compensation_started has primitive, step and compensation_reason; completed adds duration_ms."""
        saga = order_saga()
        StructlogEvents().attach(saga)
        with capture_logs() as logs:
            run = await saga.run({})
        started = next(log for log in logs if log["event"] == "compensation_started")
        assert started == {
            "event": "compensation_started",
            "log_level": "info",
            "saga": "OrderWorkflow",
            "primitive": "OrderWorkflow",
            "run_id": run.run_id,
            "correlation_id": None,
            "step": "charge_payment",
            "index": 1,
            "phase": "compensate",
            "attempt": 1,
            "compensation_reason": "notify_failed",
        }
        completed = next(log for log in logs if log["event"] == "compensation_completed")
        assert isinstance(completed["duration_ms"], float) and completed["duration_ms"] >= 0.0
        assert completed["step"] == "charge_payment"
        failed_step = next(log for log in logs if log["event"] == "step_failed")
        assert failed_step["error_type"] == "RuntimeError"
        assert failed_step["error"] == "carrier down"
        finished = logs[-1]
        assert finished["status"] == "compensated" and finished["error_type"] == "RuntimeError"

    async def test_failed_compensation_is_an_error_event(self) -> None:
        """compensation_failed at error level with duration and redacted error; the run ends at error."""
        saga = order_saga()
        StructlogEvents().attach(saga)
        with capture_logs() as logs:
            await saga.run({}, faults={"charge_payment": "fail_compensation"})
        failed = next(log for log in logs if log["event"] == "compensation_failed")
        assert failed["log_level"] == "error"
        assert failed["step"] == "charge_payment"
        assert failed["error_type"] == "InjectedFault"
        assert failed["injected"] is True
        assert "duration_ms" in failed
        assert logs[-1]["event"] == "saga_finished" and logs[-1]["log_level"] == "error"
        assert logs[-1]["error_type"] == "CompensationError"

    async def test_cancelled_rollback_gives_cancelled_as_the_reason(self) -> None:
        """A cancellation is the compensation_reason when no step failed."""
        import asyncio

        started = asyncio.Event()

        async def wait(data: Any, context: sagakit.WorkflowContext) -> Any:
            started.set()
            await asyncio.Event().wait()

        saga = sagakit.Saga("slow", [noop_step("a"), sagakit.step(wait)])
        sink = StructlogEvents()
        sink.attach(saga)
        with capture_logs() as logs:
            task = asyncio.create_task(saga.run({}))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        reasons = {log["compensation_reason"] for log in logs if log["event"].startswith("compensation_")}
        assert reasons == {"cancelled"}
        assert logs[-1]["status"] == "cancelled"
        assert sink.open_runs == 0


class TestSwitches:
    """log_compensations, step_events and the logger used."""

    async def test_log_compensations_false_silences_compensation_events(self) -> None:
        """The saga's log_compensations=False drops rollback_started and compensation_*, nothing else."""
        saga = order_saga(log_compensations=False)
        StructlogEvents().attach(saga)
        with capture_logs() as logs:
            await saga.run({})
        names = [log["event"] for log in logs]
        assert not [name for name in names if name.startswith("compensation_") or name == "rollback_started"]
        assert "step_failed" in names and names[-1] == "saga_finished"

    async def test_an_attached_saga_s_flag_decides(self) -> None:
        """Attached to a saga with log_compensations=False, the sink writes no compensation events."""
        saga = order_saga().replace(log_compensations=False)
        StructlogEvents().attach(saga)
        with capture_logs() as logs:
            await saga.run({})
        assert "compensation_started" not in [log["event"] for log in logs]

    async def test_unattached_sink_uses_its_own_switch(self) -> None:
        """Passed per run, the sink's own log_compensations decides."""
        saga = order_saga()
        with capture_logs() as logs:
            await saga.run({}, observers=[StructlogEvents(log_compensations=False)])
        assert "compensation_started" not in [log["event"] for log in logs]

    async def test_step_events_false_keeps_runs_and_compensations(self) -> None:
        """step_events=False: no step_* events, compensations still logged."""
        saga = order_saga()
        StructlogEvents(step_events=False).attach(saga)
        with capture_logs() as logs:
            await saga.run({})
        names = [log["event"] for log in logs]
        assert not [name for name in names if name.startswith("step_")]
        assert "compensation_completed" in names

    async def test_default_logger_is_named_sagakit(self, caplog: pytest.LogCaptureFixture) -> None:
        """With structlog routed to the standard library, records come from the 'sagakit' logger."""
        structlog.configure(
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
        )
        try:
            saga = sagakit.Saga("order", [noop_step("a")])
            StructlogEvents().attach(saga)
            with caplog.at_level(logging.DEBUG, logger="sagakit"):
                await saga.run({})
        finally:
            structlog.reset_defaults()
        assert {record.name for record in caplog.records} == {"sagakit"}
        assert caplog.records[0].getMessage().startswith("event='saga_started'")

    async def test_a_given_logger_is_used_as_is(self) -> None:
        """logger= takes a bound logger of the application's own, without global configuration."""
        seen: list[tuple[str, dict[str, Any]]] = []

        def keep(logger: Any, method: str, event_dict: dict[str, Any]) -> str:
            seen.append((method, event_dict))
            return ""

        logger = structlog.wrap_logger(structlog.ReturnLogger(), processors=[keep])
        saga = sagakit.Saga("order", [noop_step("a")])
        StructlogEvents(logger).attach(saga)
        was_configured = structlog.is_configured()
        await saga.run({})
        assert [(method, event["event"]) for method, event in seen] == [
            ("debug", "saga_started"),
            ("debug", "step_started"),
            ("debug", "step_succeeded"),
            ("info", "saga_finished"),
        ]
        assert structlog.is_configured() == was_configured

    async def test_a_filtering_logger_drops_levels_it_does_not_want(self) -> None:
        """With make_filtering_bound_logger(INFO) only info and above reach the processors."""
        seen: list[str] = []

        def keep(logger: Any, method: str, event_dict: dict[str, Any]) -> str:
            seen.append(event_dict["event"])
            return ""

        logger = structlog.wrap_logger(
            structlog.ReturnLogger(), processors=[keep], wrapper_class=structlog.make_filtering_bound_logger(logging.INFO)
        ).bind()
        saga = order_saga()
        StructlogEvents(logger).attach(saga)
        await saga.run({})
        assert seen == [
            "step_failed",
            "rollback_started",
            "compensation_skipped",
            "compensation_started",
            "compensation_completed",
            "compensation_started",
            "compensation_completed",
            "saga_finished",
        ]

    async def test_each_run_is_bound_to_its_own_identity(self) -> None:
        """The per-run binding never leaks one run's saga or run id into another's events."""
        sink = StructlogEvents()
        first = sagakit.Saga("first", [noop_step("a")])
        second = sagakit.Saga("second", [noop_step("a"), sagakit.step(failing(ValueError("no")), name="b")])
        sink.attach(first)
        sink.attach(second)
        with capture_logs() as logs:
            runs = await asyncio.gather(
                first.run({}, sagakit.WorkflowContext(correlation_id="c-1")),
                second.run({}),
                first.run({}),
            )
        by_run = {run.run_id: run for run in runs}
        assert len(by_run) == 3
        for log in logs:
            run = by_run[log["run_id"]]
            assert log["saga"] == log["primitive"] == run.saga
            assert log["correlation_id"] == run.correlation_id
        assert sorted(sum(log["event"] == "saga_finished" for log in logs if log["run_id"] == r) for r in by_run) == [
            1,
            1,
            1,
        ]
        assert sink.open_runs == 0

    async def test_an_error_reported_by_several_events_is_scrubbed_in_each(self) -> None:
        """step_failed, rollback_started and saga_finished share one scrubbed text, secret-free."""
        card = "4000 0566 5566 5556"

        async def charge(data: Any, context: sagakit.WorkflowContext) -> Any:
            return {"card_ref": "r-1", "card": card}

        async def ship(data: Any, context: sagakit.WorkflowContext) -> Any:
            raise ValueError(f"carrier rejected {data['card']} for order")

        saga = sagakit.Saga("order", [sagakit.step(charge, noop_step("x").compensate, name="charge"),
                                      sagakit.step(ship, name="ship")])
        StructlogEvents().attach(saga)
        with capture_logs() as logs:
            await saga.run({})
        errors = {log["event"]: log["error"] for log in logs if "error" in log}
        assert set(errors) == {"step_failed", "rollback_started", "saga_finished"}
        assert set(errors.values()) == {"carrier rejected [REDACTED] for order"}

    async def test_fields_keep_their_order(self) -> None:
        """Identity first, then the event's own fields, as a renderer that keeps order shows them."""
        seen: list[list[str]] = []

        def keep(logger: Any, method: str, event_dict: dict[str, Any]) -> str:
            seen.append(list(event_dict))
            return ""

        logger = structlog.wrap_logger(structlog.ReturnLogger(), processors=[keep])
        saga = sagakit.Saga("order", [noop_step("a")])
        StructlogEvents(logger).attach(saga)
        await saga.run({})
        identity = ["saga", "primitive", "run_id", "correlation_id"]
        assert seen == [
            [*identity, "event"],
            [*identity, "step", "index", "phase", "attempt", "event"],
            [*identity, "step", "index", "phase", "attempt", "duration_ms", "event"],
            [*identity, "status", "duration_ms", "event"],
        ]

    async def test_a_logger_without_bind_gets_the_identity_on_every_call(self) -> None:
        """Any object with logging methods will do: the run's fields are passed with each event."""
        calls: list[tuple[str, str, dict[str, Any]]] = []

        class Plain:
            def debug(self, event: str, **fields: Any) -> None:
                calls.append(("debug", event, fields))

            def info(self, event: str, **fields: Any) -> None:
                calls.append(("info", event, fields))

        saga = sagakit.Saga("order", [noop_step("a")])
        StructlogEvents(Plain()).attach(saga)
        run = await saga.run({})
        assert [(level, event) for level, event, _ in calls] == [
            ("debug", "saga_started"),
            ("debug", "step_started"),
            ("debug", "step_succeeded"),
            ("info", "saga_finished"),
        ]
        assert all(fields["run_id"] == run.run_id and fields["saga"] == "order" for _, _, fields in calls)
        assert calls[2][2]["step"] == "a" and "duration_ms" in calls[2][2]

    def test_rejects_something_that_is_not_a_logger(self) -> None:
        """logger= must have logging methods."""
        with pytest.raises(TypeError, match="StructlogEvents logger"):
            StructlogEvents(logger=42)
