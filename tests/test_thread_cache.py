"""The pool of worker threads behind to_thread: reuse, idle timeout, shutdown
at the end of the run. Real threads, no mocks."""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Any

import pytest
from _leaks import no_leaks

import yieldloop
from yieldloop import CapacityLimiter, TaskGroup, move_on_after
from yieldloop._os import _threads, from_thread_run, from_thread_run_sync, to_thread

pytestmark = pytest.mark.timeout(60)

WAIT = 30  # threading waits that must never time out in practice


def here() -> threading.Thread:
    return threading.current_thread()


def test_sequential_calls_share_one_thread() -> None:
    async def main() -> list[threading.Thread]:
        return [await to_thread(here) for _ in range(50)]

    with no_leaks(settle=0):  # the pool's threads are joined by the end of run()
        threads = yieldloop.run(main)
    assert len(set(threads)) == 1
    assert threads[0] is not threading.main_thread()
    assert threads[0].daemon
    assert not threads[0].is_alive()


def test_same_ident_for_sequential_calls() -> None:
    async def main() -> tuple[int, int]:
        first = await to_thread(threading.get_ident)
        second = await to_thread(threading.get_ident)
        return first, second

    first, second = yieldloop.run(main)
    assert first == second != threading.get_ident()


def test_concurrent_calls_use_different_threads() -> None:
    barrier = threading.Barrier(3, timeout=WAIT)  # deadlocks unless 3 threads run at once

    def meet() -> threading.Thread:
        barrier.wait()
        return here()

    async def main() -> list[threading.Thread]:
        out: list[threading.Thread] = []

        async def one() -> None:
            out.append(await to_thread(meet))

        async with TaskGroup() as tg:
            for _ in range(3):
                tg.spawn(one)
        # Now three idle threads: three more concurrent calls reuse them.
        again: list[threading.Thread] = []

        async def two() -> None:
            again.append(await to_thread(meet))

        barrier.reset()
        async with TaskGroup() as tg:
            for _ in range(3):
                tg.spawn(two)
        assert set(again) == set(out)
        return out

    with no_leaks(settle=0):
        threads = yieldloop.run(main)
    assert len(set(threads)) == 3


def test_an_exception_does_not_kill_the_worker() -> None:
    def fail(exc: BaseException) -> None:
        raise exc

    async def main() -> list[threading.Thread]:
        seen = [await to_thread(here)]
        with pytest.raises(ValueError, match="boom"):
            await to_thread(fail, ValueError("boom"))
        seen.append(await to_thread(here))
        with pytest.raises(KeyboardInterrupt):  # a BaseException crosses too
            await to_thread(fail, KeyboardInterrupt())
        seen.append(await to_thread(here))
        return seen

    with no_leaks(settle=0):
        threads = yieldloop.run(main)
    assert threads[0] is threads[1] is threads[2]


def test_from_thread_works_from_a_reused_worker() -> None:
    async def double_later(x: int) -> int:
        await yieldloop.sleep(0.001)
        return 2 * x

    def call_back() -> tuple[threading.Thread, str, int]:
        name = from_thread_run_sync(lambda: yieldloop.current_task().name)
        return here(), name, from_thread_run(double_later, 21)

    async def main() -> list[tuple[threading.Thread, str, int]]:
        results: list[tuple[threading.Thread, str, int]] = []

        async def caller() -> None:
            results.append(await to_thread(call_back))

        # One task after the other: the second job runs on the thread of the
        # first, and its calls back go to the second task, not the first.
        async with TaskGroup() as tg:
            tg.spawn(caller, name="first")
        async with TaskGroup() as tg:
            tg.spawn(caller, name="second")
        return results

    with no_leaks(settle=0):
        (t1, name1, x1), (t2, name2, x2) = yieldloop.run(main)
    assert t1 is t2
    assert (name1, name2) == ("first", "second")
    assert x1 == x2 == 42


def test_from_thread_between_jobs_is_refused() -> None:
    # The thread-local that ties a worker to its job is cleared after each
    # job: a function left running by the job (a thread of its own that
    # calls back later) cannot reach the loop through a finished job.
    errors: list[BaseException] = []

    def leave_a_thread_behind() -> threading.Thread:
        def later() -> None:
            try:
                from_thread_run_sync(print)
            except RuntimeError as exc:
                errors.append(exc)

        t = threading.Thread(target=later)
        t.start()
        return t

    async def main() -> None:
        t = await to_thread(leave_a_thread_behind)
        t.join(WAIT)

    yieldloop.run(main)
    assert len(errors) == 1 and "to_thread" in str(errors[0])


def test_context_does_not_leak_between_jobs() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    local = threading.local()

    def set_var() -> threading.Thread:
        var.set("set in the first job")
        local.value = "kept by the thread"
        return here()

    def read_var() -> tuple[threading.Thread, str, str]:
        return here(), var.get(), getattr(local, "value", "none")

    async def main() -> Any:
        first = await to_thread(set_var)
        return first, await to_thread(read_var)

    first, (second, value, thread_local) = yieldloop.run(main)
    assert first is second
    assert value == "unset"  # every job runs in a copy of its task's context
    assert thread_local == "kept by the thread"  # as in any thread pool


def test_an_abandoned_thread_gets_no_second_job() -> None:
    release = threading.Event()
    finished = threading.Event()

    def stuck() -> threading.Thread:
        release.wait(WAIT)
        finished.set()
        return here()

    async def main() -> tuple[list[threading.Thread], threading.Thread, threading.Thread]:
        box: list[threading.Thread] = []

        def record_then_stick() -> threading.Thread:
            box.append(here())
            return stuck()

        with move_on_after(0.05) as scope:
            await to_thread(record_then_stick, abandon_on_cancel=True)
        assert scope.cancelled_caught
        abandoned = box[0]
        # While it runs, the abandoned thread is not idle: other jobs go elsewhere.
        others = [await to_thread(here) for _ in range(20)]
        assert abandoned not in others
        assert not finished.is_set()
        release.set()
        # Once its function returned, the thread is back in the pool.
        while not finished.is_set():
            await yieldloop.sleep(0.01)
        await yieldloop.sleep(0.05)
        limiter = CapacityLimiter(2)
        pair = threading.Barrier(2, timeout=WAIT)

        def meet() -> threading.Thread:
            pair.wait()
            return here()

        got: list[threading.Thread] = []

        async def one() -> None:
            got.append(await to_thread(meet, limiter=limiter))

        async with TaskGroup() as tg:
            tg.spawn(one)
            tg.spawn(one)
        return others, abandoned, got[0] if got[0] is abandoned else got[1]

    with no_leaks(settle=0):
        others, abandoned, reused = yieldloop.run(main)
    assert len(set(others)) == 1
    assert reused is abandoned  # two idle threads, two concurrent jobs: both used


def test_abandoned_job_running_at_the_end_of_the_run() -> None:
    release = threading.Event()
    threads: list[threading.Thread] = []

    def stuck() -> None:
        threads.append(here())
        release.wait(WAIT)

    async def main() -> threading.Thread:
        with move_on_after(0.05):
            await to_thread(stuck, abandon_on_cancel=True)
        return await to_thread(here)  # another thread, idle at the end: joined

    with pytest.warns(ResourceWarning, match="abandoned"):
        idle = yieldloop.run(main)
    assert not idle.is_alive()
    assert threads[0] is not idle and threads[0].is_alive()
    with no_leaks():  # it exits once its function returns; it is not kept
        release.set()
        threads[0].join(WAIT)
    assert not threads[0].is_alive()


def test_idle_threads_exit_after_the_idle_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_threads, "IDLE_TIMEOUT", 0.05)

    async def main() -> tuple[threading.Thread, threading.Thread, threading.Thread]:
        first = await to_thread(here)
        second = await to_thread(here)  # at once: the same thread
        deadline = yieldloop.current_time() + WAIT
        while first.is_alive() and yieldloop.current_time() < deadline:
            await yieldloop.sleep(0.01)
        assert not first.is_alive()  # it timed out and exited on its own
        third = await to_thread(here)
        return first, second, third

    with no_leaks(settle=0):
        first, second, third = yieldloop.run(main)
    assert first is second
    assert third is not first


def test_idle_timeout_zero_starts_a_thread_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_threads, "IDLE_TIMEOUT", 0)

    async def main() -> list[threading.Thread]:
        threads = []
        for _ in range(5):
            t = await to_thread(here)
            assert not t.is_alive()  # joined before to_thread returned
            threads.append(t)
        return threads

    with no_leaks(settle=0):
        threads = yieldloop.run(main)
    assert len(set(threads)) == 5


def test_each_run_has_its_own_pool() -> None:
    async def main() -> threading.Thread:
        return await to_thread(here)

    with no_leaks(settle=0):
        a = yieldloop.run(main)
        b = yieldloop.run(main)
    assert a is not b
    assert not a.is_alive() and not b.is_alive()


def test_failing_run_still_joins_idle_threads() -> None:
    async def main() -> None:
        await to_thread(here)
        raise ZeroDivisionError

    with no_leaks(settle=0), pytest.raises(ZeroDivisionError):
        yieldloop.run(main)


def test_threads_never_exceed_the_limiter() -> None:
    lock = threading.Lock()
    running = 0
    peak = 0

    def work(i: int) -> tuple[int, threading.Thread]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.001)
        with lock:
            running -= 1
        return i, here()

    async def main() -> set[threading.Thread]:
        limiter = CapacityLimiter(4)
        used: set[threading.Thread] = set()

        async def worker(k: int) -> None:
            for j in range(25):
                i, t = await to_thread(work, k * 100 + j, limiter=limiter)
                assert i == k * 100 + j
                used.add(t)

        async with TaskGroup() as tg:
            for k in range(10):
                tg.spawn(worker, k)
        return used

    with no_leaks(settle=0):
        used = yieldloop.run(main)
    assert 1 <= peak <= 4
    # A thread is back in the pool before its job's token is returned, so a
    # job that got a token always finds a thread: never more than 4 for 250 calls.
    assert 1 <= len(used) <= 4
