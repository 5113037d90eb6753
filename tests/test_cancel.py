"""Cancel scopes, cancellation delivery at checkpoints, and timeouts."""

from __future__ import annotations

import math
import socket

import pytest

import yieldloop as yl
from yieldloop import (
    Cancelled,
    CancelScope,
    TaskGroup,
    checkpoint,
    current_task,
    current_time,
    fail_after,
    fail_at,
    move_on_after,
    move_on_at,
    sleep,
    sleep_forever,
    sleep_until,
)
from yieldloop.lowlevel import park, reschedule, wait_readable
from yieldloop.testing import VirtualClock

pytestmark = pytest.mark.timeout(30)


def vrun(main, *args):
    """Run ``main`` on a fresh virtual clock starting at 0."""
    return yl.run(main, *args, clock=VirtualClock())


# ------------------------------------------------------------ the basics


def test_cancelled_is_base_exception_not_exception():
    assert issubclass(Cancelled, BaseException)
    assert not issubclass(Cancelled, Exception)

    async def main():
        caught_by_except_exception = []
        with CancelScope() as scope:
            scope.cancel()
            try:
                await checkpoint()
            except Exception as e:  # must not catch Cancelled
                caught_by_except_exception.append(e)  # pragma: no cover
        assert scope.cancelled_caught
        return caught_by_except_exception

    assert vrun(main) == []


def test_new_scope_defaults():
    scope = CancelScope()
    assert scope.deadline == math.inf
    assert scope.shield is False
    assert scope.cancel_called is False
    assert scope.cancelled_caught is False
    assert "new" in repr(scope)


def test_cancel_before_enter():
    after = []

    async def main():
        scope = CancelScope()
        scope.cancel()
        assert scope.cancel_called
        with scope:
            after.append("before checkpoint")
            await checkpoint()
            after.append("after checkpoint")  # pragma: no cover
        assert scope.cancelled_caught
        return current_time()

    assert vrun(main) == 0
    assert after == ["before checkpoint"]


def test_cancel_after_enter_while_blocked_from_other_task():
    async def main():
        holder = []

        async def sleeper():
            with CancelScope() as scope:
                holder.append(scope)
                await sleep(100)
            return scope.cancelled_caught, current_time()

        async def canceller():
            await sleep(2)
            holder[0].cancel()
            assert holder[0].cancel_called

        async with TaskGroup() as tg:
            t = tg.spawn(sleeper)
            tg.spawn(canceller)
        return t.result()

    assert vrun(main) == (True, 2.0)


def test_scope_that_is_not_cancelled_does_not_catch():
    async def main():
        with CancelScope() as scope:
            await sleep(1)
        assert not scope.cancelled_caught
        assert not scope.cancel_called
        # cancelling after exit has no effect on anything
        scope.cancel()
        await checkpoint()
        await sleep(1)
        assert not scope.cancelled_caught
        return current_time()

    assert vrun(main) == 2


def test_cancel_called_but_no_checkpoint_means_not_caught():
    async def main():
        with CancelScope() as scope:
            scope.cancel()
            total = sum(range(10))
        assert scope.cancel_called
        assert not scope.cancelled_caught
        return total

    assert vrun(main) == 45


def test_cancel_is_idempotent():
    async def main():
        with CancelScope() as scope:
            scope.cancel()
            scope.cancel()
            await checkpoint()
        assert scope.cancelled_caught

    vrun(main)


def test_other_exceptions_pass_through_cancelled_scope():
    async def main():
        with pytest.raises(KeyError):
            with CancelScope() as scope:
                scope.cancel()
                raise KeyError("x")
        assert not scope.cancelled_caught

    vrun(main)


def test_scope_exception_group_with_cancelled_and_error():
    # A group that mixes Cancelled with a real error: the scope takes the
    # Cancelled out and lets the rest through.
    err = ValueError("real")

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            with CancelScope() as scope:
                scope.cancel()
                raise BaseExceptionGroup("mixed", [Cancelled(), err])
        assert scope.cancelled_caught
        assert info.value.exceptions == (err,)

    vrun(main)


# ---------------------------------------------------------- level-triggered


def test_cancellation_is_level_triggered():
    async def main():
        hits = 0
        with CancelScope() as scope:
            scope.cancel()
            for _ in range(5):
                try:
                    await checkpoint()
                except Cancelled:
                    hits += 1
            try:
                await sleep(10)
            except Cancelled:
                hits += 1
        assert not scope.cancelled_caught  # every Cancelled was swallowed inside
        return hits, current_time()

    assert vrun(main) == (6, 0.0)


def test_cleanup_in_shielded_scope_can_await():
    log = []

    async def main():
        with move_on_after(1) as scope:
            try:
                await sleep_forever()
            finally:
                with CancelScope(shield=True):
                    await sleep(2)
                    log.append(("cleanup", current_time()))
                # outside the shield the cancellation is visible again
                try:
                    await checkpoint()
                except Cancelled:
                    log.append(("cancelled again", current_time()))
        assert scope.cancelled_caught
        return log

    assert vrun(main) == [("cleanup", 3.0), ("cancelled again", 3.0)]


# ---------------------------------------------------------------- nesting


def test_inner_cancel_stops_at_inner_scope():
    async def main():
        with CancelScope() as outer:
            with CancelScope() as inner:
                inner.cancel()
                await sleep(10)
            await sleep(1)  # outer is not cancelled
        assert inner.cancelled_caught
        assert not outer.cancelled_caught
        assert not outer.cancel_called
        return current_time()

    assert vrun(main) == 1


def test_outer_cancel_caught_by_outer_scope():
    after_inner = []

    async def main():
        with CancelScope() as outer:
            with CancelScope() as inner:
                outer.cancel()
                await sleep(10)
            after_inner.append(True)  # pragma: no cover
        assert outer.cancelled_caught
        assert not inner.cancelled_caught
        assert not inner.cancel_called
        return current_time()

    assert vrun(main) == 0
    assert after_inner == []


def test_inner_scope_entered_inside_cancelled_scope_is_cancelled():
    async def main():
        with CancelScope() as outer:
            outer.cancel()
            with CancelScope() as inner:
                with pytest.raises(Cancelled):
                    await checkpoint()
            assert not inner.cancelled_caught
            await checkpoint()
        assert outer.cancelled_caught

    vrun(main)


# ------------------------------------------------------------------ misuse


def test_entering_twice_raises():
    async def main():
        scope = CancelScope()
        with scope:
            with pytest.raises(RuntimeError, match="once"):
                with scope:
                    pass  # pragma: no cover
            await checkpoint()
        with pytest.raises(RuntimeError, match="once"):
            with scope:
                pass  # pragma: no cover
        # the failed attempts did not break this task's scope stack
        with CancelScope() as other:
            other.cancel()
            await checkpoint()
        assert other.cancelled_caught

    vrun(main)


def test_exiting_out_of_order_raises():
    async def main():
        a = CancelScope()
        b = CancelScope()
        a.__enter__()
        b.__enter__()
        with pytest.raises(RuntimeError, match="order"):
            a.__exit__(None, None, None)
        # still intact: exit in the right order works
        assert b.__exit__(None, None, None) is False
        assert a.__exit__(None, None, None) is False
        with pytest.raises(RuntimeError):
            a.__exit__(None, None, None)  # already exited
        with pytest.raises(RuntimeError):
            CancelScope().__exit__(None, None, None)  # never entered

        # the task's scope stack is still sane
        with CancelScope() as c:
            c.cancel()
            await checkpoint()
        assert c.cancelled_caught

    vrun(main)


def test_exiting_scope_from_another_task_raises():
    async def main():
        holder = []
        errors = []

        async def owner():
            with CancelScope() as scope:
                holder.append(scope)
                await sleep(2)
            return "owner done"

        async def intruder():
            await sleep(1)
            try:
                holder[0].__exit__(None, None, None)
            except RuntimeError as e:
                errors.append(e)

        async with TaskGroup() as tg:
            t = tg.spawn(owner)
            tg.spawn(intruder)
        assert t.result() == "owner done"
        assert len(errors) == 1

    vrun(main)


def test_scope_outside_run_raises():
    with pytest.raises(RuntimeError):
        with CancelScope():
            pass  # pragma: no cover


@pytest.mark.parametrize(
    "bad, exc",
    [("5", TypeError), (None, TypeError), (True, TypeError), (math.nan, ValueError)],
)
def test_bad_deadline(bad, exc):
    with pytest.raises(exc):
        CancelScope(deadline=bad)
    with pytest.raises(exc):
        move_on_at(bad)
    with pytest.raises(exc):
        fail_at(bad)

    async def main():
        with CancelScope(deadline=10) as scope:
            with pytest.raises(exc):
                scope.deadline = bad
            assert scope.deadline == 10
            await sleep(20)
        assert scope.cancelled_caught
        return current_time()

    assert vrun(main) == 10


# --------------------------------------------------------------- deadlines


def test_deadline_property_and_firing():
    async def main():
        with CancelScope(deadline=5) as scope:
            assert scope.deadline == 5
            assert isinstance(scope.deadline, float)
            await sleep(100)
        assert scope.cancelled_caught
        assert scope.cancel_called
        return current_time()

    assert vrun(main) == 5


def test_deadline_moved_earlier_while_entered():
    async def main():
        with CancelScope(deadline=10) as scope:
            await sleep(1)
            scope.deadline = 3
            assert scope.deadline == 3
            await sleep(100)
        assert scope.cancelled_caught
        return current_time()

    assert vrun(main) == 3


def test_deadline_moved_later_while_entered():
    async def main():
        with CancelScope(deadline=3) as scope:
            await sleep(1)
            scope.deadline = 7
            await sleep(100)
        assert scope.cancelled_caught
        return current_time()

    assert vrun(main) == 7


def test_deadline_removed_while_entered():
    async def main():
        with CancelScope(deadline=3) as scope:
            await sleep(1)
            scope.deadline = math.inf
            await sleep(5)
        assert not scope.cancelled_caught
        assert not scope.cancel_called
        return current_time()

    assert vrun(main) == 6


def test_deadline_set_by_another_task_while_blocked():
    async def main():
        holder = []

        async def sleeper():
            with CancelScope() as scope:
                holder.append(scope)
                await sleep_forever()
            return current_time()

        async def setter():
            await sleep(1)
            holder[0].deadline = 4

        async with TaskGroup() as tg:
            t = tg.spawn(sleeper)
            tg.spawn(setter)
        return t.result()

    assert vrun(main) == 4


def test_deadline_set_into_the_past_while_entered_cancels_now():
    async def main():
        await sleep(5)
        with CancelScope() as scope:
            scope.deadline = 2
            assert scope.cancel_called
            await checkpoint()
        assert scope.cancelled_caught
        return current_time()

    assert vrun(main) == 5


def test_deadline_in_the_past_at_enter():
    reached = []

    async def main():
        await sleep(5)
        with CancelScope(deadline=current_time() - 1) as scope:
            assert scope.cancel_called
            await sleep(1)
            reached.append(True)  # pragma: no cover
        assert scope.cancelled_caught
        with CancelScope(deadline=current_time()) as scope2:
            await checkpoint()
        assert scope2.cancelled_caught
        return current_time()

    assert vrun(main) == 5
    assert reached == []


def test_deadline_set_before_enter():
    async def main():
        scope = CancelScope()
        scope.deadline = 2
        await sleep(1)  # not armed yet: nothing happens while not entered
        assert not scope.cancel_called
        with scope:
            await sleep(10)
        assert scope.cancelled_caught
        return current_time()

    assert vrun(main) == 2


def test_deadline_after_exit_does_not_fire():
    async def main():
        with CancelScope(deadline=5) as scope:
            await sleep(1)
        await sleep(10)  # the old deadline must not hit this sleep
        assert not scope.cancel_called
        assert not scope.cancelled_caught
        return current_time()

    assert vrun(main) == 11


def test_deadline_fires_while_body_shielded():
    async def main():
        with move_on_after(1) as scope:
            with CancelScope(shield=True):
                await sleep(3)
                assert scope.cancel_called  # fired at 1, not yet delivered
            await checkpoint()
        assert scope.cancelled_caught
        return current_time()

    assert vrun(main) == 3


def test_deadline_after_cancel_does_not_uncancel():
    async def main():
        with CancelScope() as scope:
            scope.cancel()
            scope.deadline = math.inf
            assert scope.cancel_called
            await checkpoint()
        assert scope.cancelled_caught

    vrun(main)


# ------------------------------------------------------------------ shield


def test_shield_blocks_outer_cancel():
    async def main():
        with CancelScope() as outer:
            outer.cancel()
            with CancelScope(shield=True) as inner:
                assert inner.shield
                await sleep(2)
                await checkpoint()
            assert not inner.cancelled_caught
            t = current_time()
            await checkpoint()
        assert outer.cancelled_caught
        return t

    assert vrun(main) == 2


def test_shield_blocks_outer_deadline():
    async def main():
        with move_on_after(1) as outer:
            with CancelScope(shield=True):
                await sleep(5)
            await sleep(5)
        assert outer.cancelled_caught
        return current_time()

    assert vrun(main) == 5


def test_shield_does_not_block_own_cancel():
    async def main():
        with CancelScope(shield=True) as scope:
            scope.cancel()
            await sleep(5)
        assert scope.cancelled_caught
        return current_time()

    assert vrun(main) == 0


def test_unshield_while_outer_cancelled_delivers_cancel():
    async def main():
        holder = []

        async def sleeper():
            with CancelScope() as outer:
                outer.cancel()
                with CancelScope(shield=True) as inner:
                    holder.append(inner)
                    await sleep(10)
                return "not reached"  # pragma: no cover
            assert outer.cancelled_caught
            assert not inner.cancelled_caught
            return current_time()

        async def unshield():
            await sleep(1)
            holder[0].shield = False
            assert holder[0].shield is False

        async with TaskGroup() as tg:
            t = tg.spawn(sleeper)
            tg.spawn(unshield)
        return t.result()

    assert vrun(main) == 1


def test_shield_turned_on_while_outer_cancelled():
    async def main():
        with CancelScope() as outer:
            outer.cancel()
            with CancelScope() as inner:
                with pytest.raises(Cancelled):
                    await checkpoint()
                inner.shield = True
                await sleep(2)  # protected now
                inner.shield = False
                with pytest.raises(Cancelled):
                    await checkpoint()
            await checkpoint()
        assert outer.cancelled_caught
        return current_time()

    assert vrun(main) == 2


def test_shield_turned_on_before_enter():
    async def main():
        with move_on_after(1) as outer:
            scope = CancelScope()
            scope.shield = True
            with scope:
                await sleep(3)
            await checkpoint()
        assert outer.cancelled_caught
        return current_time()

    assert vrun(main) == 3


def test_nested_scope_inside_shield_is_protected_too():
    async def main():
        with CancelScope() as outer:
            outer.cancel()
            with CancelScope(shield=True):
                with CancelScope():
                    await sleep(1)
            await checkpoint()
        assert outer.cancelled_caught
        return current_time()

    assert vrun(main) == 1


# ---------------------------------------------- every kind of await point


async def point_sleep0(tg):
    await sleep(0)


async def point_sleep(tg):
    await sleep(50)


async def point_sleep_until(tg):
    await sleep_until(50)


async def point_sleep_forever(tg):
    await sleep_forever()


async def point_checkpoint(tg):
    await checkpoint()


async def point_await_task(tg):
    await tg.spawn(sleep, 50)


async def point_group_exit(tg):
    async with TaskGroup() as inner:
        inner.spawn(sleep_forever)


async def point_park(tg):
    await park(lambda task: True, "test")


@yl.coroutine
def point_generator_sleep(tg):
    yield ("sleep", 50)


@yl.coroutine
def point_generator_sleep_until(tg):
    yield ("sleep_until", 50)


async def point_wait_readable(tg):
    a, b = socket.socketpair()
    try:
        await wait_readable(a)
    finally:
        a.close()
        b.close()


BLOCKING_POINTS = [
    point_sleep,
    point_sleep_until,
    point_sleep_forever,
    point_await_task,
    point_group_exit,
    point_park,
    point_generator_sleep,
    point_generator_sleep_until,
    point_wait_readable,
]
ALL_POINTS = [point_sleep0, point_checkpoint, *BLOCKING_POINTS]


def _ids(points):
    return [p.__name__.removeprefix("point_") for p in points]


@pytest.mark.parametrize("point", ALL_POINTS, ids=_ids(ALL_POINTS))
def test_cancel_delivered_when_already_cancelled(point):
    reached = []

    async def main():
        async with TaskGroup() as tg:
            with CancelScope() as scope:
                scope.cancel()
                await point(tg)
                reached.append(True)
            assert scope.cancelled_caught
            assert current_time() == 0
            tg.cancel_scope.cancel()

    vrun(main)
    assert reached == []


@pytest.mark.parametrize("point", BLOCKING_POINTS, ids=_ids(BLOCKING_POINTS))
def test_cancel_delivered_while_blocked(point):
    reached = []

    async def main():
        async with TaskGroup() as tg:
            with move_on_after(1) as scope:
                await point(tg)
                reached.append(True)
            assert scope.cancelled_caught
            assert current_time() == 1
            tg.cancel_scope.cancel()

    vrun(main)
    assert reached == []


def test_cancel_delivered_at_bare_yield_in_generator_task():
    log = []

    def spinner():
        try:
            while True:
                yield
                log.append("spin")
        finally:
            log.append("spinner finally")

    async def main():
        async with TaskGroup() as tg:
            t = tg.spawn(spinner)
            await checkpoint()
            await checkpoint()
            t.cancel()
        assert t.cancelled()
        return log

    log = vrun(main)
    assert log[-1] == "spinner finally"
    assert 1 <= log.count("spin") <= 3


def test_generator_task_with_scope_and_raw_requests():
    def gen_main():
        with move_on_after(2) as scope:
            while True:
                yield ("sleep", 1)
        now = yield ("current_time",)
        with CancelScope() as scope2:
            scope2.cancel()
            yield
        with CancelScope() as scope3:
            scope3.cancel()
            yield ("checkpoint",)
        return scope.cancelled_caught, now, scope2.cancelled_caught, scope3.cancelled_caught

    assert vrun(gen_main) == (True, 2.0, True, True)


def test_cancel_of_await_task_does_not_cancel_the_task():
    async def main():
        async with TaskGroup() as tg:
            target = tg.spawn(sleep, 3)
            with move_on_after(1) as scope:
                await target
            assert scope.cancelled_caught
            assert not target.done()
            # the target finishing later must not disturb this sleep
            await sleep(5)
            assert current_time() == 6
        assert target.done()
        assert not target.cancelled()

    vrun(main)


def test_park_abort_false_keeps_waiting_until_rescheduled():
    log = []

    async def main():
        holder = []

        def abort(task):
            log.append(("abort called", current_time()))
            return False

        async def waiter():
            with CancelScope() as scope:
                holder.append((current_task(), scope))
                value = await park(abort, "uncancellable wait")
                log.append(("woke with", value, current_time()))
                try:
                    await checkpoint()
                except Cancelled:
                    log.append(("cancelled at next checkpoint", current_time()))
                    raise
            return scope.cancelled_caught

        async def driver():
            await sleep(1)
            task, scope = holder[0]
            scope.cancel()
            await sleep(2)
            assert not waiter_task.done()  # still parked after the cancel
            reschedule(task, "the value")

        async with TaskGroup() as tg:
            waiter_task = tg.spawn(waiter)
            tg.spawn(driver)
        assert waiter_task.result() is True
        return log

    assert vrun(main) == [
        ("abort called", 1.0),
        ("woke with", "the value", 3.0),
        ("cancelled at next checkpoint", 3.0),
    ]


def test_park_abort_true_is_called_once():
    calls = []

    async def main():
        with move_on_after(1) as scope:

            def abort(task):
                calls.append(task)
                return True

            await park(abort)
        assert scope.cancelled_caught
        assert calls == [current_task()]

    vrun(main)


def test_park_abort_function_that_raises_reaches_the_task():
    err = KeyError("abort failed")

    async def main():
        with move_on_after(1) as scope:

            def abort(task):
                raise err

            with pytest.raises(KeyError) as info:
                await park(abort)
            assert info.value is err
        assert not scope.cancelled_caught
        return current_time()

    assert vrun(main) == 1


def test_task_with_no_checkpoints_runs_to_completion_when_cancelled():
    async def compute():
        return sum(range(1000))

    async def main():
        async with TaskGroup() as tg:
            tg.cancel_scope.cancel()
            t = tg.spawn(compute)  # spawned into a cancelled scope
        assert t.result() == sum(range(1000))
        assert not t.cancelled()

    vrun(main)


# ---------------------------------------------------------------- timeouts


def test_move_on_after_exact_time():
    async def main():
        await sleep(1)
        with move_on_after(2.5) as scope:
            assert scope.deadline == 3.5
            await sleep(10)
        assert scope.cancelled_caught
        return current_time()

    assert vrun(main) == 3.5


def test_move_on_after_not_reached():
    async def main():
        with move_on_after(5) as scope:
            await sleep(1)
        assert not scope.cancelled_caught
        assert not scope.cancel_called
        return current_time()

    assert vrun(main) == 1


def test_move_on_after_zero_cancels_at_first_checkpoint():
    reached = []

    async def main():
        with move_on_after(0) as scope:
            reached.append("body starts")
            await checkpoint()
            reached.append("after checkpoint")  # pragma: no cover
        assert scope.cancelled_caught
        return current_time()

    assert vrun(main) == 0
    assert reached == ["body starts"]


def test_move_on_at_exact_time():
    async def main():
        with move_on_at(4.25) as scope:
            await sleep_forever()
        assert scope.cancelled_caught
        return current_time()

    assert vrun(main) == 4.25


def test_move_on_with_shield_argument():
    async def main():
        with move_on_after(1) as outer:
            with move_on_after(3, shield=True) as inner:
                assert inner.shield
                await sleep(10)
            assert inner.cancelled_caught
            assert current_time() == 3
            await checkpoint()
        assert outer.cancelled_caught
        return current_time()

    assert vrun(main) == 3


def test_fail_after_raises_builtin_timeout_error():
    async def main():
        await sleep(1)
        with pytest.raises(TimeoutError) as info:
            with fail_after(2) as scope:
                assert isinstance(scope, CancelScope)
                assert scope.deadline == 3
                await sleep(10)
        assert type(info.value) is TimeoutError
        assert scope.cancelled_caught
        return current_time()

    assert vrun(main) == 3


def test_fail_at_raises_builtin_timeout_error():
    async def main():
        with pytest.raises(TimeoutError):
            with fail_at(7.5):
                await sleep_forever()
        return current_time()

    assert vrun(main) == 7.5


def test_fail_at_in_the_past_fails_at_first_checkpoint():
    async def main():
        await sleep(3)
        with pytest.raises(TimeoutError):
            with fail_at(1):
                await checkpoint()
        return current_time()

    assert vrun(main) == 3


def test_fail_after_not_reached_returns_normally():
    async def main():
        with fail_after(5):
            await sleep(4)
        await sleep(10)  # the stale deadline does nothing
        return current_time()

    assert vrun(main) == 14


def test_fail_after_body_error_wins():
    async def main():
        with pytest.raises(KeyError):
            with fail_after(1):
                try:
                    await sleep(5)
                finally:
                    raise KeyError("cleanup")
        return current_time()

    assert vrun(main) == 1


def test_fail_after_deadline_passed_without_checkpoint_does_not_raise():
    async def main():
        with fail_after(1) as scope:
            with CancelScope(shield=True):
                await sleep(2)
        assert scope.cancel_called
        assert not scope.cancelled_caught
        return current_time()

    assert vrun(main) == 2


def test_manual_cancel_of_fail_scope_does_not_raise_timeout():
    async def main():
        with fail_after(5) as scope:
            await sleep(1)
            scope.cancel()
            await sleep(10)
        assert scope.cancelled_caught
        with fail_at(20) as scope2:
            scope2.cancel()
            await checkpoint()
        assert scope2.cancelled_caught
        return current_time()

    assert vrun(main) == 1


def test_manual_cancel_of_fail_scope_then_slow_cleanup_does_not_raise_timeout():
    # The scope was cancelled by hand; that its shielded cleanup ran past the
    # deadline does not make it a timeout.
    async def main():
        with fail_after(5) as scope:
            await sleep(1)
            scope.cancel()
            with CancelScope(shield=True):
                await sleep(10)
            await checkpoint()
        assert scope.cancelled_caught
        return current_time()

    assert vrun(main) == 11


def test_outer_timeout_passes_through_inner_fail_after():
    async def main():
        with move_on_after(1) as outer:
            with fail_after(5) as inner:
                await sleep(10)
        assert outer.cancelled_caught
        assert not inner.cancelled_caught
        return current_time()

    assert vrun(main) == 1


def test_inner_fail_after_fires_first():
    async def main():
        with move_on_after(5) as outer:
            with pytest.raises(TimeoutError):
                with fail_after(2):
                    await sleep(10)
            assert current_time() == 2
            await sleep(10)
        assert outer.cancelled_caught
        return current_time()

    assert vrun(main) == 5


def test_nested_timeouts_exact_times():
    async def main():
        times = []
        with move_on_after(10) as a:
            with move_on_after(3) as b:
                with move_on_after(6) as c:
                    await sleep_forever()
                times.append(("c exited", current_time()))  # pragma: no cover
            times.append(("b exited", current_time()))
            await sleep_forever()
        times.append(("a exited", current_time()))
        assert (a.cancelled_caught, b.cancelled_caught, c.cancelled_caught) == (
            True,
            True,
            False,
        )
        return times

    assert vrun(main) == [("b exited", 3.0), ("a exited", 10.0)]


@pytest.mark.parametrize("factory", [move_on_after, fail_after])
@pytest.mark.parametrize(
    "bad, exc",
    [
        (-1, ValueError),
        (-0.001, ValueError),
        (math.nan, ValueError),
        ("1", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_bad_timeouts_rejected(factory, bad, exc):
    async def main():
        with pytest.raises(exc):
            factory(bad)

    vrun(main)


def test_timeouts_in_many_tasks_fire_in_deadline_order():
    order = []

    async def worker(i, timeout):
        with move_on_after(timeout):
            await sleep_forever()
        order.append((i, current_time()))

    async def main():
        async with TaskGroup() as tg:
            for i, timeout in enumerate([5, 1, 3, 2, 4]):
                tg.spawn(worker, i, timeout)

    vrun(main)
    assert order == [(1, 1.0), (3, 2.0), (2, 3.0), (4, 4.0), (0, 5.0)]


def test_timeout_on_real_clock():
    # The one test on real time: a short timeout ends a long sleep early.
    async def main():
        start = current_time()
        with move_on_after(0.05) as scope:
            await sleep(30)
        assert scope.cancelled_caught
        return current_time() - start

    elapsed = yl.run(main)
    assert 0.04 < elapsed < 10
