"""Property tests: random programs on the virtual clock, checked against small
models of what yieldloop promises.

* random trees of tasks (task groups inside task groups) with random sleeps,
  errors, errors raised on cancellation, and ``Task.cancel()`` calls;
* random sets of sleepers: they wake by deadline, ties in the order they slept;
* random nested cancel scopes with deadlines and shields.

Every program runs on :class:`~yieldloop.testing.VirtualClock`, so times are
exact and each example takes well under a millisecond of real time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import yieldloop
from yieldloop import (
    Cancelled,
    CancelScope,
    Task,
    TaskGroup,
    current_time,
    sleep,
    sleep_until,
)
from yieldloop.testing import VirtualClock

pytestmark = pytest.mark.timeout(120)

INF = math.inf

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def vrun(main: Any, *args: Any) -> Any:
    return yieldloop.run(main, *args, clock=VirtualClock())


# ============================================================ trees of tasks
#
# Every node is a task running
#
#     async with TaskGroup() as tg:
#         spawn each child (and, for a child with ``cancel_at``, a helper
#         task that calls ``child_task.cancel()`` at that time)
#         await sleep(d)          # on Cancelled: raise NodeError if raise_on_cancel
#         if error: raise NodeError
#
# All tasks start at time 0. Times are drawn so that no two *independent*
# events coincide: error nodes sleep an odd number of seconds (all
# different), other nodes an even number (ties allowed: they only decide the
# wake-up order), cancellations happen at distinct half-seconds.


class NodeError(Exception):
    def __init__(self, node_id: int) -> None:
        super().__init__(node_id)
        self.node_id = node_id


@dataclass
class Node:
    children: list[Node] = field(default_factory=list)
    id: int = 0
    d: int = 0
    error: bool = False
    raise_on_cancel: bool = False
    cancel_at: float | None = None

    def walk_bfs(self) -> Iterator[Node]:
        queue = [self]
        while queue:
            node = queue.pop(0)
            yield node
            queue.extend(node.children)

    def describe(self, indent: int = 0) -> str:
        flags = []
        if self.error:
            flags.append("error")
        if self.raise_on_cancel:
            flags.append("raise_on_cancel")
        if self.cancel_at is not None:
            flags.append(f"cancel_at={self.cancel_at}")
        line = f"{'  ' * indent}#{self.id} d={self.d} {' '.join(flags)}"
        return "\n".join([line, *(c.describe(indent + 1) for c in self.children)])


@st.composite
def shapes(draw: st.DrawFn, depth: int = 0) -> Node:
    n = draw(st.integers(0, 4)) if depth < 3 else 0
    return Node(children=[draw(shapes(depth + 1)) for _ in range(n)])


rare = st.sampled_from([False, False, False, True])
rarer = st.sampled_from([False] * 7 + [True])


@st.composite
def trees(draw: st.DrawFn) -> Node:
    root = draw(shapes())
    nodes = list(root.walk_bfs())
    for i, node in enumerate(nodes):
        node.id = i
        node.error = draw(rarer)
        node.raise_on_cancel = draw(rare)
    errors = [n for n in nodes if n.error]
    odd = draw(
        st.lists(st.integers(0, 60), min_size=len(errors), max_size=len(errors), unique=True)
    )
    for node, x in zip(errors, odd, strict=True):
        node.d = 2 * x + 1
    for node in nodes:
        if not node.error:
            node.d = 2 * draw(st.integers(1, 30))
    cancelled = [n for n in nodes[1:] if draw(rare)]
    halves = draw(
        st.lists(st.integers(0, 60), min_size=len(cancelled), max_size=len(cancelled), unique=True)
    )
    for node, x in zip(cancelled, halves, strict=True):
        node.cancel_at = x + 0.5
    return root


@dataclass
class Outcome:
    kind: str  # "ok", "error" or "cancelled"
    leaves: frozenset[int]  # ids of the NodeErrors it raised (inside groups)
    finish: float


def model_tree(root: Node) -> tuple[dict[int, Outcome], list[tuple[float, int]]]:
    """What should happen: each node's outcome, and the body wake-ups as
    (time, node id) in the order they happen."""
    order = {n.id: i for i, n in enumerate(root.walk_bfs())}

    def sim(node: Node, cancel_time: float) -> tuple[Outcome, dict[int, Outcome], list[Node]]:
        # ``cancel_time``: when the node's task is cancelled from outside.
        # ``group_cancel``: when its group's scope is cancelled, which is also
        # the first time something inside fails. Events at a time <= the cancel
        # time still happen (timers due at one instant all fire before any
        # task runs at that instant).
        group_cancel = cancel_time
        while True:
            records: dict[int, Outcome] = {}
            woke: list[Node] = []
            error_times: list[float] = []
            leaves: set[int] = set()
            if node.d <= group_cancel:
                finish: float = node.d
                woke.append(node)
                if node.error:
                    error_times.append(node.d)
                    leaves.add(node.id)
            else:
                finish = group_cancel
                if node.raise_on_cancel:
                    error_times.append(group_cancel)
                    leaves.add(node.id)
            for child in node.children:
                child_cancel = group_cancel
                if child.cancel_at is not None:
                    child_cancel = min(child.cancel_at, group_cancel)
                    finish = max(finish, child_cancel)  # the helper task
                out, sub, sub_woke = sim(child, child_cancel)
                records.update(sub)
                woke += sub_woke
                finish = max(finish, out.finish)
                if out.kind == "error":
                    error_times.append(out.finish)
                    leaves |= out.leaves
            first_error = min(error_times, default=INF)
            if first_error < group_cancel:
                group_cancel = first_error
                continue
            break
        if leaves:
            kind = "error"
        elif finish == cancel_time:
            kind = "cancelled"  # still running when it was cancelled
        else:
            kind = "ok"
        outcome = Outcome(kind, frozenset(leaves), finish)
        records[node.id] = outcome
        return outcome, records, woke

    _, records, woke = sim(root, INF)
    woke.sort(key=lambda n: (n.d, order[n.id]))
    return records, [(float(n.d), n.id) for n in woke]


def leaves_of(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for e in exc.exceptions:
            yield from leaves_of(e)
    else:
        yield exc


def error_ids(exc: BaseException) -> frozenset[int]:
    leaves = list(leaves_of(exc))
    assert all(isinstance(e, NodeError) for e in leaves), leaves
    ids = [e.node_id for e in leaves if isinstance(e, NodeError)]
    assert len(ids) == len(set(ids)), f"an error was reported twice: {ids}"
    return frozenset(ids)


def run_tree(root: Node) -> tuple[dict[int, Outcome], list[tuple[float, int]], Any]:
    records: dict[int, Outcome] = {}
    woke: list[tuple[float, int]] = []

    async def canceller(task: Task[Any], when: float) -> None:
        await sleep_until(when)
        task.cancel()

    async def node_task(node: Node) -> int:
        try:
            async with TaskGroup() as tg:
                for child in node.children:
                    task = tg.spawn(node_task, child, name=f"node {child.id}")
                    if child.cancel_at is not None:
                        tg.spawn(canceller, task, child.cancel_at)
                try:
                    await sleep(node.d)
                except Cancelled:
                    if node.raise_on_cancel:
                        raise NodeError(node.id) from None
                    raise
                woke.append((current_time(), node.id))
                if node.error:
                    raise NodeError(node.id)
        except Cancelled:
            records[node.id] = Outcome("cancelled", frozenset(), current_time())
            raise
        except BaseExceptionGroup as eg:
            records[node.id] = Outcome("error", error_ids(eg), current_time())
            raise
        except BaseException as exc:  # pragma: no cover - reported as a mismatch
            records[node.id] = Outcome(f"unexpected {exc!r}", frozenset(), current_time())
            raise
        records[node.id] = Outcome("ok", frozenset(), current_time())
        return node.id

    try:
        result: Any = vrun(node_task, root)
    except BaseException as exc:
        result = exc
    return records, woke, result


@SETTINGS
@given(trees())
def test_random_task_trees_match_the_model(root: Node) -> None:
    expected, expected_woke = model_tree(root)
    records, woke, result = run_tree(root)
    tree = root.describe()
    assert records == expected, tree
    assert woke == expected_woke, tree
    root_outcome = expected[root.id]
    if root_outcome.kind == "error":
        assert isinstance(result, ExceptionGroup), (tree, result)
        assert error_ids(result) == root_outcome.leaves, tree
    else:
        assert root_outcome.kind == "ok"
        assert result == root.id, (tree, result)


def test_tree_model_on_a_hand_made_example() -> None:
    # 0: d=10, children 1 and 2
    #   1: d=3 error             -> fails at 3, cancelling 0's group
    #   2: d=8 raise_on_cancel, child 3
    #     3: d=2                 -> finishes normally at 2
    n3 = Node(id=3, d=2)
    n2 = Node(children=[n3], id=2, d=8, raise_on_cancel=True)
    n1 = Node(id=1, d=3, error=True)
    root = Node(children=[n1, n2], id=0, d=10)
    expected = {
        3: Outcome("ok", frozenset(), 2),
        1: Outcome("error", frozenset({1}), 3),
        2: Outcome("error", frozenset({2}), 3),
        0: Outcome("error", frozenset({1, 2}), 3),
    }
    assert model_tree(root) == (expected, [(2.0, 3), (3.0, 1)])
    records, woke, result = run_tree(root)
    assert records == expected
    assert woke == [(2.0, 3), (3.0, 1)]
    assert isinstance(result, ExceptionGroup)
    assert error_ids(result) == {1, 2}


def test_cancelled_node_with_children_is_cancelled_not_finished() -> None:
    # 0: d=2, child 1 cancelled at 4.5 (its body is done, a child still runs)
    #   1: d=2, child 2
    #     2: d=20
    n2 = Node(id=2, d=20)
    n1 = Node(children=[n2], id=1, d=2, cancel_at=4.5)
    root = Node(children=[n1], id=0, d=2)
    expected = {
        2: Outcome("cancelled", frozenset(), 4.5),
        1: Outcome("cancelled", frozenset(), 4.5),
        0: Outcome("ok", frozenset(), 4.5),
    }
    assert model_tree(root)[0] == expected
    records, _, result = run_tree(root)
    assert records == expected
    assert result == 0


# ============================================================ sleepers


grid = st.integers(0, 10).map(lambda x: x / 2)  # 0, 0.5, ... 5.0: exact sums


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(grid, grid), min_size=1, max_size=25))
def test_random_sleepers_wake_by_deadline_ties_in_sleep_order(
    sleeps: list[tuple[float, float]],
) -> None:
    woke: list[tuple[float, int]] = []

    async def sleeper(i: int, first: float, second: float) -> None:
        await sleep(first)
        await sleep(second)  # started at ``first``, in the order of waking
        woke.append((current_time(), i))

    async def main() -> None:
        async with TaskGroup() as tg:
            for i, (first, second) in enumerate(sleeps):
                tg.spawn(sleeper, i, first, second)

    vrun(main)
    expected = sorted(range(len(sleeps)), key=lambda i: (sum(sleeps[i]), sleeps[i][0], i))
    assert woke == [(sum(sleeps[i]), i) for i in expected]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=40))
def test_random_sleep_until_deadlines_wake_in_order(deadlines: list[int]) -> None:
    woke: list[tuple[float, int]] = []

    def sleeper(i: int, deadline: float) -> Any:
        yield ("sleep_until", deadline)
        woke.append(((yield ("current_time",)), i))

    async def main() -> None:
        async with TaskGroup() as tg:
            for i, d in enumerate(deadlines):
                tg.spawn(sleeper, i, d)

    vrun(main)
    assert woke == sorted((float(d), i) for i, d in enumerate(deadlines))


# ============================================================ cancel scopes
#
#     level(i):
#         with CancelScope(deadline=deadline_i, shield=shield_i):
#             level(i + 1)     (the innermost level: await sleep(body))
#             await sleep(post_i)      (unless post_i is None)
#
# Every scope is entered at time 0. A sleep inside scope i is cut short at
# C_i, the time scope i becomes effectively cancelled: min(deadline_i,
# C_{i-1} unless shielded). A sleep whose end equals C_i is cut too (the
# scope's timer was armed first), and sleep(0) is a checkpoint: it raises
# if C_i has passed. A Cancelled leaving scope i is caught there if scope
# i's own deadline has passed.


@dataclass
class Level:
    deadline: float
    shield: bool
    post: float | None


levels_strategy = st.lists(
    st.builds(
        Level,
        deadline=st.one_of(st.just(INF), st.integers(0, 20).map(lambda x: x / 2)),
        shield=st.booleans(),
        post=st.one_of(st.none(), grid),
    ),
    min_size=1,
    max_size=6,
)


def model_scopes(levels: list[Level], body: float) -> dict[int, tuple[float, bool]]:
    effective = []
    c = INF
    for lv in levels:
        c = min(lv.deadline, INF if lv.shield else c)
        effective.append(c)
    exits: dict[int, tuple[float, bool]] = {}

    def sleep_in(i: int, t: float, seconds: float | None) -> tuple[float, bool]:
        if seconds is None:
            return t, False
        if t + seconds >= effective[i]:
            return max(t, effective[i]), True
        return t + seconds, False

    def level(i: int, t: float) -> tuple[float, bool]:
        if i + 1 < len(levels):
            t, cancelled = level(i + 1, t)
        else:
            t, cancelled = sleep_in(i, t, body)
        if not cancelled:
            t, cancelled = sleep_in(i, t, levels[i].post)
        # A cancelled scope catches the Cancelled unless the scope around it
        # is cancelled too (and visible: not shielded) - then it goes on to
        # the outermost cancelled scope.
        outer_cancelled = i > 0 and not levels[i].shield and effective[i - 1] <= t
        caught = cancelled and levels[i].deadline <= t and not outer_cancelled
        exits[i] = (t, caught)
        return t, cancelled and not caught

    t, escaped = level(0, 0.0)
    assert not escaped  # a Cancelled always has a scope of its own to stop at
    return exits


def run_scopes(levels: list[Level], body: float) -> dict[int, tuple[float, bool]]:
    exits: dict[int, tuple[float, bool]] = {}

    async def level(i: int) -> None:
        lv = levels[i]
        scope = CancelScope(deadline=lv.deadline, shield=lv.shield)
        try:
            with scope:
                if i + 1 < len(levels):
                    await level(i + 1)
                else:
                    await sleep(body)
                if lv.post is not None:
                    await sleep(lv.post)
        finally:
            exits[i] = (current_time(), scope.cancelled_caught)

    vrun(level, 0)
    return exits


@settings(max_examples=400, deadline=None)
@given(levels_strategy, grid)
def test_random_nested_cancel_scopes_match_the_model(levels: list[Level], body: float) -> None:
    assert run_scopes(levels, body) == model_scopes(levels, body), levels


def test_scope_model_on_hand_made_examples() -> None:
    # outer deadline 2, inner shielded with deadline 5: the inner body sleeps
    # through the outer deadline; the outer's post-sleep is then cut at once.
    levels = [Level(2, False, 1), Level(5, True, None)]
    assert model_scopes(levels, 10) == {1: (5, True), 0: (5, True)}
    assert run_scopes(levels, 10) == {1: (5.0, True), 0: (5.0, True)}
    # a deadline equal to the end of a sleep wins
    levels = [Level(3, False, None)]
    assert run_scopes(levels, 3) == {0: (3.0, True)} == model_scopes(levels, 3)
    # the outer deadline cancels the inner scope, which does not catch it
    levels = [Level(1, False, 0), Level(4, False, 0)]
    assert run_scopes(levels, 2) == {1: (1.0, False), 0: (1.0, True)}
    assert model_scopes(levels, 2) == {1: (1.0, False), 0: (1.0, True)}
    # both deadlines passed: the Cancelled goes to the outermost cancelled scope
    levels = [Level(1, False, None), Level(1, False, None)]
    assert run_scopes(levels, 2) == {1: (1.0, False), 0: (1.0, True)} == model_scopes(levels, 2)
    # ... unless the inner one is shielded: then it is its own (and the outer
    # one, with no checkpoint left in it, exits without a Cancelled to catch)
    levels = [Level(1, False, None), Level(1, True, None)]
    assert run_scopes(levels, 2) == {1: (1.0, True), 0: (1.0, False)} == model_scopes(levels, 2)
