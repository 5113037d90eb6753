"""The kernel: scheduling order, the request table, park/reschedule, waiting
for file descriptors, wake-ups from other threads, stale timers and leaks."""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import yieldloop
from yieldloop import (
    Cancelled,
    CancelScope,
    RunFinishedError,
    Task,
    TaskGroup,
    checkpoint,
    current_task,
    current_time,
    move_on_after,
    sleep,
    sleep_until,
)
from yieldloop.lowlevel import (
    current_kernel,
    park,
    reschedule,
    reschedule_throw,
    wait_readable,
    wait_writable,
)
from yieldloop.testing import VirtualClock

pytestmark = pytest.mark.timeout(60)


def vrun(main: Any, *args: Any) -> Any:
    return yieldloop.run(main, *args, clock=VirtualClock())


@contextmanager
def socketpair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def abort_ok(task: Task[Any]) -> bool:
    return True


# ================================================================= ordering


def test_ready_tasks_run_in_fifo_order() -> None:
    order = []

    async def worker(name: str) -> None:
        for i in range(3):
            order.append(f"{name}{i}")
            await checkpoint()

    async def main() -> None:
        async with TaskGroup() as tg:
            for name in "abcd":
                tg.spawn(worker, name)

    vrun(main)
    assert order == [f"{n}{i}" for i in range(3) for n in "abcd"]


def test_raw_checkpoint_and_reschedule_requests_go_to_the_back_of_the_queue() -> None:
    order = []

    def worker(name: str, request: Any) -> Generator[Any, Any, None]:
        for i in range(3):
            order.append(f"{name}{i}")
            yield request

    async def main() -> None:
        async with TaskGroup() as tg:
            for name, request in (("a", None), ("b", ("checkpoint",)), ("c", ("reschedule",))):
                tg.spawn(worker, name, request)

    vrun(main)
    assert order == [f"{n}{i}" for i in range(3) for n in "abc"]


def test_sleepers_wake_in_deadline_order_ties_in_the_order_they_slept() -> None:
    woke = []
    durations = {"a": 3, "b": 1, "c": 3, "d": 2, "e": 1, "f": 3}

    async def sleeper(name: str) -> None:
        await sleep(durations[name])
        woke.append((current_time(), name))

    async def main() -> None:
        async with TaskGroup() as tg:
            for name in durations:
                tg.spawn(sleeper, name)

    vrun(main)
    assert woke == [(1.0, "b"), (1.0, "e"), (2.0, "d"), (3.0, "a"), (3.0, "c"), (3.0, "f")]


def test_equal_deadlines_reached_by_different_sleeps_wake_in_the_order_they_slept() -> None:
    woke = []

    async def sleeper(name: str, first: float, second: float) -> None:
        await sleep(first)
        await sleep(second)
        woke.append(name)

    async def main() -> None:
        async with TaskGroup() as tg:
            # all three wake at 4; "late" started its second sleep last
            tg.spawn(sleeper, "late", 3, 1)
            tg.spawn(sleeper, "early", 1, 3)
            tg.spawn(sleeper, "middle", 2, 2)

    vrun(main)
    assert woke == ["early", "middle", "late"]


def test_sleep_until_and_sleep_share_one_timeline() -> None:
    woke = []

    async def main() -> None:
        async def until(t: float) -> None:
            await sleep_until(t)
            woke.append(("until", current_time()))

        async def for_(t: float) -> None:
            await sleep(t)
            woke.append(("for", current_time()))

        async with TaskGroup() as tg:
            tg.spawn(until, 2.5)
            tg.spawn(for_, 1.5)
            tg.spawn(until, 0.5)
            tg.spawn(until, -1)  # in the past: just a checkpoint

    vrun(main)
    assert woke == [("until", 0.0), ("until", 0.5), ("for", 1.5), ("until", 2.5)]


def test_a_busy_task_does_not_starve_a_sleeper_whose_deadline_passed() -> None:
    # Real clock: the virtual clock does not move while a task is runnable.
    state = {"woke": False, "spins": 0}

    async def sleeper() -> None:
        await sleep(0.01)
        state["woke"] = True

    async def spinner() -> None:
        t0 = time.monotonic()
        while not state["woke"] and time.monotonic() - t0 < 10:
            state["spins"] += 1
            await sleep(0)

    async def main() -> None:
        async with TaskGroup() as tg:
            tg.spawn(sleeper)
            tg.spawn(spinner)

    yieldloop.run(main)
    assert state["woke"]
    assert state["spins"] > 0


def test_a_busy_task_does_not_starve_ready_io() -> None:
    state = {"got": b"", "spins": 0}

    async def main() -> None:
        with socketpair() as (a, b):

            async def reader() -> None:
                await wait_readable(a)
                state["got"] = a.recv(10)

            async def spinner() -> None:
                t0 = time.monotonic()
                while not state["got"] and time.monotonic() - t0 < 10:
                    state["spins"] += 1
                    if state["spins"] == 10:
                        b.send(b"ping")
                    await checkpoint()

            async with TaskGroup() as tg:
                tg.spawn(reader)
                tg.spawn(spinner)

    yieldloop.run(main)
    assert state["got"] == b"ping"
    assert state["spins"] >= 10


def test_two_busy_tasks_and_a_sleeper_share_the_loop() -> None:
    counts = {"x": 0, "y": 0}
    done = []

    async def spinner(name: str) -> None:
        t0 = time.monotonic()
        while not done and time.monotonic() - t0 < 10:
            counts[name] += 1
            await checkpoint()

    async def sleeper() -> None:
        await sleep(0.02)
        done.append(True)

    async def main() -> None:
        async with TaskGroup() as tg:
            tg.spawn(spinner, "x")
            tg.spawn(spinner, "y")
            tg.spawn(sleeper)

    yieldloop.run(main)
    assert done == [True]
    assert abs(counts["x"] - counts["y"]) <= 1  # strict round robin


# ================================================================= requests


def test_current_task_request() -> None:
    def gen() -> Generator[Any, Any, Any]:
        task = yield ("current_task",)
        return task, task is current_task()

    task, same = yieldloop.run(gen)
    assert same is True
    assert isinstance(task, Task)
    assert task.done()


def test_current_time_request_matches_current_time() -> None:
    def gen() -> Generator[Any, Any, Any]:
        yield ("sleep", 1.25)
        raw = yield ("current_time",)
        return raw, current_time()

    assert vrun(gen) == (1.25, 1.25)


def test_current_time_request_on_the_real_clock() -> None:
    def gen() -> Generator[Any, Any, float]:
        return (yield ("current_time",))

    before = time.monotonic()
    value = yieldloop.run(gen)
    assert before <= value <= time.monotonic()


def test_spawn_request_starts_a_task_the_run_waits_for() -> None:
    log = []

    def child(tag: str, seconds: float) -> Generator[Any, Any, str]:
        yield ("sleep", seconds)
        log.append((tag, (yield ("current_time",))))
        return tag

    def main() -> Generator[Any, Any, Any]:
        task = yield ("spawn", child, "x", 5)
        log.append(("main returns", (yield ("current_time",))))
        return task

    clock = VirtualClock()
    task = yieldloop.run(main, clock=clock)
    assert isinstance(task, Task)
    assert task.done()
    assert task.result() == "x"
    assert log == [("main returns", 0.0), ("x", 5.0)]
    assert clock.current_time() == 5.0


def test_spawn_request_accepts_coroutine_objects_and_the_task_can_be_awaited() -> None:
    async def child(x: int) -> int:
        await sleep(1)
        return x * 10

    def main() -> Generator[Any, Any, Any]:
        t1 = yield ("spawn", child(1))
        t2 = yield ("spawn", child, 2)
        return (yield from t1), (yield from t2), (yield ("current_time",))

    assert vrun(main) == (10, 20, 1.0)


def test_spawn_request_from_a_group_task_spawns_into_that_group() -> None:
    log = []

    def grandchild() -> Generator[Any, Any, None]:
        yield ("sleep", 3)
        log.append(("grandchild", (yield ("current_time",))))

    def child() -> Generator[Any, Any, None]:
        yield ("spawn", grandchild)
        log.append(("child", (yield ("current_time",))))

    async def main() -> None:
        async with TaskGroup() as tg:
            tg.spawn(child)
        log.append(("group exited", current_time()))

    vrun(main)
    assert log == [("child", 0.0), ("grandchild", 3.0), ("group exited", 3.0)]


def test_error_in_a_task_spawned_beside_main_cancels_main_and_is_raised() -> None:
    log = []

    def failing() -> Generator[Any, Any, None]:
        yield ("sleep", 2)
        raise ValueError("beside")

    def main() -> Generator[Any, Any, None]:
        yield ("spawn", failing)
        try:
            yield ("sleep", 100)
        except Cancelled:
            log.append(("main cancelled", (yield ("current_time",))))
            raise

    with pytest.raises(ExceptionGroup) as excinfo:
        vrun(main)
    assert [type(e) for e in excinfo.value.exceptions] == [ValueError]
    assert str(excinfo.value.exceptions[0]) == "beside"
    assert log == [("main cancelled", 2.0)]


def test_errors_in_main_and_beside_main_are_raised_together() -> None:
    def failing() -> Generator[Any, Any, None]:
        yield ("sleep", 1)
        raise ValueError("beside")

    def main() -> Generator[Any, Any, None]:
        yield ("spawn", failing)
        try:
            yield ("sleep", 100)
        finally:
            raise KeyError("main")

    with pytest.raises(ExceptionGroup) as excinfo:
        vrun(main)
    assert [type(e) for e in excinfo.value.exceptions] == [KeyError, ValueError]


def test_main_failing_cancels_the_tasks_spawned_beside_it() -> None:
    log = []

    def sleeper() -> Generator[Any, Any, None]:
        try:
            yield ("sleep", 100)
        finally:
            log.append("sleeper finally")

    def main() -> Generator[Any, Any, None]:
        yield ("spawn", sleeper)
        yield ("sleep", 1)
        raise LookupError("main")

    with pytest.raises(LookupError, match="main"):
        vrun(main)
    assert log == ["sleeper finally"]


def test_reschedule_request_is_not_a_cancel_point_but_a_checkpoint_is() -> None:
    log = []

    def other() -> Generator[Any, Any, None]:
        log.append("other ran")
        yield None

    def gen() -> Generator[Any, Any, Any]:
        yield ("spawn", other)
        with CancelScope() as scope:
            scope.cancel()
            for _ in range(3):
                yield ("reschedule",)
            log.append("survived reschedules")
            yield ("sleep", 0)
            log.append("not reached")
        return scope.cancelled_caught

    assert vrun(gen) is True
    assert log == ["other ran", "survived reschedules"]


def test_sleep_inside_a_cancelled_scope_raises_at_once() -> None:
    def gen() -> Generator[Any, Any, Any]:
        with CancelScope() as scope:
            scope.cancel()
            yield ("sleep", 10)
        return scope.cancelled_caught, (yield ("current_time",))

    assert vrun(gen) == (True, 0.0)


# ===================================================== park and reschedule


def test_park_returns_the_value_given_to_reschedule() -> None:
    log = []

    async def main() -> None:
        me = current_task()

        async def waker() -> None:
            await sleep(2)
            log.append(repr(me))
            reschedule(me, "hello")

        async with TaskGroup() as tg:
            tg.spawn(waker)
            value = await park(abort_ok, "waiting for hello")
            log.append((value, current_time()))

    vrun(main)
    assert "waiting" in log[0]
    assert "waiting for hello" in log[0]
    assert log[1] == ("hello", 2.0)


def test_park_with_raw_request_from_a_generator() -> None:
    def gen() -> Generator[Any, Any, Any]:
        me = yield ("current_task",)

        def waker() -> Generator[Any, Any, None]:
            yield ("sleep", 1)
            reschedule(me, 42)

        yield ("spawn", waker)
        value = yield ("park", abort_ok)
        return value, (yield ("current_time",))

    assert vrun(gen) == (42, 1.0)


def test_reschedule_throw_raises_in_the_parked_task() -> None:
    async def main() -> str:
        me = current_task()

        async def waker() -> None:
            await sleep(1)
            reschedule_throw(me, KeyError("thrown"))

        async with TaskGroup() as tg:
            tg.spawn(waker)
            try:
                await park(abort_ok)
            except KeyError as exc:
                return f"{exc.args[0]} at {current_time()}"
        return "not thrown"

    assert vrun(main) == "thrown at 1.0"


def test_reschedule_a_task_that_is_not_parked() -> None:
    async def main() -> None:
        me = current_task()
        with pytest.raises(RuntimeError, match="not parked"):
            reschedule(me)
        with pytest.raises(RuntimeError, match="not parked"):
            reschedule_throw(me, ValueError())

        async def sleeper() -> None:
            await sleep(5)

        async with TaskGroup() as tg:
            t = tg.spawn(sleeper)
            with pytest.raises(RuntimeError, match="not parked"):
                reschedule(t)  # spawned, not yet run: runnable, not parked
            await sleep(1)
            assert not t.done()
        with pytest.raises(RuntimeError, match="not parked"):
            reschedule(t)  # finished

    vrun(main)


def test_reschedule_twice_is_refused() -> None:
    async def main() -> Any:
        me = current_task()

        async def waker() -> None:
            reschedule(me, 1)
            with pytest.raises(RuntimeError, match="not parked"):
                reschedule(me, 2)

        async with TaskGroup() as tg:
            tg.spawn(waker)
            return await park(abort_ok)

    assert vrun(main) == 1


def test_reschedule_a_task_of_a_finished_run() -> None:
    box = {}

    async def first() -> None:
        box["task"] = current_task()

    yieldloop.run(first)

    async def second() -> None:
        with pytest.raises(RunFinishedError):
            reschedule(box["task"])

    yieldloop.run(second)
    with pytest.raises(RunFinishedError):
        reschedule(box["task"])


def test_park_cancelled_with_abort_true_raises_cancelled() -> None:
    aborted = []

    def abort(task: Task[Any]) -> bool:
        aborted.append((task.name, current_time()))
        return True

    async def parker() -> None:
        await park(abort)

    async def main() -> None:
        with move_on_after(3) as scope:
            await parker()
        assert scope.cancelled_caught

    vrun(main)
    assert len(aborted) == 1
    assert aborted[0][1] == 3.0


def test_park_cancelled_with_abort_false_keeps_waiting_until_rescheduled() -> None:
    log = []

    async def main() -> None:
        me = current_task()

        def abort(task: Task[Any]) -> bool:
            log.append(("abort", current_time()))
            return False

        async def waker() -> None:
            with CancelScope(shield=True):
                await sleep(5)
            log.append(("wake", current_time()))
            reschedule(me, "late value")

        async with TaskGroup() as tg:
            tg.spawn(waker)
            with move_on_after(2) as scope:
                value = await park(abort)
                log.append(("park returned", value, current_time()))
                await checkpoint()  # level-triggered: raises now
                log.append(("not reached",))
            log.append(("caught", scope.cancelled_caught))

    vrun(main)
    assert log == [
        ("abort", 2.0),
        ("wake", 5.0),
        ("park returned", "late value", 5.0),
        ("caught", True),
    ]


def test_abort_function_that_raises_delivers_the_error_to_the_task() -> None:
    def abort(task: Task[Any]) -> bool:
        raise OSError("abort failed")

    async def main() -> str:
        with move_on_after(1):
            try:
                await park(abort)
            except OSError as exc:
                return f"{exc} at {current_time()}"
        return "no error"

    assert vrun(main) == "abort failed at 1.0"


def test_abort_function_may_reschedule_the_task_itself() -> None:
    async def main() -> Any:
        def abort(task: Task[Any]) -> bool:
            reschedule(task, "rescheduled by abort")
            return False

        with move_on_after(1) as scope:
            value = await park(abort)
        return value, scope.cancelled_caught, current_time()

    assert vrun(main) == ("rescheduled by abort", False, 1.0)


# ====================================================================== I/O


def test_wait_readable_wakes_when_data_arrives() -> None:
    async def main() -> Any:
        with socketpair() as (a, b):

            async def writer() -> None:
                await sleep(0.05)
                b.send(b"data")

            async with TaskGroup() as tg:
                tg.spawn(writer)
                t0 = time.monotonic()
                with move_on_after(10) as guard:
                    await wait_readable(a)
                elapsed = time.monotonic() - t0
            return a.recv(10), guard.cancelled_caught, elapsed

    data, timed_out, elapsed = yieldloop.run(main)
    assert data == b"data"
    assert not timed_out
    assert elapsed >= 0.04


def test_wait_readable_with_data_already_there_returns_at_once() -> None:
    async def main() -> bytes:
        with socketpair() as (a, b):
            b.send(b"x")
            for _ in range(3):  # the registration is kept and reused
                await wait_readable(a)
            return a.recv(10)

    assert yieldloop.run(main) == b"x"


def test_wait_readable_accepts_an_int_fd_or_an_object_with_fileno() -> None:
    class HasFileno:
        def __init__(self, fd: int) -> None:
            self.fd = fd

        def fileno(self) -> int:
            return self.fd

    async def main() -> list[bytes]:
        got = []
        with socketpair() as (a, b):
            for target in (a, a.fileno(), HasFileno(a.fileno())):
                b.send(b"!")
                await wait_readable(target)
                got.append(a.recv(10))
        return got

    assert yieldloop.run(main) == [b"!", b"!", b"!"]


def test_wait_readable_on_a_virtual_clock() -> None:
    async def main() -> Any:
        with socketpair() as (a, b):

            async def writer() -> None:
                await sleep(100)
                b.send(b"later")

            async with TaskGroup() as tg:
                tg.spawn(writer)
                await wait_readable(a)
                return a.recv(10), current_time()

    assert vrun(main) == (b"later", 100.0)


def test_wait_readable_wakes_on_peer_close() -> None:
    async def main() -> bytes:
        with socketpair() as (a, b):

            async def closer() -> None:
                await sleep(0.02)
                b.close()

            async with TaskGroup() as tg:
                tg.spawn(closer)
                with move_on_after(10):
                    await wait_readable(a)
                return a.recv(10)

    assert yieldloop.run(main) == b""


def test_wait_writable_wakes_when_the_buffer_drains() -> None:
    async def main() -> Any:
        with socketpair() as (a, b):
            sent = 0
            try:
                while True:
                    sent += a.send(b"x" * 65536)
            except BlockingIOError:
                pass

            async def drainer() -> None:
                await sleep(0.05)
                got = 0
                while got < sent:
                    try:
                        got += len(b.recv(1 << 20))
                    except BlockingIOError:
                        await wait_readable(b)

            async with TaskGroup() as tg:
                tg.spawn(drainer)
                with move_on_after(10) as guard:
                    await wait_writable(a)
                return a.send(b"more"), guard.cancelled_caught

    sent, timed_out = yieldloop.run(main)
    assert sent == 4
    assert not timed_out


def test_reader_and_writer_of_one_fd_are_woken_separately() -> None:
    log = []

    async def main() -> None:
        with socketpair() as (a, b):

            async def reader() -> None:
                await wait_readable(a)
                log.append(("read", a.recv(10)))

            async def writer() -> None:
                await wait_writable(a)  # writable at once
                log.append(("writable", None))
                await sleep(0.05)
                b.send(b"hi")

            with move_on_after(10) as guard:
                async with TaskGroup() as tg:
                    tg.spawn(reader)
                    tg.spawn(writer)
            log.append(("timed out", guard.cancelled_caught))

    yieldloop.run(main)
    assert log == [("writable", None), ("read", b"hi"), ("timed out", False)]


def test_two_tasks_waiting_to_read_the_same_fd() -> None:
    log = []

    async def main() -> None:
        with socketpair() as (a, b):

            async def first() -> None:
                await wait_readable(a)
                log.append(("first woke", a.recv(10)))

            async def second() -> None:
                with pytest.raises(RuntimeError, match="already waiting") as excinfo:
                    await wait_readable(a)
                log.append(("second refused", "'first'" in str(excinfo.value)))
                b.send(b"go")

            with move_on_after(10) as guard:
                async with TaskGroup() as tg:
                    tg.spawn(first, name="first")
                    tg.spawn(second)
            assert not guard.cancelled_caught

            # after the first waiter woke, the fd is free for another one
            b.send(b"again")
            with move_on_after(10) as guard:
                await wait_readable(a)
            assert not guard.cancelled_caught
            log.append(("again", a.recv(10)))

    yieldloop.run(main)
    assert log == [("second refused", True), ("first woke", b"go"), ("again", b"again")]


def test_two_tasks_waiting_to_write_the_same_fd() -> None:
    async def main() -> None:
        with socketpair() as (a, b):
            try:
                while True:
                    a.send(b"x" * 65536)
            except BlockingIOError:
                pass

            async def other() -> None:
                with pytest.raises(RuntimeError, match="already waiting"):
                    await wait_writable(a)

            async with TaskGroup() as tg:
                with move_on_after(0.05):
                    tg.spawn(other)
                    await wait_writable(a)

    yieldloop.run(main)


def test_cancelled_waiter_unregisters_so_a_later_wait_works() -> None:
    async def main() -> Any:
        with socketpair() as (a, b):
            with move_on_after(0.02) as first:
                await wait_readable(a)

            async def other_waiter() -> bytes:
                with move_on_after(10):
                    await wait_readable(a)
                return a.recv(10)

            async def writer() -> None:
                await sleep(0.02)
                b.send(b"after")

            async with TaskGroup() as tg:
                task = tg.spawn(other_waiter)
                tg.spawn(writer)
            return first.cancelled_caught, task.result()

    assert yieldloop.run(main) == (True, b"after")


def test_waiter_cancelled_by_task_cancel_frees_the_fd() -> None:
    async def main() -> Any:
        with socketpair() as (a, b):

            async def waiter() -> None:
                await wait_readable(a)

            async with TaskGroup() as tg:
                t = tg.spawn(waiter)
                await sleep(1)
                t.cancel()
            b.send(b"z")
            await wait_readable(a)
            return t.cancelled(), a.recv(10)

    assert vrun(main) == (True, b"z")


def test_wait_in_a_cancelled_scope_raises_and_registers_nothing() -> None:
    async def main() -> Any:
        with socketpair() as (a, b):
            with CancelScope() as scope:
                scope.cancel()
                await wait_readable(a)
            b.send(b"ok")
            with move_on_after(10):
                await wait_readable(a)
            return scope.cancelled_caught, a.recv(10)

    assert yieldloop.run(main) == (True, b"ok")


@pytest.mark.parametrize(
    ("fd", "exc_type"),
    [
        pytest.param("x", TypeError, id="str"),
        pytest.param(None, TypeError, id="none"),
        pytest.param(1.5, TypeError, id="float"),
        pytest.param(-1, ValueError, id="negative"),
        pytest.param(True, ValueError, id="bool"),
    ],
)
@pytest.mark.parametrize("wait", [wait_readable, wait_writable])
def test_bad_fd(wait: Any, fd: Any, exc_type: type[Exception]) -> None:
    async def main() -> float:
        with pytest.raises(exc_type):
            await wait(fd)
        await sleep(1)  # the task goes on
        return current_time()

    assert vrun(main) == 1.0


def closed_fd_number() -> int:
    fd = 900
    while True:
        try:
            os.fstat(fd)
        except OSError:
            return fd
        fd += 1


def test_fd_that_is_not_open_raises_oserror_and_leaves_no_registration() -> None:
    fd = closed_fd_number()

    async def main() -> float:
        for _ in range(2):  # the second try must fail the same way, not as "busy"
            with pytest.raises(OSError) as excinfo:
                await wait_readable(fd)
            assert not isinstance(excinfo.value, RuntimeError)
        with pytest.raises(OSError):
            await wait_writable(fd)
        await sleep(1)
        return current_time()

    assert vrun(main) == 1.0


def test_closed_socket_object_is_a_bad_fd() -> None:
    async def main() -> None:
        s, t = socket.socketpair()
        s.close()
        t.close()
        with pytest.raises(ValueError):
            await wait_readable(s)  # fileno() of a closed socket is -1

    yieldloop.run(main)


def test_wait_on_a_descriptor_number_reused_after_close() -> None:
    async def main() -> Any:
        a, b = socket.socketpair()
        b.send(b"1")
        await wait_readable(a)
        assert a.recv(10) == b"1"
        old_fd = a.fileno()
        a.close()
        b.close()
        with socketpair() as (c, d):
            if c.fileno() != old_fd:  # pragma: no cover - the OS reuses the lowest free fd
                pytest.skip("descriptor number was not reused")
            d.send(b"2")
            with move_on_after(5) as guard:
                await wait_readable(c)
            return guard.cancelled_caught, c.recv(10)

    assert yieldloop.run(main) == (False, b"2")


# ============================================================ other threads


def test_call_soon_threadsafe_wakes_a_loop_blocked_in_a_long_sleep() -> None:
    async def main() -> Any:
        kernel = current_kernel()
        me = current_task()
        where = []

        def wake() -> None:
            where.append(threading.current_thread())
            reschedule(me, "from thread")

        def thread_body() -> None:
            time.sleep(0.1)
            kernel.call_soon_threadsafe(wake)

        thread = threading.Thread(target=thread_body)
        t0 = time.monotonic()
        thread.start()
        try:
            with move_on_after(30) as guard:
                value = await park(abort_ok)
        finally:
            thread.join()
        return value, guard.cancelled_caught, time.monotonic() - t0, where

    value, timed_out, elapsed, where = yieldloop.run(main)
    assert value == "from thread"
    assert not timed_out
    assert elapsed < 10
    assert where == [threading.main_thread()]


def test_call_soon_threadsafe_can_cancel_a_long_sleep() -> None:
    async def main() -> Any:
        kernel = current_kernel()
        with CancelScope() as scope:
            timer = threading.Timer(0.05, kernel.call_soon_threadsafe, (scope.cancel,))
            timer.start()
            try:
                await sleep(600)
            finally:
                timer.join()
        return scope.cancelled_caught

    t0 = time.monotonic()
    assert yieldloop.run(main) is True
    assert time.monotonic() - t0 < 10


def test_call_soon_threadsafe_callbacks_run_in_order_with_their_arguments() -> None:
    async def main() -> list[int]:
        kernel = current_kernel()
        me = current_task()
        got: list[int] = []

        def thread_body() -> None:
            for i in range(200):
                kernel.call_soon_threadsafe(got.append, i)
            kernel.call_soon_threadsafe(reschedule, me)

        thread = threading.Thread(target=thread_body)
        thread.start()
        try:
            with move_on_after(30):
                await park(abort_ok)
        finally:
            thread.join()
        return got

    assert yieldloop.run(main) == list(range(200))


def test_call_soon_threadsafe_from_the_loop_thread_itself() -> None:
    async def main() -> list[str]:
        log = []
        current_kernel().call_soon_threadsafe(log.append, "called")
        await sleep(0)
        await sleep(0)
        return log

    assert yieldloop.run(main) == ["called"]


def test_error_in_a_threadsafe_callback_ends_the_run(caplog: pytest.LogCaptureFixture) -> None:
    err = ValueError("callback failed")
    log = []

    def bad_callback() -> None:
        raise err

    async def main() -> None:
        kernel = current_kernel()
        thread = threading.Thread(
            target=lambda: (time.sleep(0.05), kernel.call_soon_threadsafe(bad_callback))
        )
        thread.start()
        try:
            await sleep(600)
        except Cancelled:
            log.append("main cancelled")
            raise
        finally:
            thread.join()

    t0 = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="yieldloop"):
        with pytest.raises(ValueError) as excinfo:
            yieldloop.run(main)
    assert excinfo.value is err
    assert time.monotonic() - t0 < 10
    assert log == ["main cancelled"]
    assert "callback failed" in caplog.text


# ============================================================= stale timers


def test_many_short_lived_timeouts_keep_the_timer_heap_bounded() -> None:
    async def main() -> int:
        kernel = current_kernel()
        biggest = 0
        for _ in range(10_000):
            with move_on_after(100):
                await sleep(0)
            biggest = max(biggest, len(kernel.timers))
        return biggest

    assert vrun(main) < 300


def test_many_cancelled_sleeps_keep_the_timer_heap_bounded() -> None:
    async def main() -> int:
        kernel = current_kernel()
        biggest = 0
        for _ in range(100):
            async with TaskGroup() as tg:
                for _ in range(100):
                    tg.spawn(sleep, 1000)
                await sleep(0)
                biggest = max(biggest, len(kernel.timers))
                tg.cancel_scope.cancel()
            await sleep(0)
            biggest = max(biggest, len(kernel.timers))
        return biggest

    assert vrun(main) < 500


def test_moving_a_deadline_many_times_keeps_the_timer_heap_bounded() -> None:
    async def main() -> Any:
        kernel = current_kernel()
        biggest = 0
        with CancelScope() as scope:
            for i in range(10_000):
                scope.deadline = 1000 + i
                await sleep(0)
                biggest = max(biggest, len(kernel.timers))
        return biggest, scope.cancelled_caught

    biggest, caught = vrun(main)
    assert biggest < 300
    assert caught is False


def test_stale_timers_do_not_fire_or_delay_live_ones() -> None:
    async def main() -> list[float]:
        woke = []
        for _ in range(500):
            with move_on_after(5):
                await sleep(0)
        # the 500 stale deadlines at t=5 must not cancel this one
        with move_on_after(20) as scope:
            await sleep(10)
            woke.append(current_time())
        assert not scope.cancelled_caught
        await sleep(1)
        woke.append(current_time())
        return woke

    assert vrun(main) == [10.0, 11.0]


def test_live_timers_survive_compaction() -> None:
    async def main() -> list[tuple[int, float]]:
        woke: list[tuple[int, float]] = []

        async def sleeper(i: int) -> None:
            await sleep(1000 + i)
            woke.append((i, current_time()))

        async with TaskGroup() as tg:
            for i in range(50):
                tg.spawn(sleeper, i)
            for _ in range(5_000):  # plenty of stale entries meanwhile
                with move_on_after(1):
                    await sleep(0)
        return woke

    assert vrun(main) == [(i, 1000.0 + i) for i in range(50)]


# ==================================================================== leaks


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_runs_leak_no_fds_and_no_threads() -> None:
    async def with_io() -> None:
        with socketpair() as (a, b):
            b.send(b"x")
            await wait_readable(a)
            await wait_writable(a)

    async def failing() -> None:
        await sleep(0)
        raise ValueError

    async def interrupted_wait() -> None:
        with socketpair() as (a, _b), move_on_after(0.001):
            await wait_readable(a)

    before_fds = open_fds()
    before_threads = threading.active_count()
    for i in range(50):
        yieldloop.run(with_io)
        yieldloop.run(interrupted_wait)
        with pytest.raises(ValueError):
            yieldloop.run(failing)
        if i % 2:
            yieldloop.run(sleep, 1, clock=VirtualClock())
        else:
            yieldloop.run(sleep, 0)
    assert open_fds() == before_fds
    assert threading.active_count() == before_threads


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_bad_arguments_to_run_leak_no_fds() -> None:
    before = open_fds()
    for _ in range(20):
        with pytest.raises(TypeError):
            yieldloop.run(42)
        with pytest.raises(TypeError):
            yieldloop.run(sleep, 1, clock="nope")  # type: ignore[arg-type]
    assert open_fds() == before


def test_infinite_sleep_is_woken_by_cancel_only() -> None:
    async def main() -> Any:
        with move_on_after(7) as scope:
            await sleep(math.inf)
        return scope.cancelled_caught, current_time()

    assert vrun(main) == (True, 7.0)
