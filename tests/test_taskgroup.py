"""Task groups, tasks, ``start``/``task_status`` and ``gather``."""

from __future__ import annotations

import contextvars
import gc
import warnings

import pytest

import yieldloop as yl
from yieldloop import (
    TASK_STATUS_IGNORED,
    Cancelled,
    CancelScope,
    TaskCancelled,
    TaskGroup,
    checkpoint,
    current_task,
    current_time,
    gather,
    move_on_after,
    sleep,
    sleep_forever,
)
from yieldloop.lowlevel import park, reschedule
from yieldloop.testing import VirtualClock

pytestmark = pytest.mark.timeout(30)


def vrun(main, *args):
    """Run ``main`` on a fresh virtual clock starting at 0."""
    return yl.run(main, *args, clock=VirtualClock())


def never_awaited_warnings(fn):
    """Call ``fn`` and return the "never awaited" warnings it caused."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
        gc.collect()
    return [str(w.message) for w in caught if "never awaited" in str(w.message)]


async def return_after(t, value):
    await sleep(t)
    return value


async def raise_after(t, exc):
    await sleep(t)
    raise exc


async def raise_after_shielded(t, exc):
    # Keeps running through the group's cancellation, then fails.
    with CancelScope(shield=True):
        await sleep(t)
    raise exc


# ----------------------------------------------------------------- basics


def test_group_waits_for_all_children():
    finished = []

    async def child(t):
        await sleep(t)
        finished.append((t, current_time()))

    async def main():
        async with TaskGroup() as tg:
            tg.spawn(child, 3)
            tg.spawn(child, 1)
            tg.spawn(child, 2)
            assert finished == []
        assert current_time() == 3
        return list(finished)

    assert vrun(main) == [(1, 1.0), (2, 2.0), (3, 3.0)]


def test_spawn_returns_task_with_result():
    async def main():
        async with TaskGroup() as tg:
            t1 = tg.spawn(return_after, 2, "a")
            t2 = tg.spawn(return_after, 1, "b")
            assert isinstance(t1, yl.Task)
            assert await t1 == "a"
            assert current_time() == 2
            assert t2.done()
            assert t2.result() == "b"
        assert t1.result() == "a"
        assert t1.exception() is None
        assert not t1.cancelled()
        # awaiting a finished task returns at once, many times
        assert await t1 == "a"
        assert await t1 == "a"
        return current_time()

    assert vrun(main) == 2


def test_task_name_default_and_custom():
    async def worker():
        await checkpoint()

    def gen_worker():
        yield

    async def main():
        async with TaskGroup() as tg:
            t1 = tg.spawn(worker)
            t2 = tg.spawn(worker, name="custom")
            t3 = tg.spawn(gen_worker)
            t4 = tg.spawn(worker())
            assert t1.name == worker.__qualname__
            assert t1.name.endswith("test_task_name_default_and_custom.<locals>.worker")
            assert t2.name == "custom"
            assert t3.name == gen_worker.__qualname__
            assert t4.name == worker.__qualname__
            t1.name = "renamed"
            assert t1.name == "renamed"
            with pytest.raises(TypeError):
                t1.name = 42
            assert t1.name == "renamed"
            assert "renamed" in repr(t1)
            assert current_task().name == "test_task_name_default_and_custom.<locals>.main"

    vrun(main)


def test_result_and_exception_before_done_raise_runtime_error():
    async def main():
        async with TaskGroup() as tg:
            t = tg.spawn(return_after, 1, 5)
            assert not t.done()
            with pytest.raises(RuntimeError, match="not finished"):
                t.result()
            with pytest.raises(RuntimeError, match="not finished"):
                t.exception()
            assert not t.cancelled()
        assert t.done()
        assert t.result() == 5

    vrun(main)


def test_task_exception_and_result_after_failure():
    err = ValueError("boom")

    async def main():
        t = None
        with pytest.raises(ExceptionGroup) as info:
            async with TaskGroup() as tg:
                t = tg.spawn(raise_after, 1, err)
        assert info.value.exceptions == (err,)
        assert t.done()
        assert not t.cancelled()
        assert t.exception() is err
        with pytest.raises(ValueError) as info2:
            t.result()
        assert info2.value is err

    vrun(main)


def test_spawn_accepts_async_fn_generator_fn_and_coroutine_objects():
    async def afn(x, y):
        await sleep(1)
        return x + y

    def gfn(x):
        yield ("sleep", 2)
        yield
        return x * 2

    async def main():
        async with TaskGroup() as tg:
            t1 = tg.spawn(afn, 1, 2)
            t2 = tg.spawn(gfn, 21)
            t3 = tg.spawn(afn(10, 20))
            t4 = tg.spawn(gfn(5))
        assert current_time() == 2
        return [t1.result(), t2.result(), t3.result(), t4.result()]

    assert vrun(main) == [3, 42, 30, 10]


def test_spawn_bad_input_raises_clear_type_error():
    def regular(x):
        return x + 1

    async def afn(x=0):
        await checkpoint()

    async def main():
        async with TaskGroup() as tg:
            with pytest.raises(TypeError, match="spawn"):
                tg.spawn(42)
            with pytest.raises(TypeError, match="regular function"):
                tg.spawn(regular, 1)
            with pytest.raises(TypeError, match="already a coroutine"):
                tg.spawn(afn(), 1)
            with pytest.raises(TypeError, match="spawn"):
                tg.spawn("not a function")
            ok = tg.spawn(afn)
        # the bad calls left nothing behind in the group
        assert ok.done()
        return "ok"

    assert never_awaited_warnings(lambda: vrun(main)) == []


def test_spawn_bad_name_closes_coroutine():
    async def afn():
        await checkpoint()

    async def main():
        async with TaskGroup() as tg:
            with pytest.raises(TypeError, match="name"):
                tg.spawn(afn(), name=5)
            with pytest.raises(TypeError, match="name"):
                tg.spawn(afn, name=b"bytes")

    assert never_awaited_warnings(lambda: vrun(main)) == []


def test_spawn_into_unentered_or_closed_group():
    async def afn():
        await checkpoint()

    async def main():
        tg = TaskGroup()
        with pytest.raises(RuntimeError, match="not been entered"):
            tg.spawn(afn)
        with pytest.raises(RuntimeError, match="not been entered"):
            tg.spawn(afn())
        async with tg:
            tg.spawn(afn)
        with pytest.raises(RuntimeError, match="already finished"):
            tg.spawn(afn)
        with pytest.raises(RuntimeError, match="already finished"):
            tg.spawn(afn())
        with pytest.raises(RuntimeError):
            await tg.start(afn)

    assert never_awaited_warnings(lambda: vrun(main)) == []


def test_entering_group_twice_raises():
    async def main():
        tg = TaskGroup()
        async with tg:
            with pytest.raises(RuntimeError, match="once"):
                async with tg:
                    pass  # pragma: no cover
            # the group is still usable after the failed re-entry
            t = tg.spawn(return_after, 1, "still open")
        assert t.result() == "still open"
        with pytest.raises(RuntimeError, match="once"):
            async with tg:
                pass  # pragma: no cover

    vrun(main)


def test_empty_group_exits_at_once():
    async def main():
        async with TaskGroup() as tg:
            pass
        assert not tg.cancel_scope.cancelled_caught
        return current_time()

    assert vrun(main) == 0


# ---------------------------------------------------------------- errors


def test_child_error_cancels_siblings_and_body():
    events = []

    async def sibling():
        try:
            await sleep_forever()
        finally:
            events.append(("sibling cancelled", current_time()))

    async def main():
        err = ValueError("child failed")
        with pytest.raises(ExceptionGroup) as info:
            async with TaskGroup() as tg:
                tg.spawn(sibling)
                tg.spawn(raise_after, 2, err)
                try:
                    await sleep(100)
                except Cancelled:
                    events.append(("body cancelled", current_time()))
                    raise
        assert info.value.exceptions == (err,)
        assert current_time() == 2
        return sorted(events)

    assert vrun(main) == [("body cancelled", 2.0), ("sibling cancelled", 2.0)]


def test_multiple_errors_in_order_of_occurrence_including_body():
    a, b, c, d = ValueError("a"), KeyError("b"), OSError("c"), TypeError("d")

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            async with TaskGroup() as tg:
                tg.spawn(raise_after_shielded, 3, a)
                tg.spawn(raise_after_shielded, 1, b)
                tg.spawn(raise_after_shielded, 2, c)
                with CancelScope(shield=True):
                    await sleep(1.5)
                raise d
        assert current_time() == 3
        assert info.value.exceptions == (b, d, c, a)
        assert "4 errors" in str(info.value)

    vrun(main)


def test_body_error_then_child_errors():
    body_err = RuntimeError("body")
    child_err = KeyError("child")

    async def child():
        try:
            await sleep_forever()
        finally:
            raise child_err

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            async with TaskGroup() as tg:
                tg.spawn(child)
                await sleep(1)
                raise body_err
        assert info.value.exceptions == (body_err, child_err)
        assert isinstance(child_err.__context__, Cancelled)

    vrun(main)


def test_error_during_cleanup_of_cancelled_child_is_kept():
    first = ValueError("first")
    cleanup = KeyError("cleanup")

    async def fragile():
        try:
            await sleep_forever()
        finally:
            with CancelScope(shield=True):
                await sleep(1)  # cleanup that awaits, then fails
            raise cleanup

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            async with TaskGroup() as tg:
                tg.spawn(fragile)
                tg.spawn(raise_after, 2, first)
        assert info.value.exceptions == (first, cleanup)
        assert current_time() == 3

    vrun(main)


def test_error_in_child_while_body_is_blocked_in_park():
    err = ValueError("x")
    aborted = []

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            async with TaskGroup() as tg:
                tg.spawn(raise_after, 1, err)

                def abort(task):
                    aborted.append(current_time())
                    return True

                await park(abort, "something")
        assert info.value.exceptions == (err,)
        assert aborted == [1.0]

    vrun(main)


def test_error_in_child_while_body_is_shielded_is_raised_after():
    err = ValueError("x")

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            async with TaskGroup() as tg:
                tg.spawn(raise_after, 1, err)
                with CancelScope(shield=True):
                    await sleep(5)
                # the shield ended: the group's cancellation reaches the body now
                with pytest.raises(Cancelled):
                    await checkpoint()
        assert info.value.exceptions == (err,)
        assert current_time() == 5

    vrun(main)


class Boom(BaseException):
    pass


def test_base_exception_child_gives_base_exception_group():
    async def main():
        boom = Boom()
        with pytest.raises(BaseExceptionGroup) as info:
            async with TaskGroup() as tg:
                tg.spawn(raise_after, 1, boom)
                tg.spawn(sleep_forever)
        assert type(info.value) is BaseExceptionGroup
        assert not isinstance(info.value, ExceptionGroup)
        assert info.value.exceptions == (boom,)

        err = ValueError()
        with pytest.raises(BaseExceptionGroup) as info:
            async with TaskGroup() as tg:
                tg.spawn(raise_after_shielded, 1, err)
                tg.spawn(raise_after_shielded, 2, boom)
        assert type(info.value) is BaseExceptionGroup
        assert info.value.exceptions == (err, boom)

    vrun(main)


def test_only_exceptions_give_exception_group():
    async def main():
        with pytest.raises(ExceptionGroup) as info:
            async with TaskGroup() as tg:
                tg.spawn(raise_after, 1, ValueError())
        assert type(info.value) is ExceptionGroup

    vrun(main)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_lone_fatal_child_error_is_raised_bare_and_by_run(exc_type):
    seen = []
    cleanup = []

    async def sibling():
        try:
            await sleep_forever()
        finally:
            cleanup.append(current_time())

    async def main():
        try:
            async with TaskGroup() as tg:
                tg.spawn(sibling)
                tg.spawn(raise_after, 1, exc_type())
        except exc_type as e:
            seen.append(e)
        # even when main swallows it, run() still re-raises it
        return "swallowed"

    with pytest.raises(exc_type):
        vrun(main)
    assert len(seen) == 1
    assert type(seen[0]) is exc_type
    assert cleanup == [1.0]


def test_fatal_error_with_other_errors_comes_in_a_group():
    err = ValueError("first")
    ki = KeyboardInterrupt()
    seen = []

    async def main():
        try:
            async with TaskGroup() as tg:
                tg.spawn(raise_after_shielded, 1, err)
                tg.spawn(raise_after_shielded, 2, ki)
        except BaseExceptionGroup as eg:
            seen.append(eg)
            raise

    with pytest.raises((KeyboardInterrupt, BaseExceptionGroup)):
        vrun(main)
    (eg,) = seen
    assert type(eg) is BaseExceptionGroup
    assert eg.exceptions == (err, ki)


def test_keyboard_interrupt_propagates_from_run():
    async def main():
        async with TaskGroup() as tg:
            tg.spawn(raise_after, 1, KeyboardInterrupt())
            tg.spawn(sleep_forever)

    with pytest.raises(KeyboardInterrupt):
        vrun(main)


def test_awaiting_failing_task_does_not_hide_error_from_group():
    err = ValueError("boom")

    async def main():
        caught = []
        with pytest.raises(ExceptionGroup) as info:
            async with TaskGroup() as tg:
                t = tg.spawn(raise_after, 1, err)
                try:
                    await t
                except ValueError as e:
                    caught.append(e)
        assert caught == [err]
        assert info.value.exceptions == (err,)

    vrun(main)


def test_awaiting_failing_task_reports_error_once():
    # The body lets the error from ``await task`` propagate: it is the same
    # error the group already has, and is reported once.
    err = ValueError("boom")

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            async with TaskGroup() as tg:
                t = tg.spawn(raise_after, 1, err)
                await t
        assert info.value.exceptions == (err,)

    vrun(main)


def test_failing_task_awaited_from_another_group_reaches_both():
    err = ValueError("boom")

    async def main():
        waiter_errors = []

        async def waiter(t):
            try:
                await t
            except ValueError as e:
                waiter_errors.append(e)

        with pytest.raises(ExceptionGroup) as info:
            async with TaskGroup() as outer:
                t = outer.spawn(raise_after, 1, err)
                async with TaskGroup() as inner:
                    inner.spawn(waiter, t)
        assert info.value.exceptions == (err,)
        assert waiter_errors == [err]

    vrun(main)


# --------------------------------------------------------- cancel scope


def test_cancel_scope_cancel_cancels_children_and_body():
    cancelled = []

    async def child(i):
        try:
            await sleep_forever()
        except Cancelled:
            cancelled.append(i)
            raise

    async def main():
        async with TaskGroup() as tg:
            for i in range(3):
                tg.spawn(child, i)
            await sleep(1)
            tg.cancel_scope.cancel()
            with pytest.raises(Cancelled):
                await checkpoint()
            await sleep(1)  # pragma: no cover
        assert tg.cancel_scope.cancelled_caught
        assert tg.cancel_scope.cancel_called
        assert sorted(cancelled) == [0, 1, 2]
        return current_time()

    assert vrun(main) == 1


def test_cancel_scope_cancel_from_child_while_body_waits_at_exit():
    async def canceller(tg):
        await sleep(1)
        tg.cancel_scope.cancel()

    async def main():
        async with TaskGroup() as tg:
            tg.spawn(canceller, tg)
            t = tg.spawn(sleep_forever)
        assert t.cancelled()
        assert current_time() == 1
        assert tg.cancel_scope.cancelled_caught

    vrun(main)


# ------------------------------------------------------------------ start


def test_start_returns_started_value_and_task_keeps_running():
    log = []

    async def server(port, *, task_status):
        await sleep(1)
        task_status.started(port + 1)
        log.append(("started", current_time()))
        await sleep(2)
        log.append(("done", current_time()))
        return "served"

    async def main():
        async with TaskGroup() as tg:
            value = await tg.start(server, 8000)
            assert value == 8001
            assert current_time() == 1
            # still running in the group after start() returned
            assert ("done", 3.0) not in log
        assert log == [("started", 1.0), ("done", 3.0)]
        assert current_time() == 3

    vrun(main)


def test_start_without_value_returns_none():
    async def fn(*, task_status):
        task_status.started()
        await sleep(1)

    async def main():
        async with TaskGroup() as tg:
            assert await tg.start(fn) is None

    vrun(main)


def test_start_error_before_started_is_raised_by_start_not_group():
    err = ValueError("could not bind")

    async def server(*, task_status):
        await sleep(1)
        raise err

    async def main():
        async with TaskGroup() as tg:
            sibling = tg.spawn(return_after, 3, "sibling ok")
            with pytest.raises(ValueError) as info:
                await tg.start(server)
            assert info.value is err
            assert current_time() == 1
        # the group did not get the error: the sibling was not cancelled
        assert sibling.result() == "sibling ok"
        assert current_time() == 3

    vrun(main)


def test_start_error_propagating_from_body_reaches_group_once():
    err = ValueError("could not bind")

    async def server(*, task_status):
        raise err

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            async with TaskGroup() as tg:
                await tg.start(server)
        assert info.value.exceptions == (err,)

    vrun(main)


def test_start_task_exits_without_started():
    async def lazy(*, task_status):
        await sleep(1)
        return 5

    async def main():
        async with TaskGroup() as tg:
            with pytest.raises(RuntimeError, match="started"):
                await tg.start(lazy, name="lazy-one")
        assert current_time() == 1

    vrun(main)


def test_started_called_twice():
    errors = []

    async def twice(*, task_status):
        task_status.started(1)
        try:
            task_status.started(2)
        except RuntimeError as e:
            errors.append(e)
        await sleep(1)

    async def main():
        async with TaskGroup() as tg:
            assert await tg.start(twice) == 1
        assert len(errors) == 1
        assert "once" in str(errors[0])

    vrun(main)


def test_start_error_after_started_goes_to_group():
    err = ValueError("late")

    async def server(*, task_status):
        task_status.started("ready")
        await sleep(1)
        raise err

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            async with TaskGroup() as tg:
                assert await tg.start(server) == "ready"
                await sleep(10)
        assert info.value.exceptions == (err,)
        assert current_time() == 1

    vrun(main)


def test_cancelling_caller_of_start_cancels_starting_task():
    log = []

    async def slow(*, task_status):
        try:
            await sleep(5)
            task_status.started()  # pragma: no cover
        finally:
            log.append(("starter exits", current_time()))

    async def main():
        async with TaskGroup() as tg:
            with move_on_after(1) as scope:
                await tg.start(slow)
            assert scope.cancelled_caught
            assert current_time() == 1
        assert log == [("starter exits", 1.0)]

    vrun(main)


def test_started_task_leaves_callers_scope():
    async def server(*, task_status):
        task_status.started()
        await sleep(3)
        return "outlived the caller's scope"

    async def main():
        async with TaskGroup() as tg:
            with move_on_after(1) as scope:
                await tg.start(server)
                await sleep_forever()
            assert scope.cancelled_caught
            assert current_time() == 1
        assert current_time() == 3

    vrun(main)


def test_started_task_is_cancelled_by_group_scope():
    async def server(*, task_status):
        task_status.started()
        await sleep_forever()

    async def main():
        async with TaskGroup() as tg:
            await tg.start(server)
            await sleep(2)
            tg.cancel_scope.cancel()
        assert current_time() == 2

    vrun(main)


def test_task_cancel_before_started_is_not_lost():
    seen = []

    async def starter(*, task_status):
        current_task().cancel()
        task_status.started("v")
        try:
            await sleep_forever()
        except Cancelled:
            seen.append(current_time())
            raise

    async def main():
        with move_on_after(10) as safety:
            async with TaskGroup() as tg:
                assert await tg.start(starter) == "v"
        assert not safety.cancelled_caught
        assert seen == [0.0]

    vrun(main)


def test_task_status_ignored_lets_function_be_spawned():
    async def serve(port, *, task_status=TASK_STATUS_IGNORED):
        await sleep(1)
        task_status.started(port)
        await sleep(1)
        return port

    async def main():
        async with TaskGroup() as tg:
            spawned = tg.spawn(serve, 1)
            assert await tg.start(serve, 2) == 2
        assert spawned.result() == 1
        assert current_time() == 2
        assert repr(TASK_STATUS_IGNORED) == "TASK_STATUS_IGNORED"

    vrun(main)


def test_start_bad_input():
    async def no_status():
        await checkpoint()

    async def with_status(*, task_status):
        task_status.started()

    async def main():
        async with TaskGroup() as tg:
            with pytest.raises(TypeError, match="start"):
                await tg.start(42)
            with pytest.raises(TypeError, match="start"):
                await tg.start(with_status(task_status=TASK_STATUS_IGNORED))
            with pytest.raises(TypeError, match="task_status"):
                await tg.start(no_status)

    assert never_awaited_warnings(lambda: vrun(main)) == []


def test_start_from_task_outside_group():
    async def server(*, task_status):
        await sleep(1)
        task_status.started("up")
        await sleep(1)

    async def main():
        async with TaskGroup() as tg:

            async def starter():
                return await tg.start(server)

            async with TaskGroup() as other:
                t = other.spawn(starter)
        assert t.result() == "up"
        assert current_time() == 2

    vrun(main)


# ---------------------------------------------------------------- gather


def test_gather_results_in_order():
    def gen_sleep(t, value):
        yield ("sleep", t)
        return value

    async def main():
        async with TaskGroup() as tg:
            task = tg.spawn(return_after, 2, "task")
            results = await gather(
                return_after(3, "coro"),
                gen_sleep(1, "gen"),
                task,
                return_after(0, "zero"),
            )
        assert current_time() == 3
        return results

    assert vrun(main) == ["coro", "gen", "task", "zero"]


def test_gather_empty():
    async def main():
        return await gather()

    assert vrun(main) == []


def test_gather_first_error_cancels_rest_and_is_raised_bare():
    err = ValueError("first")
    cancelled = []

    async def slow(i):
        try:
            await sleep(10)
        except Cancelled:
            cancelled.append((i, current_time()))
            raise

    async def main():
        with pytest.raises(ValueError) as info:
            await gather(slow(0), raise_after(1, err), slow(2))
        assert info.value is err
        assert current_time() == 1
        return sorted(cancelled)

    assert vrun(main) == [(0, 1.0), (2, 1.0)]


def test_gather_two_errors_give_exception_group():
    a, b = ValueError("a"), KeyError("b")

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            await gather(raise_after_shielded(2, a), raise_after_shielded(1, b))
        assert info.value.exceptions == (b, a)

    vrun(main)


def test_gather_awaited_twice():
    async def main():
        g = gather(return_after(1, "x"))
        assert await g == ["x"]
        with pytest.raises(RuntimeError, match="once"):
            await g

    vrun(main)


def test_gather_in_plain_generator_with_yield_from():
    def gen_main():
        results = yield from gather(return_after(1, 1), return_after(2, 2))
        now = yield ("current_time",)
        return results, now

    assert vrun(gen_main) == ([1, 2], 2.0)


def test_run_gather_directly():
    assert vrun(gather(return_after(1, "a"), return_after(2, "b"))) == ["a", "b"]


def test_gather_bad_input_closes_coroutines():
    async def main():
        with pytest.raises(TypeError, match="gather"):
            gather(return_after(1, "a"), 42, return_after(1, "b"))

    assert never_awaited_warnings(lambda: vrun(main)) == []


def test_gather_cancelled_from_outside_does_not_return_results():
    reached = []

    async def main():
        with move_on_after(1) as scope:
            results = await gather(sleep_forever(), return_after(5, "late"))
            reached.append(results)
        assert scope.cancelled_caught
        assert current_time() == 1

    vrun(main)
    assert reached == []


def test_gather_of_cancelled_task_raises_task_cancelled():
    async def main():
        async with TaskGroup() as tg:
            t = tg.spawn(sleep_forever)

            async def canceller():
                await sleep(1)
                t.cancel()

            tg.spawn(canceller)
            with pytest.raises(TaskCancelled):
                await gather(t, return_after(2, "x"))
        assert current_time() == 1

    vrun(main)


# ------------------------------------------------------------ Task.cancel


def test_task_cancel_level_triggered_and_cleanup():
    log = []

    async def victim():
        try:
            await sleep_forever()
        except Cancelled:
            log.append(("first", current_time()))
        # still cancelled: every checkpoint raises until the task exits
        for _ in range(3):
            try:
                await checkpoint()
            except Cancelled:
                log.append(("again", current_time()))
        try:
            await sleep(1)
        finally:
            with CancelScope(shield=True):
                await sleep(2)  # cleanup may await in a shield
                log.append(("cleanup done", current_time()))

    async def main():
        async with TaskGroup() as tg:
            t = tg.spawn(victim)
            sibling = tg.spawn(return_after, 5, "sibling")
            await sleep(1)
            t.cancel()
            with pytest.raises(TaskCancelled):
                await t
        # the group was not failed, nor cancelled
        assert sibling.result() == "sibling"
        assert not tg.cancel_scope.cancel_called
        assert t.cancelled()
        assert t.done()
        with pytest.raises(TaskCancelled):
            t.result()
        with pytest.raises(TaskCancelled):
            t.exception()
        assert "cancelled" in repr(t)
        return log

    assert vrun(main) == [
        ("first", 1.0),
        ("again", 1.0),
        ("again", 1.0),
        ("again", 1.0),
        ("cleanup done", 3.0),
    ]


def test_task_cancel_on_done_task_is_noop():
    async def main():
        async with TaskGroup() as tg:
            t = tg.spawn(return_after, 1, "v")
        t.cancel()
        t.cancel()
        assert not t.cancelled()
        assert t.result() == "v"
        # cancelling the finished task did not cancel the caller
        await checkpoint()
        await sleep(1)
        return current_time()

    assert vrun(main) == 2


def test_task_cancel_twice_is_same_as_once():
    async def main():
        async with TaskGroup() as tg:
            t = tg.spawn(sleep_forever)
            await sleep(1)
            t.cancel()
            t.cancel()
        assert t.cancelled()
        assert current_time() == 1

    vrun(main)


def test_task_cancel_with_nested_scopes_and_shield():
    log = []

    async def victim():
        with CancelScope() as outer_own:
            with CancelScope(shield=True):
                await sleep(5)  # protected from task.cancel()
                log.append(("shielded part done", current_time()))
            with CancelScope() as inner:
                try:
                    await sleep(10)
                finally:
                    log.append(("inner cancelled", current_time()))
        log.append("not reached")  # pragma: no cover
        return outer_own, inner  # pragma: no cover

    async def main():
        async with TaskGroup() as tg:
            t = tg.spawn(victim)
            await sleep(1)
            t.cancel()
        assert t.cancelled()
        return log

    assert vrun(main) == [("shielded part done", 5.0), ("inner cancelled", 5.0)]


def test_task_cancel_does_not_make_own_scopes_catch():
    scopes = []

    async def victim():
        with CancelScope() as s:
            scopes.append(s)
            await sleep_forever()

    async def main():
        async with TaskGroup() as tg:
            t = tg.spawn(victim)
            await sleep(1)
            t.cancel()
        assert t.cancelled()
        assert not scopes[0].cancelled_caught
        assert not scopes[0].cancel_called

    vrun(main)


def test_task_cancel_of_group_body_cancels_its_children():
    log = []

    async def grandchild():
        try:
            await sleep_forever()
        finally:
            log.append(("grandchild", current_time()))

    async def child():
        async with TaskGroup() as inner:
            inner.spawn(grandchild)
            await sleep_forever()

    async def main():
        async with TaskGroup() as tg:
            t = tg.spawn(child)
            await sleep(2)
            t.cancel()
        assert t.cancelled()
        return log

    assert vrun(main) == [("grandchild", 2.0)]


def test_cancelled_task_without_checkpoints_runs_to_completion():
    async def no_checkpoints():
        total = 0
        for i in range(100):
            total += i
        return total

    async def main():
        async with TaskGroup() as tg:
            t = tg.spawn(no_checkpoints)
            t.cancel()  # before it ever ran
        assert not t.cancelled()
        return t.result()

    assert vrun(main) == 4950


# ------------------------------------------------------ nesting and scale


def test_nested_groups_error_structure():
    err = ValueError("deep")
    log = []

    async def outer_sibling():
        try:
            await sleep_forever()
        finally:
            log.append(("outer sibling", current_time()))

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            async with TaskGroup() as outer:
                outer.spawn(outer_sibling)
                async with TaskGroup() as inner:
                    inner.spawn(raise_after, 1, err)
                    inner.spawn(sleep_forever)
        eg = info.value
        assert len(eg.exceptions) == 1
        nested = eg.exceptions[0]
        assert isinstance(nested, ExceptionGroup)
        assert nested.exceptions == (err,)
        assert log == [("outer sibling", 1.0)]

    vrun(main)


def test_group_inside_child_task():
    err = KeyError("grandchild")

    async def child():
        async with TaskGroup() as tg:
            tg.spawn(return_after, 1, "ok")
            tg.spawn(raise_after, 2, err)
        return "unreachable"  # pragma: no cover

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            async with TaskGroup() as tg:
                tg.spawn(child)
        (nested,) = info.value.exceptions
        assert isinstance(nested, ExceptionGroup)
        assert nested.exceptions == (err,)
        assert current_time() == 2

    vrun(main)


def test_nested_groups_succeed():
    async def child(i):
        async with TaskGroup() as tg:
            ts = [tg.spawn(return_after, j, i * 10 + j) for j in range(3)]
        return [t.result() for t in ts]

    async def main():
        async with TaskGroup() as tg:
            ts = [tg.spawn(child, i) for i in range(3)]
        return [t.result() for t in ts]

    assert vrun(main) == [[0, 1, 2], [10, 11, 12], [20, 21, 22]]


def test_thousand_children():
    async def child(i):
        await sleep(i % 7)
        await checkpoint()
        return i

    async def main():
        async with TaskGroup() as tg:
            ts = [tg.spawn(child, i) for i in range(1000)]
        assert current_time() == 6
        return sum(t.result() for t in ts)

    assert vrun(main) == sum(range(1000))


def test_thousand_children_cancelled():
    async def main():
        async with TaskGroup() as tg:
            ts = [tg.spawn(sleep_forever) for _ in range(1000)]
            await sleep(1)
            tg.cancel_scope.cancel()
        assert all(t.cancelled() for t in ts)
        return current_time()

    assert vrun(main) == 1


# ------------------------------------------------------------ contextvars

var = contextvars.ContextVar("var", default="unset")


def test_tasks_run_in_copy_of_spawner_context():
    seen = {}

    async def child(name, new_value):
        seen[name] = var.get()
        await sleep(1)
        var.set(new_value)
        await sleep(1)
        seen[name + " after"] = var.get()

    async def main():
        var.set("parent-1")
        async with TaskGroup() as tg:
            tg.spawn(child, "a", "a-value")
            var.set("parent-2")  # after the first spawn
            tg.spawn(child, "b", "b-value")
            await sleep(1.5)
            seen["parent mid"] = var.get()
        seen["parent end"] = var.get()

    vrun(main)
    assert seen == {
        "a": "parent-1",
        "b": "parent-2",
        "parent mid": "parent-2",
        "a after": "a-value",
        "b after": "b-value",
        "parent end": "parent-2",
    }
    assert var.get() == "unset"


def test_grandchild_inherits_child_context():
    async def grandchild():
        return var.get()

    async def child():
        var.set("child")
        async with TaskGroup() as tg:
            t = tg.spawn(grandchild)
        return t.result()

    async def main():
        var.set("main")
        async with TaskGroup() as tg:
            t = tg.spawn(child)
        return t.result(), var.get()

    assert vrun(main) == ("child", "main")


# --------------------------------------------------------------- misc


def test_task_awaiting_itself_is_an_error():
    async def main():
        me = current_task()
        with pytest.raises(RuntimeError, match="itself"):
            await me

    vrun(main)


def test_parked_task_can_be_rescheduled_by_sibling():
    async def main():
        box = []

        async def waiter():
            box.append(current_task())
            return await park(lambda t: True, "box")

        async def waker():
            await sleep(1)
            reschedule(box[0], "woken")

        async with TaskGroup() as tg:
            t = tg.spawn(waiter)
            tg.spawn(waker)
        return t.result(), current_time()

    assert vrun(main) == ("woken", 1.0)


# ---- semantics shared with trio (anyio's test suite checks them too)


def _vrun(main):
    return yl.run(main, clock=VirtualClock())


def test_cancel_reason_and_deadline_are_in_the_message():
    async def main():
        with yl.CancelScope() as scope:
            scope.cancel("shutting down")
            msg = r"^cancelled: shutting down \(by task .*main.\)$"
            with pytest.raises(yl.Cancelled, match=msg):
                await yl.checkpoint()
        with pytest.raises(TypeError):
            scope.cancel(42)
        with yl.move_on_after(1):
            with pytest.raises(yl.Cancelled, match="deadline was exceeded"):
                await yl.sleep(5)
        with yl.CancelScope() as plain:
            plain.cancel()
            with pytest.raises(yl.Cancelled, match="^Cancelled$"):
                await yl.checkpoint()

    _vrun(main)


async def _empty_group():
    async with yl.TaskGroup():
        pass


async def _empty_gather():
    assert await gather() == []


@pytest.mark.parametrize("empty", [_empty_group, _empty_gather], ids=["TaskGroup", "gather"])
def test_an_empty_group_is_a_schedule_point_not_a_cancellation_point(empty):
    ran = []

    async def other():
        ran.append("other")

    async def main():
        async with yl.TaskGroup() as outer:
            outer.spawn(other)
            await empty()
            assert ran == ["other"]  # the empty group let it run
            with yl.CancelScope() as scope:
                scope.cancel()
                await empty()  # no Cancelled here...
                ran.append("after the empty group")
                await yl.checkpoint()  # ...but here
            assert scope.cancelled_caught

    _vrun(main)
    assert ran == ["other", "after the empty group"]


def test_a_pending_start_keeps_its_group_open():
    # The group's body ends while a task is still starting into it: the
    # group waits, started() succeeds, and the task then belongs to it.
    async def starting(task_status):
        await yl.sleep(1)
        task_status.started("ready")
        await yl.sleep(1)
        return "finished"

    async def main():
        results = []
        async with yl.TaskGroup() as outer:
            async with yl.TaskGroup() as inner:
                async def starter():
                    results.append(await inner.start(starting))

                outer.spawn(starter)
                await yl.checkpoint()  # the start() is pending now
            # inner waited for the started task to finish
            results.append(yl.current_time())
        return results

    assert _vrun(main) == ["ready", 2.0]


def test_a_groups_error_group_does_not_repeat_the_body_error_as_context():
    async def fail():
        raise KeyError("child")

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            async with yl.TaskGroup() as tg:
                tg.spawn(fail)
                raise ValueError("body")
        assert info.value.__suppress_context__
        assert {type(e) for e in info.value.exceptions} == {KeyError, ValueError}

    _vrun(main)


def test_a_filtered_group_keeps_its_context():
    body = RuntimeError("body")

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            with yl.CancelScope() as scope:
                scope.cancel()
                try:
                    raise body
                except RuntimeError as exc:
                    errors = [exc]
                    try:
                        await yl.checkpoint()
                    except yl.Cancelled as cancelled:
                        errors.append(cancelled)
                    group = BaseExceptionGroup("both", errors)
                    raise group
        assert info.value.exceptions == (body,)
        assert info.value.__context__ is body

    _vrun(main)


def test_an_exception_out_of_nested_groups_is_not_kept_alive():
    # Nothing but the catcher refers to the error once the groups are done:
    # no group keeps its task, no task the exception last thrown into it.
    class Done(Exception):
        pass

    async def main():
        inner = yl.TaskGroup()

        async def child():
            async with inner:
                raise Done

        try:
            async with yl.TaskGroup() as outer:
                outer.spawn(child)
        except BaseExceptionGroup as eg:
            exc = eg.exceptions[0].exceptions[0]
        eg = None  # noqa: F841
        assert isinstance(exc, Done)
        assert gc.get_referrers(exc) == []
        assert inner._parent_task is None

    _vrun(main)


def test_gather_raises_a_lone_error_with_its_own_cause_and_context():
    cause = KeyError("cause")

    async def fails():
        try:
            raise OSError("context")
        except OSError:
            raise ValueError("boom") from cause

    async def main():
        with pytest.raises(ValueError) as info:
            await gather(fails(), sleep(1))
        return info.value

    err = _vrun(main)
    assert err.__cause__ is cause
    assert isinstance(err.__context__, OSError)  # not the ExceptionGroup gather made


def test_gather_cancelled_waits_for_its_children_to_exit():
    exited = []

    async def child(i):
        try:
            await sleep_forever()
        finally:
            with yl.CancelScope(shield=True):
                await sleep(1)  # cleanup that takes time
            exited.append(i)

    async def main():
        with yl.move_on_after(1) as scope:
            await gather(child(0), child(1))
        assert scope.cancelled_caught
        assert sorted(exited) == [0, 1]  # gather returned only once both had exited
        return current_time()

    assert _vrun(main) == 2
