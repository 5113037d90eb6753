"""to_thread, the default thread limiter, from_thread_run(_sync): real threads."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Generator
from typing import Any

import pytest

import yieldloop
from yieldloop import Cancelled, CapacityLimiter, Event, TaskGroup, move_on_after
from yieldloop._os import (
    current_default_thread_limiter,
    from_thread,
    from_thread_run,
    from_thread_run_sync,
    to_thread,
)
from yieldloop.lowlevel import current_kernel

WAIT = 30  # generous: threading.Event waits that must never time out in practice


@pytest.fixture(autouse=True)
def no_thread_leak() -> Generator[None, None, None]:
    before = threading.active_count()
    yield
    deadline = time.monotonic() + WAIT
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


def test_result_and_exception_cross() -> None:
    async def main() -> Any:
        value = await to_thread(lambda a, b: (a + b, threading.get_ident()), 1, 2)
        with pytest.raises(ZeroDivisionError):
            await to_thread(lambda: 1 / 0)
        return value

    before = threading.active_count()
    (total, ident) = yieldloop.run(main)
    assert total == 3
    assert ident != threading.get_ident()
    assert threading.active_count() == before  # every worker was joined by run()'s end


def test_base_exception_from_thread_propagates() -> None:
    def boom() -> None:
        raise KeyboardInterrupt

    async def main() -> None:
        await to_thread(boom)

    with pytest.raises(KeyboardInterrupt):
        yieldloop.run(main)


def test_yield_from_style() -> None:
    def main() -> Generator[Any, Any, Any]:
        x = yield from to_thread(pow, 2, 10)
        yield ("sleep", 0)
        return x

    assert yieldloop.run(main) == 1024


def test_context_is_copied_into_thread() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main() -> str:
        var.set("from task")
        return await to_thread(var.get)

    assert yieldloop.run(main) == "from task"


def test_not_callable() -> None:
    async def main() -> None:
        await to_thread(42)  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="function"):
        yieldloop.run(main)


def test_default_limiter_per_run() -> None:
    seen: list[CapacityLimiter] = []

    async def main() -> None:
        limiter = current_default_thread_limiter()
        assert limiter is current_default_thread_limiter()
        assert limiter.total == 40
        seen.append(limiter)
        assert await to_thread(lambda: limiter.borrowed_tokens) == 1
        assert limiter.borrowed_tokens == 0

    yieldloop.run(main)
    yieldloop.run(main)
    assert seen[0] is not seen[1]


@pytest.mark.parametrize("use_default", [False, True])
def test_limiter_respected(use_default: bool) -> None:
    lock = threading.Lock()
    running = 0
    peak = 0

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    async def main() -> None:
        limiter: CapacityLimiter | None = None
        if use_default:
            current_default_thread_limiter().total = 3
        else:
            limiter = CapacityLimiter(3)
        async with TaskGroup() as tg:
            for _ in range(12):
                tg.spawn(lambda: to_thread(work, limiter=limiter))

    yieldloop.run(main)
    assert 1 <= peak <= 3


def test_cancel_waits_for_thread_by_default() -> None:
    release = threading.Event()
    finished = threading.Event()
    order: list[str] = []

    def work() -> str:
        release.wait(WAIT)
        finished.set()
        return "result"

    async def main() -> None:
        scope = yieldloop.CancelScope()

        async def caller() -> None:
            with scope:
                # The thread's result comes back (we only get it after the
                # thread finished); the Cancelled at the next checkpoint.
                order.append(await to_thread(work))
                assert finished.is_set()
                try:
                    await yieldloop.checkpoint()
                except Cancelled:
                    order.append("cancelled")
                    raise
                pytest.fail("not cancelled")  # pragma: no cover
            assert scope.cancelled_caught

        async with TaskGroup() as tg:
            tg.spawn(caller)
            await yieldloop.sleep(0.02)
            scope.cancel()
            await yieldloop.sleep(0.05)
            assert order == []  # still waiting for the thread
            release.set()
        assert order == ["result", "cancelled"]

    yieldloop.run(main)


def test_cancel_keeps_exception_of_thread() -> None:
    started = threading.Event()

    def work() -> None:
        started.wait(WAIT)
        raise ValueError("from the thread")

    async def main() -> None:
        async with TaskGroup() as tg:
            tg.spawn(lambda: to_thread(work))
            await yieldloop.sleep(0.05)
            tg.cancel_scope.cancel()
            started.set()

    with pytest.raises(ExceptionGroup) as info:
        yieldloop.run(main)
    assert info.group_contains(ValueError)


def test_abandon_on_cancel() -> None:
    release = threading.Event()
    finished = threading.Event()
    threads: list[threading.Thread] = []

    def work() -> str:
        threads.append(threading.current_thread())
        release.wait(WAIT)
        finished.set()
        return "discarded"

    async def main() -> None:
        limiter = CapacityLimiter(1)
        with move_on_after(0.05) as scope:
            await to_thread(work, limiter=limiter, abandon_on_cancel=True)
        assert scope.cancelled_caught
        assert not finished.is_set()  # returned at once, the thread still runs
        assert limiter.borrowed_tokens == 1  # its token comes back when it ends
        release.set()
        # The next call waits for the token of the abandoned one.
        assert await to_thread(lambda: 5, limiter=limiter) == 5
        assert finished.is_set()
        assert limiter.borrowed_tokens == 0

    yieldloop.run(main)
    assert threads[0].daemon
    threads[0].join(WAIT)


def test_abandoned_thread_outliving_the_run() -> None:
    release = threading.Event()
    threads: list[threading.Thread] = []

    def work() -> None:
        threads.append(threading.current_thread())
        release.wait(WAIT)

    async def main() -> None:
        with move_on_after(0.05):
            await to_thread(work, abandon_on_cancel=True)

    with pytest.warns(ResourceWarning, match="abandoned"):  # the exit report
        yieldloop.run(main)
    release.set()
    threads[0].join(WAIT)
    assert not threads[0].is_alive()


def test_from_thread_round_trip() -> None:
    async def double_later(x: int) -> int:
        await yieldloop.sleep(0.01)
        return 2 * x

    def work(event: Event) -> Any:
        a = from_thread_run(double_later, 21)
        b = from_thread(double_later, 1)  # the alias
        from_thread_run_sync(event.set)
        name = from_thread_run_sync(lambda: yieldloop.current_task().name)
        return a, b, name

    async def main() -> Any:
        event = Event()
        result = await to_thread(work, event)
        assert event.is_set()
        return result

    a, b, name = yieldloop.run(main)
    assert (a, b) == (42, 2)
    assert name.endswith("main")  # ran inside the task that called to_thread


def test_from_thread_generator_coroutine() -> None:
    def gen(x: int) -> Generator[Any, Any, int]:
        yield ("sleep", 0.01)
        return x + 1

    async def main() -> int:
        return await to_thread(lambda: from_thread_run(gen, 1))

    assert yieldloop.run(main) == 2


def test_from_thread_exceptions_propagate() -> None:
    async def fail() -> None:
        await yieldloop.sleep(0)
        raise KeyError("async")

    def fail_sync() -> None:
        raise LookupError("sync")

    def work() -> list[str]:
        caught = []
        try:
            from_thread_run(fail)
        except KeyError:
            caught.append("async")
        try:
            from_thread_run_sync(fail_sync)
        except LookupError:
            caught.append("sync")
        return caught

    async def main() -> list[str]:
        return await to_thread(work)

    assert yieldloop.run(main) == ["async", "sync"]


def test_from_thread_on_loop_thread_is_an_error() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="loop thread"):
            from_thread_run(yieldloop.sleep, 0)
        with pytest.raises(RuntimeError, match="loop thread"):
            from_thread_run_sync(print)

    yieldloop.run(main)


def test_from_thread_in_foreign_thread_is_an_error() -> None:
    errors: list[BaseException] = []

    def foreign() -> None:
        try:
            from_thread_run_sync(print)
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=foreign)
    t.start()
    t.join()
    assert "to_thread" in str(errors[0])


def test_cancel_reaches_from_thread_run() -> None:
    seen: list[str] = []

    async def forever() -> None:
        await yieldloop.sleep_forever()

    def work() -> None:
        try:
            from_thread_run(forever)
        except Cancelled:
            seen.append("cancelled in thread")
            raise

    async def main() -> None:
        with move_on_after(0.1) as scope:
            await to_thread(work)
        assert scope.cancelled_caught

    yieldloop.run(main)
    assert seen == ["cancelled in thread"]


def test_from_thread_after_abandon() -> None:
    release = threading.Event()
    out: list[Any] = []
    done = threading.Event()

    def work(kernel_event: Event) -> None:
        release.wait(WAIT)
        try:
            from_thread_run(yieldloop.sleep, 0)
        except Cancelled:
            out.append("cancelled")
        out.append(from_thread_run_sync(kernel_event.set))
        done.set()

    async def main() -> None:
        event = Event()
        with move_on_after(0.05):
            await to_thread(work, event, abandon_on_cancel=True)
        release.set()
        await event.wait()  # set by the abandoned thread, on the loop thread

    yieldloop.run(main)
    assert done.wait(WAIT)
    assert out == ["cancelled", None]


def test_many_threads_no_leak() -> None:
    async def main() -> int:
        results: list[int] = []

        async def one(i: int) -> None:
            results.append(await to_thread(lambda: i * i))

        async with TaskGroup() as tg:
            for i in range(100):
                tg.spawn(one, i)
        return sum(results)

    before = threading.active_count()
    assert yieldloop.run(main) == sum(i * i for i in range(100))
    assert threading.active_count() == before


def test_to_thread_outside_run() -> None:
    with pytest.raises(RuntimeError):
        current_kernel()
    gen = to_thread(print)
    with pytest.raises(RuntimeError, match=r"yieldloop\.run"):
        next(iter(gen))
