"""Interleavings as plain data: exact replay here and in other processes, the same seed everywhere, and
partial-order reduction that never loses what the full search finds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from isolation_shop import both, shop, two_orders

import sagakit as sk
from sagakit.explore import (
    Interleaving,
    InterleavingResult,
    World,
    explore_concurrent,
    replay_interleaving,
    replay_interleaving_sync,
)

HERE = Path(__file__).resolve().parent


def trace(result: InterleavingResult) -> list[Any]:
    """Everything a replay must repeat: each action, its status, and every value read and written, in order."""
    return [
        [[a.run, a.step, a.phase, a.status, a.attempts] for a in result.actions],
        [[a.action, a.run, a.step, a.phase, a.kind, repr(a.key), repr(a.value)] for a in result.accesses],
        [run.status for run in result.runs],
        repr(sorted(result.world.items())),
    ]


class TestPlainData:
    def test_an_interleaving_reads_back_from_json(self) -> None:
        """to_dict gives JSON-ready data; from_dict reads it back equal, faults with their options included."""
        interleaving = Interleaving(
            ("order", "order"),
            ((("charge", sk.Fault("fail")),), (("reserve", sk.Fault("fail_after", delay=0.5, probability=0.5, seed=3)),)),
            ((0, "check", "forward"), (1, "check", "forward"), (0, "reserve", "compensate")),
        )
        data = json.loads(json.dumps(interleaving.to_dict()))
        assert data["faults"] == [{"charge": "fail"}, {"reserve": {"mode": "fail_after", "delay": 0.5,
                                                                   "probability": 0.5, "seed": 3}}]
        assert Interleaving.from_dict(data) == interleaving
        assert interleaving.text == "0:check 1:check 0:undo reserve"
        assert interleaving.switches == 2 and interleaving.fault_count == 2
        assert interleaving.label == "run 0: charge=fail; run 1: reserve=fail_after"

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"sagas": ["a"]}, "expected a mapping with 'sagas', 'faults' and 'order'"),
            ({"sagas": "ab", "faults": [], "order": []}, "sagas: expected a list of saga names"),
            ({"sagas": ["a", "b"], "faults": [{}], "order": []}, "faults: expected one fault plan per run (2)"),
            ({"sagas": ["a", "b"], "faults": [{}, {"s": "explode"}], "order": []}, "unknown fault mode 'explode'"),
            ({"sagas": ["a", "b"], "faults": [{}, {}], "order": [[2, "s", "forward"]]},
             "order[0]: expected [run, step, 'forward' or 'compensate'] with run from 0 to 1"),
            ({"sagas": ["a", "b"], "faults": [{}, {}], "order": [[0, "s", "sideways"]]}, "order[0]: expected"),
        ],
    )
    def test_bad_data_is_refused_saying_where(self, data: dict[str, Any], message: str) -> None:
        """Malformed plain data fails with a message naming the part that is wrong."""
        with pytest.raises((TypeError, ValueError, sk.FaultError)) as caught:
            Interleaving.from_dict(data)
        assert message in str(caught.value)


class TestExactReplay:
    async def test_every_interleaving_replays_with_the_same_actions_and_values(self) -> None:
        """Every violating interleaving and every counterexample replays exactly: the same actions in the
        same order, with the same statuses and the same values read and written; so does replay_interleaving
        from the plain data, and its synchronous twin."""
        exploration = await explore_concurrent(two_orders("naive"), world=shop, invariant=both)
        assert exploration.violating and exploration.counterexamples
        for result in (*exploration.violating, *(c.minimal for c in exploration.counterexamples)):
            again = await exploration.replay(result)
            assert trace(again) == trace(result)
            assert again.violation == result.violation and again.anomaly == result.anomaly
        found = exploration.counterexamples[0]
        data = json.loads(json.dumps(found.interleaving.to_dict()))
        direct = await replay_interleaving(two_orders("naive"), data, world=shop, invariant=both)
        assert trace(direct) == trace(found.minimal)
        assert trace(replay_interleaving_sync(two_orders("naive"), found, world=shop, invariant=both)) == \
            trace(found.minimal)
        numbered = await exploration.replay(int(exploration.violations["interleaving"].iloc[0]))
        assert numbered.violated

    def test_a_replay_in_another_process_repeats_the_values(self, tmp_path: Path) -> None:
        """The plain data, written to a file, replays in a new interpreter with the same actions and values."""
        script = tmp_path / "explore_then_replay.py"
        script.write_text(textwrap.dedent(
            f"""
            import asyncio, json, sys
            sys.path.insert(0, {str(HERE)!r})
            from isolation_shop import both, shop, two_orders
            from sagakit.explore import explore_concurrent, replay_interleaving


            def trace(result):
                return [
                    [[a.run, a.step, a.phase, a.status, a.attempts] for a in result.actions],
                    [[a.action, a.run, a.step, a.phase, a.kind, repr(a.key), repr(a.value)] for a in result.accesses],
                    [run.status for run in result.runs],
                    repr(sorted(result.world.items())),
                ]


            async def main():
                if sys.argv[1] == "explore":
                    exploration = await explore_concurrent(two_orders("naive"), world=shop, invariant=both)
                    found = [c.minimal for c in exploration.counterexamples]
                    print(json.dumps([[r.interleaving.to_dict(), trace(r)] for r in found]))
                else:
                    saved = json.loads(open(sys.argv[2]).read())
                    again = [trace(await replay_interleaving(two_orders("naive"), data, world=shop, invariant=both))
                             for data, _ in saved]
                    print(json.dumps(again))

            asyncio.run(main())
            """
        ))
        env = {**os.environ, "PYTHONHASHSEED": "11"}
        first = subprocess.run([sys.executable, str(script), "explore"], capture_output=True, text=True, env=env,
                               check=True, timeout=300)
        saved = tmp_path / "counterexamples.json"
        saved.write_text(first.stdout)
        env["PYTHONHASHSEED"] = "12"
        second = subprocess.run([sys.executable, str(script), "replay", str(saved)], capture_output=True, text=True,
                                env=env, check=True, timeout=300)
        expected = [recorded for _, recorded in json.loads(first.stdout)]
        assert len(expected) == 2
        assert json.loads(second.stdout) == expected

    def test_the_same_seed_gives_the_same_schedules_in_two_processes(self, tmp_path: Path) -> None:
        """Random search (faults and PCT priorities drawn from the seed) repeats in another interpreter with
        another hash seed; another seed draws other schedules."""
        script = tmp_path / "draw.py"
        script.write_text(textwrap.dedent(
            f"""
            import asyncio, json, sys
            sys.path.insert(0, {str(HERE)!r})
            from isolation_shop import both, shop, two_orders
            from sagakit.explore import explore_concurrent


            async def main():
                exploration = await explore_concurrent(two_orders("naive"), world=shop, invariant=both,
                                                       search="random", budget=60, seed=int(sys.argv[1]))
                frame = exploration.interleavings
                print(json.dumps([list(frame["faults"]), list(frame["order"]), [str(a) for a in frame["anomaly"]],
                                  [c.interleaving.to_dict() for c in exploration.counterexamples]]))

            asyncio.run(main())
            """
        ))
        runs = []
        for hash_seed, seed in (("1", "7"), ("2", "7"), ("3", "8")):
            env = {**os.environ, "PYTHONHASHSEED": hash_seed}
            done = subprocess.run([sys.executable, str(script), seed], capture_output=True, text=True, env=env,
                                  check=True, timeout=300)
            runs.append(json.loads(done.stdout))
        assert runs[0] == runs[1]
        assert runs[0][1] != runs[2][1]
        assert runs[0][3]  # it found and shrank something

    async def test_a_replay_that_cannot_be_followed_says_so(self) -> None:
        """An order the runs do not take (a step that depends on more than the world) is a RuntimeError naming
        the action; an interleaving of other sagas, or of a step the saga lacks, is refused."""
        exploration = await explore_concurrent(two_orders("naive"), world=shop, invariant=both, modes=())
        found = exploration.counterexamples[0].interleaving
        swapped = Interleaving(found.sagas, found.faults, found.order[1:])
        with pytest.raises(RuntimeError, match=r"did not follow the interleaving at action \d+: it has run \d"):
            await exploration.replay(swapped)
        with pytest.raises(ValueError, match=r"the interleaving is of runs \['order-naive', 'order-naive'\], these "
                                             r"runs are \['order-locked', 'order-locked'\]"):
            await replay_interleaving(two_orders("locked"), found, world=shop)
        wrong = Interleaving(found.sagas, ((("ship", sk.Fault("fail")),), ()), found.order)
        with pytest.raises(sk.UnknownStepError, match="ship"):
            await exploration.replay(wrong)
        with pytest.raises(TypeError, match="replay interleaving: expected an Interleaving"):
            await exploration.replay("0:check")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="replay_interleaving interleaving: expected an Interleaving"):
            await replay_interleaving(two_orders("naive"), [1, 2], world=shop)  # type: ignore[arg-type]


# -- partial-order reduction against the full search --------------------------------------


def operation(kind: str, key: str) -> Any:
    def act(world: World) -> None:
        if kind == "read":
            if world[key] > 2:
                raise RuntimeError(f"{key} too big")
        elif kind == "write":
            world[key] = 7
        else:
            world[key] = world[key] + 1
    return act


@st.composite
def small_sagas(draw: st.DrawFn, name: str, keys: list[str]) -> sk.Saga:
    """1-2 stages, some parallel, steps and compensations reading and writing a few keys."""
    ops = st.lists(st.tuples(st.sampled_from(["read", "write", "add"]), st.sampled_from(keys)), max_size=2)
    stages: list[Any] = []
    count = 0
    for _ in range(draw(st.integers(1, 2))):
        members = []
        for _ in range(draw(st.sampled_from([1, 1, 2]))):
            forward = [operation(kind, key) for kind, key in draw(ops)]
            backward = [operation(kind, key) for kind, key in draw(ops)] if draw(st.booleans()) else None

            def run_all(actions: list[Any]) -> Any:
                async def fn(data: Any, context: sk.WorkflowContext) -> Any:
                    for act in actions:
                        act(context.world)
                    return {}
                return fn

            step_name = f"{name}{count}"
            action = run_all(forward)
            action.__name__ = step_name
            members.append(sk.step(action, run_all(backward) if backward is not None else None, name=step_name))
            count += 1
        stages.append(members[0] if len(members) == 1 else sk.parallel(*members))
    return sk.Saga(name, stages)


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[sk.Saga], list[str], tuple[str, ...], str]:
    keys = ["x", "y"][: draw(st.integers(1, 2))]
    sagas = [draw(small_sagas(f"s{n}", keys)) for n in range(2)]
    modes = draw(st.sampled_from([(), ("fail",), ("fail", "fail_after", "fail_compensation")]))
    check = draw(st.sampled_from(["end", "end", "every action"]))
    return sagas, keys, modes, check


class TestReduction:
    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=cases())
    async def test_reduction_loses_no_outcome_and_no_violation(
        self, case: tuple[list[sk.Saga], list[str], tuple[str, ...], str]
    ) -> None:
        """On small random sagas (parallel stages, compensations, faults), the reduced search reaches exactly
        the end states (world and run statuses) of the full one, and an invariant violated in one is violated
        in the other, both ways: at the end, and after every action (where checking stops at a violation, so
        only the verdicts compare)."""
        sagas, keys, modes, check = case
        outcomes: dict[bool, set[Any]] = {True: set(), False: set()}
        violated: dict[bool, bool] = {}
        for reduce in (True, False):
            seen = outcomes[reduce]

            def record(world: World, runs: tuple[sk.Run | None, ...], seen: set[Any] = seen) -> bool:
                if all(run is not None for run in runs):
                    seen.add((tuple(sorted(world.to_dict().items())), tuple(run.status for run in runs if run)))
                return world["x"] != 2  # some states violate

            exploration = await explore_concurrent(
                list(sagas), world=lambda: World(dict.fromkeys(keys, 0)), invariant=record, modes=modes,
                reduce=reduce, check=check, shrink=False, budget=20_000,  # type: ignore[arg-type]
            )
            assert exploration.complete
            violated[reduce] = not exploration.ok
        if check == "end":
            assert outcomes[True] == outcomes[False]
        assert violated[True] == violated[False]
