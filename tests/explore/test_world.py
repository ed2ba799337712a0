"""The tracked World: a plain mapping outside exploration, a record of who touched what inside it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import sagakit as sk
from sagakit.explore import ABSENT, KEYS, World, explore_concurrent


async def noop(data: Any, context: sk.WorkflowContext) -> Any:
    return data


class TestAMapping:
    def test_it_behaves_as_a_dict(self) -> None:
        """Built like a dict, read and changed like one, copied deeply; nothing is recorded outside exploration."""
        world = World({"stock": 1}, orders=[])
        world["stock"] -= 1
        world["orders"].append("ann")
        world.setdefault("refused", ())
        assert dict(world) == {"stock": 0, "orders": ["ann"], "refused": ()}
        assert len(world) == 3 and "stock" in world and "missing" not in world
        assert world.get("missing", 7) == 7
        del world["refused"]
        assert world.to_dict() == {"stock": 0, "orders": ["ann"]}
        deep = copy.deepcopy(world)
        deep["orders"].append("bob")
        assert world["orders"] == ["ann"] and isinstance(deep, World)
        assert repr(world) == "World({'stock': 0, 'orders': ['ann']})"
        assert world == {"stock": 0, "orders": ["ann"]}

    async def test_a_saga_run_uses_it_as_its_world(self) -> None:
        """Steps of an ordinary run reach it as context.world, as any world."""

        async def take(data: Any, context: sk.WorkflowContext) -> Any:
            context.world["stock"] -= 1
            return data

        world = World(stock=2)
        run = await sk.Saga("plain", [sk.step(take)]).run({}, sk.WorkflowContext(world=world))
        assert run.status == "completed" and world["stock"] == 1


def _recorder(body: Any, *, retry: int = 0) -> sk.Saga:
    async def touch(data: Any, context: sk.WorkflowContext) -> Any:
        body(context.world, context)
        return data

    return sk.Saga(f"touch{id(body)}", [sk.step(touch, retry=sk.RetryPolicy(max_retries=retry, jitter=0.0))])


async def accesses_of(body: Any, world: Any = None, *, retry: int = 0) -> list[tuple[Any, ...]]:
    """The accesses of run 0's one action, as (kind, key, value, step, phase, attempt)."""
    saga = _recorder(body, retry=retry)
    idle = sk.Saga("idle", [sk.step(noop)])
    exploration = await explore_concurrent(
        [saga, idle], world=(lambda: World(world or {"stock": 1, "orders": []})), modes=(), invariant=lambda w, r: False,
        shrink=False, budget=1,
    )
    result = exploration.violating[0]
    return [(a.kind, a.key, a.value, a.step, a.phase, a.attempt) for a in result.accesses if a.run == 0]


class TestRecording:
    async def test_reads_and_writes_name_run_step_phase_and_attempt(self) -> None:
        """Each access records its key, the value seen or written, and the action that made it."""

        def body(world: World, context: sk.WorkflowContext) -> None:
            world["stock"] = world["stock"] - 1

        assert await accesses_of(body) == [
            ("read", "stock", 1, "touch", "forward", 1),
            ("write", "stock", 0, "touch", "forward", 1),
        ]

    async def test_retries_are_told_apart(self) -> None:
        """A retried step is one action; its accesses carry the attempt that made them."""

        def body(world: World, context: sk.WorkflowContext) -> None:
            world["stock"] = context.attempt
            if context.attempt < 2:
                raise ConnectionError("again")

        recorded = await accesses_of(body, retry=2)
        assert [(kind, value, attempt) for kind, _, value, _, _, attempt in recorded] == [
            ("write", 1, 1), ("write", 2, 2)
        ]

    async def test_values_changed_in_place_count_as_written(self) -> None:
        """Appending to a list read from the world is a write of its key, recorded when the action ends."""

        def body(world: World, context: sk.WorkflowContext) -> None:
            world["orders"].append("ann")

        assert await accesses_of(body) == [
            ("read", "orders", [], "touch", "forward", 1),
            ("write", "orders", ["ann"], "touch", "forward", 1),
        ]

    async def test_the_set_of_keys(self) -> None:
        """Iterating reads the set of keys; adding and deleting a key write it; a missing key reads as absent."""

        def body(world: World, context: sk.WorkflowContext) -> None:
            assert [key for key in world] == ["stock", "orders"]
            world.get("gone")
            world["new"] = 1
            del world["stock"]

        recorded = [(kind, key, value) for kind, key, value, *_ in await accesses_of(body)]
        assert recorded == [
            ("read", KEYS, ("stock", "orders")),
            ("read", "gone", ABSENT),
            ("write", KEYS, ABSENT),
            ("write", "new", 1),
            ("write", KEYS, ABSENT),
            ("write", "stock", ABSENT),
        ]

    async def test_a_dict_is_used_as_a_world(self) -> None:
        """A factory returning a plain dict works: steps get a World holding its items."""
        seen: list[Any] = []

        def body(world: Any, context: sk.WorkflowContext) -> None:
            seen.append(type(world))
            world["stock"] = 0

        saga = _recorder(body)
        exploration = await explore_concurrent([saga, sk.Saga("idle", [sk.step(noop)])], world=lambda: {"stock": 1},
                                               modes=())
        assert seen and set(seen) == {World} and len(exploration) == 1

    async def test_a_world_it_cannot_track_is_refused_naming_the_argument(self) -> None:
        """An object whose attributes change cannot be watched: a TypeError says what to build instead."""

        class Shop:
            stock = 1

        saga = _recorder(lambda world, context: None)
        with pytest.raises(TypeError, match=r"explore_concurrent world: the factory returned Shop .* needs a "
                                            r"sagakit\.explore\.World \(or a dict, used as one\)"):
            await explore_concurrent([saga, saga], world=Shop, modes=())
