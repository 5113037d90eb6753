"""Event keeps its waiters in a list with lazy removal of cancelled waits:
cancelled waiters are never woken, a task that waits again is woken once,
the list is compacted, and the counts stay right."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import yieldloop as yl
from yieldloop.testing import VirtualClock


def test_cancelled_waiters_are_skipped_and_compacted():
    async def main() -> None:
        ev = yl.Event()
        woken: list[int] = []

        async def waiter(i: int) -> None:
            await ev.wait()
            woken.append(i)

        async with yl.TaskGroup() as tg:
            tasks = [tg.spawn(waiter, i) for i in range(200)]
            await yl.sleep(0)
            for t in tasks[:150]:
                t.cancel()
            await yl.sleep(0)
            assert ev.statistics() == {"tasks_waiting": 50}
            assert len(ev._waiters) < 200  # compacted on the way
            ev.set()
        assert sorted(woken) == list(range(150, 200))

    yl.run(main)


def test_cancel_and_wait_again_is_woken_once():
    async def main() -> None:
        ev = yl.Event()
        count = 0

        async def waiter() -> None:
            nonlocal count
            with yl.move_on_after(0.01):
                await ev.wait()
            assert not ev.is_set()
            await ev.wait()  # listed twice now: the stale entry and this one
            count += 1
            await yl.sleep(0.01)

        async with yl.TaskGroup() as tg:
            tg.spawn(waiter)
            await yl.sleep(0.05)
            assert ev.statistics() == {"tasks_waiting": 1}
            assert "1 waiting" in repr(ev)
            ev.set()
        assert count == 1

    yl.run(main)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3)), min_size=1, max_size=60))
def test_property_only_live_waiters_wake(plan):
    async def main() -> None:
        ev = yl.Event()
        woken: list[int] = []

        async def waiter(i: int, rewaits: int) -> None:
            for _ in range(rewaits):
                with yl.move_on_after(0.001 * (i % 5 + 1)):
                    await ev.wait()
            await ev.wait()
            woken.append(i)

        async with yl.TaskGroup() as tg:
            tasks = [tg.spawn(waiter, i, rewaits) for i, (_, rewaits) in enumerate(plan)]
            await yl.sleep(0.01)
            cancelled = {i for i, (cancel, _) in enumerate(plan) if cancel}
            for i in cancelled:
                tasks[i].cancel()
            await yl.sleep(0)
            assert ev.statistics()["tasks_waiting"] == len(plan) - len(cancelled)
            ev.set()
        assert sorted(woken) == sorted(set(range(len(plan))) - cancelled)

    yl.run(main, clock=VirtualClock())
