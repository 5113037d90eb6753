"""Event, Lock, Semaphore, Condition and CapacityLimiter.

Every test runs on :class:`~yieldloop.testing.VirtualClock`. ``settle()``
sleeps one virtual second: the clock only moves once every other task is
blocked, so after it returns each task has run as far as it can.
"""

from __future__ import annotations

import math

import pytest

import yieldloop as yl
from yieldloop import (
    Cancelled,
    CancelScope,
    CapacityLimiter,
    Condition,
    Event,
    Lock,
    RunFinishedError,
    Semaphore,
    TaskGroup,
    WouldBlock,
    checkpoint,
    current_task,
    current_time,
    move_on_after,
    sleep,
)
from yieldloop.testing import VirtualClock

pytestmark = pytest.mark.timeout(60)


def vrun(main, *args):
    """Run ``main`` on a fresh virtual clock starting at 0."""
    return yl.run(main, *args, clock=VirtualClock())


async def settle():
    """Let every other task run until all of them are blocked."""
    await sleep(1)


def gsettle():
    """``settle`` for plain generator coroutines."""
    yield from sleep(1)


# ==================================================================== Event


def test_event_starts_unset_and_set_is_for_good():
    async def main():
        ev = Event()
        assert not ev.is_set()
        assert ev.statistics() == {"tasks_waiting": 0}
        assert "unset" in repr(ev)
        ev.set()
        assert ev.is_set()
        ev.set()  # a second set does nothing
        assert ev.is_set()
        assert "set" in repr(ev)
        # one-shot: there is no way to clear it
        assert not hasattr(ev, "clear")

    vrun(main)


def test_event_wait_on_set_event_returns_at_once():
    async def main():
        ev = Event()
        ev.set()
        for _ in range(3):
            await ev.wait()
        return current_time()

    assert vrun(main) == 0


def test_event_wait_blocks_until_set():
    async def main():
        ev = Event()
        log = []

        async def waiter():
            await ev.wait()
            log.append(("woke", current_time()))

        async with TaskGroup() as tg:
            tg.spawn(waiter)
            await sleep(5)
            assert log == []
            assert ev.statistics()["tasks_waiting"] == 1
            ev.set()
            assert ev.statistics()["tasks_waiting"] == 0
        return log

    assert vrun(main) == [("woke", 5)]


def test_event_set_wakes_every_waiter_in_fifo_order():
    async def main():
        ev = Event()
        order = []

        async def waiter(i):
            await ev.wait()
            order.append(i)

        async with TaskGroup() as tg:
            for i in range(10):
                tg.spawn(waiter, i)
            await settle()
            assert ev.statistics()["tasks_waiting"] == 10
            assert "10 waiting" in repr(ev)
            ev.set()
        return order

    assert vrun(main) == list(range(10))


def test_event_cancelled_waiter_is_removed_and_others_still_woken():
    async def main():
        ev = Event()
        order = []

        async def waiter(i):
            try:
                await ev.wait()
            except Cancelled:
                order.append(("cancelled", i))
                raise
            order.append(i)

        async with TaskGroup() as tg:
            tasks = [tg.spawn(waiter, i) for i in range(5)]
            await settle()
            tasks[2].cancel()
            assert ev.statistics()["tasks_waiting"] == 4
            await settle()
            ev.set()
        assert tasks[2].cancelled()
        return order

    assert vrun(main) == [("cancelled", 2), 0, 1, 3, 4]


def test_event_wait_with_timeout():
    async def main():
        ev = Event()
        with move_on_after(3) as scope:
            await ev.wait()
        assert scope.cancelled_caught
        assert ev.statistics()["tasks_waiting"] == 0
        assert not ev.is_set()
        ev.set()
        await ev.wait()
        return current_time()

    assert vrun(main) == 3


def test_event_wait_is_a_cancellation_point_even_when_set():
    async def main():
        ev = Event()
        ev.set()
        with CancelScope() as scope:
            scope.cancel()
            await ev.wait()
            raise AssertionError("not reached")  # pragma: no cover
        assert scope.cancelled_caught

    vrun(main)


def test_event_set_by_woken_waiter_then_cancelled_still_returns():
    # A waiter that is woken by set() and cancelled before it runs returns
    # normally from wait() (the event is set); Cancelled comes at the next
    # checkpoint.
    async def main():
        ev = Event()
        log = []

        async def waiter():
            await ev.wait()
            log.append("returned")
            try:
                await checkpoint()
            except Cancelled:
                log.append("cancelled")
                raise

        async with TaskGroup() as tg:
            t = tg.spawn(waiter)
            await settle()
            ev.set()
            t.cancel()
        return log

    assert vrun(main) == ["returned", "cancelled"]


def test_event_generator_style():
    log = []

    def waiter(ev, i):
        yield from ev.wait()
        log.append(i)

    def setter(ev):
        yield from sleep(2)
        ev.set()
        log.append("set")

    async def main():
        ev = Event()
        async with TaskGroup() as tg:
            tg.spawn(waiter, ev, 1)
            tg.spawn(waiter, ev, 2)
            tg.spawn(setter, ev)
        return current_time()

    assert vrun(main) == 2
    assert log == ["set", 1, 2]


def test_event_generator_main():
    def main():
        ev = Event()
        ev.set()
        yield from ev.wait()
        return ev.is_set()

    assert vrun(main) is True


# ===================================================================== Lock


def test_lock_owner_is_tracked():
    async def main():
        lock = Lock()
        assert not lock.locked()
        assert lock.owner is None
        assert lock.statistics() == {"locked": False, "owner": None, "tasks_waiting": 0}
        await lock.acquire()
        me = current_task()
        assert lock.locked()
        assert lock.owner is me
        assert lock.statistics() == {"locked": True, "owner": me, "tasks_waiting": 0}
        assert "held by" in repr(lock)
        lock.release()
        assert not lock.locked()
        assert lock.owner is None
        assert "unlocked" in repr(lock)

    vrun(main)


def test_lock_release_without_holding_raises():
    async def main():
        lock = Lock()
        with pytest.raises(RuntimeError, match="cannot release a lock held by nobody"):
            lock.release()
        assert not lock.locked()

    vrun(main)


def test_lock_release_by_another_task_raises_and_keeps_owner():
    async def main():
        lock = Lock()
        done = Event()
        holder_task = []

        async def holder():
            async with lock:
                holder_task.append(current_task())
                await done.wait()

        async with TaskGroup() as tg:
            tg.spawn(holder, name="holder")
            await settle()
            with pytest.raises(RuntimeError) as info:
                lock.release()
            msg = str(info.value)
            assert "held by task 'holder'" in msg
            assert "from task 'intruder'" in msg
            assert lock.owner is holder_task[0]
            done.set()
        assert not lock.locked()

    async def wrapper():
        async with TaskGroup() as tg:
            tg.spawn(main, name="intruder")

    vrun(wrapper)


def test_lock_reacquire_in_same_task_raises_instead_of_deadlocking():
    async def main():
        lock = Lock()
        await lock.acquire()
        with pytest.raises(RuntimeError, match="not reentrant"):
            await lock.acquire()
        with pytest.raises(RuntimeError, match="not reentrant"):
            lock.acquire_nowait()
        with pytest.raises(RuntimeError, match="not reentrant"):
            async with lock:
                pass  # pragma: no cover
        # still held exactly once
        assert lock.owner is current_task()
        lock.release()
        assert not lock.locked()

    vrun(main)


def test_lock_acquire_nowait():
    async def main():
        lock = Lock()
        lock.acquire_nowait()
        assert lock.owner is current_task()

        async def other():
            with pytest.raises(WouldBlock):
                lock.acquire_nowait()
            return "would block"

        async with TaskGroup() as tg:
            t = tg.spawn(other)
        assert t.result() == "would block"
        lock.release()
        lock.acquire_nowait()
        lock.release()

    vrun(main)


def test_lock_async_with_releases_on_error():
    async def main():
        lock = Lock()
        async with lock:
            assert lock.owner is current_task()
        assert not lock.locked()
        with pytest.raises(KeyError):
            async with lock:
                raise KeyError("boom")
        assert not lock.locked()

    vrun(main)


def test_lock_mutual_exclusion_and_fifo():
    async def main():
        lock = Lock()
        inside = []
        order = []

        async def worker(i):
            async with lock:
                inside.append(i)
                assert len(inside) == 1
                order.append(i)
                await sleep(1)
                inside.remove(i)

        async with TaskGroup() as tg:
            for i in range(6):
                tg.spawn(worker, i)
        return order, current_time()

    assert vrun(main) == (list(range(6)), 6)


def test_lock_fifo_hand_off_no_barging():
    async def main():
        lock = Lock()
        order = []

        async def worker(name):
            async with lock:
                order.append(name)
                await sleep(1)

        await lock.acquire()
        async with TaskGroup() as tg:
            tasks = {n: tg.spawn(worker, n, name=n) for n in "abc"}
            await settle()
            assert lock.statistics()["tasks_waiting"] == 3
            lock.release()
            # handed over directly to the longest waiter, before it even runs
            assert lock.owner is tasks["a"]
            assert lock.statistics()["tasks_waiting"] == 2
            # the releaser cannot barge back in ...
            with pytest.raises(WouldBlock):
                lock.acquire_nowait()
            # ... and queues behind the tasks that were already waiting
            await lock.acquire()
            order.append("main")
            lock.release()
        return order

    assert vrun(main) == ["a", "b", "c", "main"]


def test_lock_cancelled_waiter_never_holds_the_lock():
    async def main():
        lock = Lock()
        order = []

        async def worker(i):
            try:
                async with lock:
                    order.append(i)
            except Cancelled:
                order.append(("cancelled", i))
                raise

        await lock.acquire()
        async with TaskGroup() as tg:
            tasks = [tg.spawn(worker, i) for i in range(4)]
            await settle()
            tasks[0].cancel()
            tasks[2].cancel()
            assert lock.statistics()["tasks_waiting"] == 2
            assert lock.owner is current_task()
            await settle()
            lock.release()
            assert lock.owner is tasks[1]
        assert not lock.locked()
        return order

    assert vrun(main) == [("cancelled", 0), ("cancelled", 2), 1, 3]


def test_lock_acquire_with_timeout_leaves_nothing_behind():
    async def main():
        lock = Lock()

        async def holder():
            async with lock:
                await sleep(10)

        async with TaskGroup() as tg:
            tg.spawn(holder)
            await settle()
            with move_on_after(2) as scope:
                await lock.acquire()
            assert scope.cancelled_caught
            assert lock.statistics()["tasks_waiting"] == 0
            assert lock.owner is not current_task()
        await lock.acquire()
        lock.release()
        return current_time()

    assert vrun(main) == 10


def test_lock_acquire_in_cancelled_scope_does_not_take_free_lock():
    async def main():
        lock = Lock()
        with CancelScope() as scope:
            scope.cancel()
            await lock.acquire()
        assert scope.cancelled_caught
        assert not lock.locked()

    vrun(main)


def test_lock_waiter_woken_then_cancelled_still_releases():
    # The lock is handed to a waiter; the waiter is cancelled before it runs.
    # It owns the lock when acquire() returns, and ``async with`` gives it back.
    async def main():
        lock = Lock()
        log = []

        async def waiter():
            try:
                async with lock:
                    log.append(("acquired", lock.owner is current_task()))
                    await checkpoint()
            except Cancelled:
                log.append("cancelled")
                raise

        async def later():
            async with lock:
                log.append("later")

        await lock.acquire()
        async with TaskGroup() as tg:
            t = tg.spawn(waiter)
            await settle()
            tg.spawn(later)
            await settle()
            lock.release()
            assert lock.owner is t
            t.cancel()
        assert not lock.locked()
        return log

    assert vrun(main) == [("acquired", True), "cancelled", "later"]


def test_lock_generator_style():
    order = []

    def worker(lock, i):
        yield from lock.acquire()
        try:
            order.append(i)
            yield from sleep(1)
        finally:
            lock.release()

    def main():
        lock = Lock()
        yield from lock.acquire()
        tg = TaskGroup()
        yield from tg.__aenter__().__await__()
        try:
            for i in range(3):
                tg.spawn(worker, lock, i)
            yield from gsettle()
            assert lock.statistics()["tasks_waiting"] == 3
            lock.release()
        finally:
            yield from tg.__aexit__(None, None, None).__await__()
        return order, current_time()

    assert vrun(main) == ([0, 1, 2], 4)


# ================================================================ Semaphore


def test_semaphore_value_and_statistics():
    async def main():
        sem = Semaphore(2, max_value=3)
        assert sem.value == 2
        assert sem.max_value == 3
        assert sem.statistics() == {"value": 2, "max_value": 3, "tasks_waiting": 0}
        await sem.acquire()
        assert sem.value == 1
        sem.acquire_nowait()
        assert sem.value == 0
        with pytest.raises(WouldBlock):
            sem.acquire_nowait()
        sem.release()
        sem.release()
        sem.release()
        assert sem.value == 3
        assert "3/3" in repr(sem)
        assert Semaphore(0).max_value is None

    vrun(main)


def test_semaphore_release_over_max_value_raises():
    async def main():
        sem = Semaphore(1, max_value=1)
        with pytest.raises(ValueError, match="released too many times"):
            sem.release()
        assert sem.value == 1
        async with sem:
            assert sem.value == 0
        assert sem.value == 1

    vrun(main)


def test_semaphore_without_max_value_grows():
    async def main():
        sem = Semaphore(0)
        for _ in range(5):
            sem.release()
        assert sem.value == 5

    vrun(main)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc"),
    [
        ((-1,), {}, ValueError),
        ((1.5,), {}, TypeError),
        ((True,), {}, TypeError),
        (("1",), {}, TypeError),
        ((None,), {}, TypeError),
        ((2,), {"max_value": 1}, ValueError),
        ((1,), {"max_value": 1.5}, TypeError),
        ((1,), {"max_value": True}, TypeError),
    ],
)
def test_semaphore_bad_arguments(args, kwargs, exc):
    with pytest.raises(exc):
        Semaphore(*args, **kwargs)


def test_semaphore_fifo_and_no_barging():
    async def main():
        sem = Semaphore(1)
        order = []

        async def worker(i):
            async with sem:
                order.append(i)
                await sleep(1)

        await sem.acquire()
        async with TaskGroup() as tg:
            for i in range(5):
                tg.spawn(worker, i)
            await settle()
            assert sem.statistics()["tasks_waiting"] == 5
            sem.release()
            # handed straight to the first waiter: the value stays 0
            assert sem.value == 0
            with pytest.raises(WouldBlock):
                sem.acquire_nowait()
            await sem.acquire()
            order.append("main")
            sem.release()
        assert sem.value == 1
        return order

    assert vrun(main) == [0, 1, 2, 3, 4, "main"]


def test_semaphore_cancelled_acquire_leaks_no_slot():
    async def main():
        sem = Semaphore(2, max_value=2)
        log = []

        async def waiter(i):
            try:
                async with sem:
                    log.append(i)
            except Cancelled:
                log.append(("cancelled", i))
                raise

        await sem.acquire()
        await sem.acquire()
        async with TaskGroup() as tg:
            tasks = [tg.spawn(waiter, i) for i in range(3)]
            await settle()
            tasks[1].cancel()
            await settle()
            assert sem.statistics()["tasks_waiting"] == 2
            with move_on_after(1):
                await sem.acquire()
            assert sem.statistics()["tasks_waiting"] == 2
            sem.release()
            sem.release()
        assert sem.value == 2
        return log

    assert vrun(main) == [("cancelled", 1), 0, 2]


def test_semaphore_acquire_in_cancelled_scope_takes_no_slot():
    async def main():
        sem = Semaphore(1)
        with CancelScope() as scope:
            scope.cancel()
            await sem.acquire()
        assert scope.cancelled_caught
        assert sem.value == 1

    vrun(main)


def test_semaphore_woken_then_cancelled_gives_slot_back():
    async def main():
        sem = Semaphore(1, max_value=1)
        log = []

        async def waiter():
            try:
                async with sem:
                    log.append("acquired")
                    await checkpoint()
            except Cancelled:
                log.append("cancelled")
                raise

        await sem.acquire()
        async with TaskGroup() as tg:
            t = tg.spawn(waiter)
            await settle()
            sem.release()
            t.cancel()
        assert sem.value == 1
        return log

    assert vrun(main) == ["acquired", "cancelled"]


def test_semaphore_generator_style():
    order = []

    def worker(sem, i):
        yield from sem.acquire()
        order.append(("in", i))
        yield from sleep(1)
        sem.release()

    async def main():
        sem = Semaphore(2)
        async with TaskGroup() as tg:
            for i in range(4):
                tg.spawn(worker, sem, i)
        return sem.value, current_time()

    assert vrun(main) == (2, 2)
    assert order == [("in", 0), ("in", 1), ("in", 2), ("in", 3)]


# ================================================================ Condition


def test_condition_default_and_given_lock():
    async def main():
        cond = Condition()
        assert isinstance(cond.lock, Lock)
        lock = Lock()
        cond2 = Condition(lock)
        assert cond2.lock is lock
        async with cond2:
            assert lock.owner is current_task()
            assert cond2.locked()
        assert not cond2.locked()
        cond2.acquire_nowait()
        assert lock.locked()
        cond2.release()
        assert not lock.locked()
        await cond2.acquire()
        assert cond2.locked()
        cond2.release()
        assert cond2.statistics() == {
            "tasks_waiting": 0,
            "lock": {"locked": False, "owner": None, "tasks_waiting": 0},
        }

    vrun(main)


def test_condition_needs_a_yieldloop_lock():
    with pytest.raises(TypeError, match="Lock"):
        Condition(object())
    with pytest.raises(TypeError):
        Condition(Semaphore(1))


def test_condition_wait_and_notify_in_fifo_order():
    async def main():
        cond = Condition()
        woke = []

        async def waiter(i):
            async with cond:
                await cond.wait()
                assert cond.lock.owner is current_task()
                woke.append(i)

        async with TaskGroup() as tg:
            for i in range(6):
                tg.spawn(waiter, i)
            await settle()
            assert cond.statistics()["tasks_waiting"] == 6
            assert not cond.locked()  # every waiter released it
            async with cond:
                cond.notify()
            await settle()
            assert woke == [0]
            async with cond:
                cond.notify(2)
            await settle()
            assert woke == [0, 1, 2]
            async with cond:
                cond.notify(0)
            await settle()
            assert woke == [0, 1, 2]
            async with cond:
                cond.notify_all()
                assert cond.statistics()["tasks_waiting"] == 0
                await settle()
                assert woke == [0, 1, 2]  # they need the lock back first
            await settle()
            assert woke == list(range(6))
            async with cond:
                cond.notify(10)  # nobody waits: nothing happens
                cond.notify_all()

    vrun(main)


def test_condition_producer_consumer():
    async def main():
        cond = Condition()
        items = []
        got = []

        async def consumer():
            for _ in range(5):
                async with cond:
                    while not items:
                        await cond.wait()
                    got.append(items.pop(0))

        async with TaskGroup() as tg:
            tg.spawn(consumer)
            for i in range(5):
                await sleep(1)
                async with cond:
                    items.append(i)
                    cond.notify()
        return got

    assert vrun(main) == [0, 1, 2, 3, 4]


def test_condition_wait_without_lock_raises():
    async def main():
        cond = Condition()
        with pytest.raises(RuntimeError, match="must be called with the lock held"):
            await cond.wait()
        assert cond.statistics()["tasks_waiting"] == 0

        # held by another task is not good enough either
        release = Event()

        async def holder():
            async with cond:
                await release.wait()

        async with TaskGroup() as tg:
            tg.spawn(holder)
            await settle()
            with pytest.raises(RuntimeError, match="must be called with the lock held"):
                await cond.wait()
            release.set()
        assert cond.statistics()["tasks_waiting"] == 0

    vrun(main)


def test_condition_notify_without_lock_raises():
    async def main():
        cond = Condition()
        with pytest.raises(RuntimeError, match="lock held"):
            cond.notify()
        with pytest.raises(RuntimeError, match="lock held"):
            cond.notify_all()
        release = Event()

        async def holder():
            async with cond:
                await release.wait()

        async with TaskGroup() as tg:
            tg.spawn(holder)
            await settle()
            with pytest.raises(RuntimeError, match="lock held"):
                cond.notify()
            with pytest.raises(RuntimeError, match="lock held"):
                cond.notify_all()
            release.set()

    vrun(main)


@pytest.mark.parametrize("n", [-1, 1.5, True, "2", None])
def test_condition_notify_bad_n(n):
    async def main():
        cond = Condition()
        async with cond:
            with pytest.raises((ValueError, TypeError), match="n must be an int"):
                cond.notify(n)

    vrun(main)


def test_condition_wait_cancelled_reacquires_lock_when_free():
    async def main():
        cond = Condition()
        log = []

        async def waiter():
            async with cond:
                try:
                    await cond.wait()
                except Cancelled:
                    log.append((cond.locked(), cond.lock.owner is current_task()))
                    raise

        async with TaskGroup() as tg:
            t = tg.spawn(waiter)
            await settle()
            assert not cond.locked()
            t.cancel()
        assert not cond.locked()
        assert cond.statistics()["tasks_waiting"] == 0
        return log

    assert vrun(main) == [(True, True)]


def test_condition_wait_cancelled_waits_for_lock_held_by_another_task():
    async def main():
        cond = Condition()
        log = []

        async def waiter():
            async with cond:
                try:
                    await cond.wait()
                except Cancelled:
                    log.append((current_time(), cond.locked(), cond.lock.owner is current_task()))
                    raise

        async with TaskGroup() as tg:
            t = tg.spawn(waiter)
            await settle()
            async with cond:
                t.cancel()
                assert cond.statistics()["tasks_waiting"] == 0
                await sleep(5)
                # the cancelled waiter is queued for the lock, not running
                assert log == []
                assert cond.lock.statistics()["tasks_waiting"] == 1
                assert cond.lock.owner is current_task()
            assert cond.lock.owner is t
        assert not cond.locked()
        return log

    assert vrun(main) == [(6, True, True)]


def test_condition_wait_timeout_while_lock_is_held_elsewhere():
    async def main():
        cond = Condition()
        log = []

        async def waiter():
            async with cond:
                with move_on_after(2) as scope:
                    await cond.wait()
                # the lock is ours again after the timed-out wait
                log.append(
                    (current_time(), scope.cancelled_caught, cond.lock.owner is current_task())
                )

        async def hog():
            await sleep(1)
            async with cond:
                await sleep(9)

        async with TaskGroup() as tg:
            tg.spawn(waiter)
            tg.spawn(hog)
        return log

    assert vrun(main) == [(10, True, True)]


def test_condition_notified_then_cancelled_still_holds_lock():
    async def main():
        cond = Condition()
        log = []

        async def waiter():
            async with cond:
                try:
                    await cond.wait()
                    log.append(("returned", cond.lock.owner is current_task()))
                    await checkpoint()
                except Cancelled:
                    log.append(("cancelled", cond.lock.owner is current_task()))
                    raise

        async with TaskGroup() as tg:
            t = tg.spawn(waiter)
            await settle()
            async with cond:
                cond.notify()
                t.cancel()
                await sleep(3)
        assert not cond.locked()
        return log

    log = vrun(main)
    # however the cancellation lands, the waiter holds the lock when it sees it
    assert log[-1] == ("cancelled", True)
    assert all(holds for _, holds in log)


def test_condition_wait_in_cancelled_scope_keeps_lock():
    async def main():
        cond = Condition()
        async with cond:
            with CancelScope() as scope:
                scope.cancel()
                await cond.wait()
            assert scope.cancelled_caught
            assert cond.lock.owner is current_task()
            assert cond.statistics()["tasks_waiting"] == 0
        assert not cond.locked()

    vrun(main)


def test_condition_generator_style():
    log = []

    def waiter(cond, i):
        yield from cond.acquire()
        try:
            yield from cond.wait()
            log.append(i)
        finally:
            cond.release()

    def notifier(cond):
        yield from sleep(1)
        yield from cond.acquire()
        cond.notify_all()
        cond.release()

    async def main():
        cond = Condition()
        async with TaskGroup() as tg:
            tg.spawn(waiter, cond, 0)
            tg.spawn(waiter, cond, 1)
            tg.spawn(notifier, cond)
        return cond.locked()

    assert vrun(main) is False
    assert log == [0, 1]


# ========================================================== CapacityLimiter


def test_limiter_tracks_borrowers():
    async def main():
        lim = CapacityLimiter(2)
        assert lim.total == 2
        assert lim.borrowed_tokens == 0
        assert lim.available_tokens == 2
        await lim.acquire()
        me = current_task()
        await lim.acquire_on_behalf_of("job-1")
        assert lim.borrowed_tokens == 2
        assert lim.available_tokens == 0
        stats = lim.statistics()
        assert stats["borrowers"] == [me, "job-1"]
        assert stats["borrowed_tokens"] == 2
        assert stats["total_tokens"] == 2
        assert stats["tasks_waiting"] == 0
        with pytest.raises(WouldBlock):
            lim.acquire_on_behalf_of_nowait("job-2")
        lim.release()
        lim.release_on_behalf_of("job-1")
        assert lim.borrowed_tokens == 0
        assert "0/2" in repr(lim)

    vrun(main)


def test_limiter_same_borrower_twice_raises():
    async def main():
        lim = CapacityLimiter(5)
        async with lim:
            with pytest.raises(RuntimeError, match="already holds"):
                await lim.acquire()
            with pytest.raises(RuntimeError, match="already holds"):
                lim.acquire_nowait()
        await lim.acquire_on_behalf_of(("job", 1))
        with pytest.raises(RuntimeError, match="already holds"):
            await lim.acquire_on_behalf_of(("job", 1))
        with pytest.raises(RuntimeError, match="already holds"):
            lim.acquire_on_behalf_of_nowait(("job", 1))
        assert lim.borrowed_tokens == 1
        lim.release_on_behalf_of(("job", 1))
        assert lim.borrowed_tokens == 0

    vrun(main)


def test_limiter_same_borrower_waiting_twice_is_not_admitted_twice():
    # Two tasks borrow on behalf of the same object while no token is free.
    # A borrower can hold one token only: at most one of them may get it, the
    # other must get RuntimeError; never may both believe they hold a token.
    async def main():
        lim = CapacityLimiter(2)
        outcome = []

        async def borrow(i):
            with move_on_after(50):
                try:
                    await lim.acquire_on_behalf_of("x")
                except RuntimeError:
                    outcome.append("error")
                    return
                outcome.append("got")
                return
            outcome.append("timed out")

        await lim.acquire_on_behalf_of("a")
        await lim.acquire_on_behalf_of("b")
        async with TaskGroup() as tg:
            tg.spawn(borrow, 1)
            tg.spawn(borrow, 2)
            await settle()
            lim.release_on_behalf_of("a")
            lim.release_on_behalf_of("b")
            await settle()
            holders = outcome.count("got")
            borrowed = lim.borrowed_tokens
        return sorted(outcome), holders, borrowed

    outcome, holders, borrowed = vrun(main)
    assert holders <= borrowed, "more tasks hold a token for 'x' than tokens are borrowed"
    assert outcome == ["error", "got"]


def test_limiter_release_by_non_borrower_raises():
    async def main():
        lim = CapacityLimiter(2)
        with pytest.raises(RuntimeError, match="not holding a token"):
            lim.release()
        with pytest.raises(RuntimeError, match="not holding a token"):
            lim.release_on_behalf_of("nobody")
        release = Event()

        async def holder():
            async with lim:
                await release.wait()

        async with TaskGroup() as tg:
            tg.spawn(holder)
            await settle()
            with pytest.raises(RuntimeError, match="not holding a token"):
                lim.release()
            assert lim.borrowed_tokens == 1
            release.set()
        assert lim.borrowed_tokens == 0

    vrun(main)


def test_limiter_arbitrary_hashable_borrowers():
    class Job:
        pass

    async def main():
        lim = CapacityLimiter(math.inf)
        job = Job()
        borrowers = ["s", 3, ("t", 1), frozenset({1}), job, 2.5]
        for b in borrowers:
            await lim.acquire_on_behalf_of(b)
        assert lim.borrowed_tokens == len(borrowers)
        assert lim.available_tokens == math.inf
        assert lim.statistics()["borrowers"] == borrowers
        for b in reversed(borrowers):
            lim.release_on_behalf_of(b)
        assert lim.borrowed_tokens == 0
        with pytest.raises(TypeError):
            await lim.acquire_on_behalf_of(["unhashable"])
        assert lim.borrowed_tokens == 0

    vrun(main)


def test_limiter_fifo_and_no_barging():
    async def main():
        lim = CapacityLimiter(1)
        order = []

        async def worker(i):
            async with lim:
                order.append(i)
                await sleep(1)

        async with lim:
            async with TaskGroup() as tg:
                for i in range(4):
                    tg.spawn(worker, i)
                await settle()
                assert lim.statistics()["tasks_waiting"] == 4
                lim.release()
                with pytest.raises(WouldBlock):
                    lim.acquire_nowait()
                await lim.acquire()
                order.append("main")
        return order

    assert vrun(main) == [0, 1, 2, 3, "main"]


def test_limiter_raising_total_wakes_waiters_at_once():
    async def main():
        lim = CapacityLimiter(1)
        woke = []

        async def worker(i):
            async with lim:
                woke.append((i, current_time()))
                await sleep(100)

        async with TaskGroup() as tg:
            for i in range(4):
                tg.spawn(worker, i)
            await sleep(5)
            assert woke == [(0, 0)]
            lim.total = 3
            # two more tokens, handed over right away
            assert lim.borrowed_tokens == 3
            assert lim.statistics()["tasks_waiting"] == 1
            await settle()
            assert woke == [(0, 0), (1, 5), (2, 5)]
            tg.cancel_scope.cancel()
        assert lim.borrowed_tokens == 0

    vrun(main)


def test_limiter_lowering_total_takes_effect_as_tokens_return():
    async def main():
        lim = CapacityLimiter(3)
        for b in "abc":
            await lim.acquire_on_behalf_of(b)
        woke = []

        async def worker():
            async with lim:
                woke.append(current_time())

        async with TaskGroup() as tg:
            tg.spawn(worker)
            await settle()
            lim.total = 1
            assert lim.total == 1
            assert lim.borrowed_tokens == 3
            assert lim.available_tokens == 0
            with pytest.raises(WouldBlock):
                lim.acquire_on_behalf_of_nowait("d")
            lim.release_on_behalf_of("a")
            await settle()
            assert woke == []
            lim.release_on_behalf_of("b")
            await settle()
            assert woke == []  # 1 borrowed, total 1
            lim.release_on_behalf_of("c")
            await settle()
            assert woke == [3]
        assert lim.borrowed_tokens == 0

    vrun(main)


@pytest.mark.parametrize(
    ("total", "exc"),
    [
        (-1, ValueError),
        (1.5, TypeError),
        ("x", TypeError),
        (True, TypeError),
        (None, TypeError),
        (float("nan"), TypeError),
        (-math.inf, TypeError),
    ],
)
def test_limiter_bad_total(total, exc):
    with pytest.raises(exc):
        CapacityLimiter(total)

    async def main():
        lim = CapacityLimiter(2)
        with pytest.raises(exc):
            lim.total = total
        assert lim.total == 2

    vrun(main)


def test_limiter_cancelled_acquire_leaks_no_token():
    async def main():
        lim = CapacityLimiter(1)
        log = []

        async def worker(i):
            try:
                async with lim:
                    log.append(i)
            except Cancelled:
                log.append(("cancelled", i))
                raise

        await lim.acquire_on_behalf_of("holder")
        async with TaskGroup() as tg:
            tasks = [tg.spawn(worker, i) for i in range(3)]
            await settle()
            tasks[0].cancel()
            await settle()
            with move_on_after(1):
                await lim.acquire_on_behalf_of("timeout")
            assert lim.statistics()["borrowers"] == ["holder"]
            assert lim.statistics()["tasks_waiting"] == 2
            lim.release_on_behalf_of("holder")
        assert lim.borrowed_tokens == 0
        with CancelScope() as scope:
            scope.cancel()
            await lim.acquire()
        assert scope.cancelled_caught
        assert lim.borrowed_tokens == 0
        return log

    assert vrun(main) == [("cancelled", 0), 1, 2]


def test_limiter_woken_then_cancelled_gives_token_back():
    async def main():
        lim = CapacityLimiter(1)
        log = []

        async def worker():
            try:
                async with lim:
                    log.append("acquired")
                    await checkpoint()
            except Cancelled:
                log.append("cancelled")
                raise

        await lim.acquire()
        async with TaskGroup() as tg:
            t = tg.spawn(worker)
            await settle()
            lim.release()
            assert lim.statistics()["borrowers"] == [t]
            t.cancel()
        assert lim.borrowed_tokens == 0
        return log

    assert vrun(main) == ["acquired", "cancelled"]


def test_limiter_generator_style():
    log = []

    def worker(lim, job):
        yield from lim.acquire_on_behalf_of(job)
        log.append(("in", job, current_time()))
        yield from sleep(1)
        lim.release_on_behalf_of(job)

    def main():
        lim = CapacityLimiter(1)
        tg = TaskGroup()
        yield from tg.__aenter__().__await__()
        try:
            tg.spawn(worker, lim, "a")
            tg.spawn(worker, lim, "b")
            yield from sleep(0.5)  # a holds the token, b waits for it
            yield from lim.acquire()
            log.append(("main", current_time()))
            lim.release()
        finally:
            yield from tg.__aexit__(None, None, None).__await__()
        return lim.borrowed_tokens

    assert vrun(main) == 0
    assert log == [("in", "a", 0), ("in", "b", 1), ("main", 2)]


# ================================================================== bad use


async def _event_wait(p):
    await p.wait()


async def _acquire(p):
    await p.acquire()


async def _acquire_nowait(p):
    p.acquire_nowait()


async def _release(p):
    p.release()


async def _cond_wait(p):
    await p.wait()


async def _notify(p):
    p.notify()


async def _notify_all(p):
    p.notify_all()


async def _borrow(p):
    await p.acquire_on_behalf_of("job")


async def _borrow_nowait(p):
    p.acquire_on_behalf_of_nowait("job")


CROSS_RUN = {
    "Event.wait": (Event, _event_wait),
    "Lock.acquire": (Lock, _acquire),
    "Lock.acquire_nowait": (Lock, _acquire_nowait),
    "Lock.release": (Lock, _release),
    "Semaphore.acquire": (lambda: Semaphore(1), _acquire),
    "Semaphore.acquire_nowait": (lambda: Semaphore(1), _acquire_nowait),
    "Semaphore.release": (lambda: Semaphore(0), _release),
    "Condition.wait": (Condition, _cond_wait),
    "Condition.notify": (Condition, _notify),
    "Condition.notify_all": (Condition, _notify_all),
    "CapacityLimiter.acquire": (lambda: CapacityLimiter(1), _acquire),
    "CapacityLimiter.acquire_on_behalf_of": (lambda: CapacityLimiter(1), _borrow),
    "CapacityLimiter.acquire_on_behalf_of_nowait": (lambda: CapacityLimiter(1), _borrow_nowait),
    "CapacityLimiter.release": (lambda: CapacityLimiter(1), _release),
}


@pytest.mark.parametrize("op", sorted(CROSS_RUN))
def test_primitive_from_another_run_raises_run_finished(op):
    factory, use = CROSS_RUN[op]

    async def make():
        return factory()

    prim = vrun(make)
    with pytest.raises(RunFinishedError, match=r"belongs to another yieldloop\.run\(\)") as info:
        vrun(use, prim)
    assert type(prim).__name__ in str(info.value)


@pytest.mark.parametrize("op", sorted(CROSS_RUN))
def test_primitive_made_outside_a_run_binds_to_first_run(op):
    factory, use = CROSS_RUN[op]
    prim = factory()

    async def first():
        # used (successfully or with an ordinary error) in the first run
        try:
            with move_on_after(1):
                await use(prim)
        except (RuntimeError, WouldBlock) as exc:
            assert not isinstance(exc, RunFinishedError)

    vrun(first)
    with pytest.raises(RunFinishedError):
        vrun(use, prim)


def _drive(aw):
    """Step a yieldloop awaitable once, outside any run."""
    it = iter(aw)
    try:
        next(it)
    finally:
        it.close()


OUTSIDE = {
    "Event.wait": (Event, lambda p: _drive(p.wait())),
    "Lock.acquire": (Lock, lambda p: _drive(p.acquire())),
    "Lock.acquire_nowait": (Lock, lambda p: p.acquire_nowait()),
    "Lock.release": (Lock, lambda p: p.release()),
    "Semaphore.acquire": (lambda: Semaphore(1), lambda p: _drive(p.acquire())),
    "Semaphore.release": (lambda: Semaphore(0), lambda p: p.release()),
    "Condition.acquire": (Condition, lambda p: _drive(p.acquire())),
    "Condition.wait": (Condition, lambda p: _drive(p.wait())),
    "Condition.notify": (Condition, lambda p: p.notify()),
    "CapacityLimiter.acquire": (lambda: CapacityLimiter(1), lambda p: _drive(p.acquire())),
    "CapacityLimiter.acquire_nowait": (lambda: CapacityLimiter(1), lambda p: p.acquire_nowait()),
    "CapacityLimiter.release": (lambda: CapacityLimiter(1), lambda p: p.release()),
}


@pytest.mark.parametrize("op", sorted(OUTSIDE))
def test_primitive_used_outside_any_run_raises(op):
    factory, use = OUTSIDE[op]
    prim = factory()
    with pytest.raises(RuntimeError, match=r"inside yieldloop\.run\(\)"):
        use(prim)

    # the same after the run it belonged to has finished
    async def make():
        return factory()

    prim = vrun(make)
    with pytest.raises(RuntimeError, match=r"inside yieldloop\.run\(\)"):
        use(prim)


def test_state_queries_work_outside_a_run():
    ev, lock, sem, cond, lim = Event(), Lock(), Semaphore(2), Condition(), CapacityLimiter(3)
    assert not ev.is_set()
    assert not lock.locked()
    assert sem.value == 2
    assert not cond.locked()
    assert lim.available_tokens == 3
    for p in (ev, lock, sem, cond, lim):
        assert isinstance(p.statistics(), dict)
        assert repr(p)


# ======================================================= no O(n) operations

N_WAITERS = 100_000


def test_event_many_waiters_cancel_one_in_the_middle():
    order = []

    def waiter(ev, i):
        yield from ev.wait()
        order.append(i)

    async def main():
        ev = Event()
        async with TaskGroup() as tg:
            tasks = [tg.spawn(waiter, ev, i) for i in range(N_WAITERS)]
            await settle()
            assert ev.statistics()["tasks_waiting"] == N_WAITERS
            mid = N_WAITERS // 2
            tasks[mid].cancel()
            assert ev.statistics()["tasks_waiting"] == N_WAITERS - 1
            await settle()
            ev.set()
        assert tasks[mid].cancelled()
        return mid

    mid = vrun(main)
    assert len(order) == N_WAITERS - 1
    assert order == [i for i in range(N_WAITERS) if i != mid]


def test_lock_many_waiters_cancel_one_in_the_middle_then_wake_first():
    order = []

    def waiter(lock, i):
        yield from lock.acquire()
        order.append(i)
        lock.release()

    async def main():
        lock = Lock()
        await lock.acquire()
        async with TaskGroup() as tg:
            tasks = [tg.spawn(waiter, lock, i) for i in range(N_WAITERS)]
            await settle()
            assert lock.statistics()["tasks_waiting"] == N_WAITERS
            mid = N_WAITERS // 2
            tasks[mid].cancel()
            assert lock.statistics()["tasks_waiting"] == N_WAITERS - 1
            await settle()
            lock.release()
            assert lock.owner is tasks[0]
        assert not lock.locked()
        assert tasks[mid].cancelled()
        return mid

    mid = vrun(main)
    assert len(order) == N_WAITERS - 1
    assert order == [i for i in range(N_WAITERS) if i != mid]


def test_limiter_with_zero_tokens_waits_until_raised():
    async def main():
        lim = CapacityLimiter(0)
        got = []

        async def borrower():
            async with lim:
                got.append(yl.current_time())

        async with yl.TaskGroup() as tg:
            tg.spawn(borrower)
            await yl.sleep(1)
            assert got == []
            lim.total = 1
        assert got == [1.0]

    vrun(main)
