"""run_in_executor: real thread pools, real process pools, a real dask cluster."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import pytest

import yieldloop
from yieldloop import Cancelled, CancelScope, Event, TaskGroup, move_on_after
from yieldloop._os._executors import run_in_executor

WAIT = 30  # generous: waits that must never time out in practice


# ------------------------------------------------------------ module-level
# functions: a process pool (and dask) pickles them by reference


class CustomError(Exception):
    """An exception with extra state, to see it survive pickling."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message, code)
        self.message = message
        self.code = code


def add(a: int, b: int, *, scale: int = 1) -> int:
    return (a + b) * scale


def pid_of_worker(_: int) -> int:
    return os.getpid()


def raise_custom(code: int) -> None:
    raise CustomError("custom failure", code)


def divide(a: int, b: int) -> float:
    return a / b


def unpicklable_result() -> Any:
    return threading.Lock()


# For process pools: events handed to each worker at its start (inheritance
# is the only way multiprocessing events can reach a pool's workers).
_started: Any = None
_gate: Any = None


def _init_worker(started: Any, gate: Any) -> None:
    global _started, _gate
    _started = started
    _gate = gate


def wait_for_gate(value: int) -> int:
    _started.set()
    if not _gate.wait(WAIT):
        raise TimeoutError("the test never opened the gate")
    return value


def wait_dask_event(name: str) -> str:
    import distributed

    if not distributed.Event(name).wait(WAIT):
        raise TimeoutError("the test never set the dask event")
    return "set"


def record_in_file(path: str) -> None:
    with open(path, "w") as f:
        f.write("ran")


# ---------------------------------------------------------------- fixtures


def _wait_threads_back_to(before: set[threading.Thread]) -> set[threading.Thread]:
    deadline = time.monotonic() + WAIT
    while True:
        extra = set(threading.enumerate()) - before
        if not extra or time.monotonic() > deadline:
            return extra
        time.sleep(0.01)


@pytest.fixture
def no_thread_leak() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    assert _wait_threads_back_to(before) == set()


@pytest.fixture
def pool(no_thread_leak: None) -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
        yield ex


def _spawn_context() -> Any:
    # spawn, not fork: forking a process with threads is unsafe (and warns
    # from Python 3.12 on).
    return multiprocessing.get_context("spawn")


@pytest.fixture(scope="module")
def process_pool() -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=_spawn_context()) as ex:
        yield ex


# ---------------------------------------------------------- thread pools


def test_thread_pool_result_args_kwargs(pool: concurrent.futures.ThreadPoolExecutor) -> None:
    async def main() -> tuple[int, int]:
        plain = await run_in_executor(pool, add, 1, 2)
        keyword = await run_in_executor(pool, add, 1, 2, scale=10)
        return plain, keyword

    assert yieldloop.run(main) == (3, 30)


def test_thread_pool_runs_in_a_pool_thread(pool: concurrent.futures.ThreadPoolExecutor) -> None:
    async def main() -> int:
        return await run_in_executor(pool, threading.get_ident)

    ident = yieldloop.run(main)
    assert ident != threading.get_ident()


def test_exception_is_raised_in_the_task(pool: concurrent.futures.ThreadPoolExecutor) -> None:
    async def main() -> None:
        await run_in_executor(pool, divide, 1, 0)

    with pytest.raises(ZeroDivisionError):
        yieldloop.run(main)


def test_base_exception_from_the_pool_propagates(
    pool: concurrent.futures.ThreadPoolExecutor,
) -> None:
    def boom() -> None:
        raise KeyboardInterrupt

    async def main() -> None:
        await run_in_executor(pool, boom)

    with pytest.raises(KeyboardInterrupt):
        yieldloop.run(main)


def test_yield_from_in_a_generator_coroutine(
    pool: concurrent.futures.ThreadPoolExecutor,
) -> None:
    def main() -> Generator[Any, Any, int]:
        x: int = yield from run_in_executor(pool, pow, 2, 10)
        yield ("sleep", 0)
        return x

    assert yieldloop.run(main) == 1024


def test_other_tasks_run_while_waiting(pool: concurrent.futures.ThreadPoolExecutor) -> None:
    gate = threading.Event()
    ticks: list[int] = []

    def blocked() -> str:
        if not gate.wait(WAIT):
            raise TimeoutError("gate never opened")
        return "done"

    async def ticker() -> None:
        for i in range(5):
            ticks.append(i)
            await yieldloop.sleep(0)
        gate.set()  # the pool call can only finish after the loop went on running

    async def main() -> str:
        async with TaskGroup() as tg:
            tg.spawn(ticker)
            result = await run_in_executor(pool, blocked)
        return result

    assert yieldloop.run(main) == "done"
    assert ticks == [0, 1, 2, 3, 4]


def test_many_concurrent_submissions_gathered(
    pool: concurrent.futures.ThreadPoolExecutor,
) -> None:
    results: dict[int, int] = {}

    async def one(i: int) -> None:
        results[i] = await run_in_executor(pool, add, i, i)

    async def main() -> None:
        async with TaskGroup() as tg:
            for i in range(200):
                tg.spawn(one, i)

    yieldloop.run(main)
    assert results == {i: 2 * i for i in range(200)}


def test_gather_collects_in_order(pool: concurrent.futures.ThreadPoolExecutor) -> None:
    async def main() -> list[int]:
        return await yieldloop.gather(*(run_in_executor(pool, add, i, 1) for i in range(20)))

    assert yieldloop.run(main) == [i + 1 for i in range(20)]


def test_cancel_before_start_raises_at_once_and_never_runs(
    no_thread_leak: None, tmp_path: Any
) -> None:
    marker = tmp_path / "ran"
    started = threading.Event()
    gate = threading.Event()

    def occupy() -> None:
        started.set()
        if not gate.wait(WAIT):
            raise TimeoutError("gate never opened")

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ex:
        busy = ex.submit(occupy)  # the only worker is busy: the next call waits in the queue
        assert started.wait(WAIT)

        async def main() -> bool:
            with CancelScope() as scope:
                submitted = Event()

                async def cancel_when_submitted() -> None:
                    await submitted.wait()
                    scope.cancel()

                async with TaskGroup() as tg:
                    tg.spawn(cancel_when_submitted)
                    submitted.set()  # no checkpoint until the call below has parked
                    await run_in_executor(ex, record_in_file, str(marker))
                    raise AssertionError("not reached")
            # Cancelled while the pool's only worker is still busy: it did
            # not wait for anything.
            assert not gate.is_set()
            return scope.cancelled_caught

        try:
            assert yieldloop.run(main) is True
        finally:
            gate.set()
        busy.result(WAIT)
    assert not marker.exists()  # the cancelled call never ran, not even after the gate opened


def test_already_cancelled_submits_nothing(
    pool: concurrent.futures.ThreadPoolExecutor, tmp_path: Any
) -> None:
    marker = tmp_path / "ran"

    async def main() -> bool:
        with CancelScope() as scope:
            scope.cancel()
            await run_in_executor(pool, record_in_file, str(marker))
        return scope.cancelled_caught

    assert yieldloop.run(main) is True
    pool.shutdown(wait=True)
    assert not marker.exists()


def test_cancel_while_running_waits_then_returns(
    pool: concurrent.futures.ThreadPoolExecutor,
) -> None:
    started = threading.Event()
    gate = threading.Event()
    finished: list[str] = []
    log: list[str] = []

    def blocked() -> str:
        started.set()
        if not gate.wait(WAIT):
            raise TimeoutError("gate never opened")
        finished.append("fn")
        return "result"

    async def main() -> None:
        async with TaskGroup() as tg:
            scope = CancelScope()

            async def waiter() -> None:
                with scope:
                    log.append(await run_in_executor(pool, blocked))  # not lost
                    await yieldloop.checkpoint()  # Cancelled comes here
                    log.append("not reached")
                log.append(f"scope exited, caught={scope.cancelled_caught}")

            tg.spawn(waiter)
            await yieldloop.to_thread(started.wait, WAIT)
            scope.cancel()
            for _ in range(20):
                await yieldloop.sleep(0)
            # The call is still running: the waiter is still waiting for it.
            assert log == []
            assert finished == []
            gate.set()
        assert finished == ["fn"]

    yieldloop.run(main)
    assert log == ["result", "scope exited, caught=True"]


def test_cancel_while_running_keeps_the_exception(
    pool: concurrent.futures.ThreadPoolExecutor,
) -> None:
    started = threading.Event()
    gate = threading.Event()

    def blocked_then_fail() -> None:
        started.set()
        if not gate.wait(WAIT):
            raise TimeoutError("gate never opened")
        raise CustomError("failed after cancel", 7)

    async def main() -> None:
        async with TaskGroup() as tg:
            scope = CancelScope()

            async def waiter() -> None:
                with scope:
                    await run_in_executor(pool, blocked_then_fail)

            tg.spawn(waiter)
            await yieldloop.to_thread(started.wait, WAIT)
            scope.cancel()
            await yieldloop.sleep(0)
            gate.set()

    with pytest.raises(ExceptionGroup) as info:
        yieldloop.run(main)
    [err] = info.value.exceptions
    assert isinstance(err, CustomError)
    assert err.code == 7


def test_abandon_on_cancel_raises_at_once(
    pool: concurrent.futures.ThreadPoolExecutor,
) -> None:
    started = threading.Event()
    gate = threading.Event()
    finished: list[str] = []

    def blocked() -> str:
        started.set()
        if not gate.wait(WAIT):
            raise TimeoutError("gate never opened")
        finished.append("fn")
        return "result"

    async def main() -> bool:
        async with TaskGroup() as tg:
            scope = CancelScope()

            async def waiter() -> None:
                with scope:
                    await run_in_executor(pool, blocked, abandon_on_cancel=True)

            tg.spawn(waiter)
            await yieldloop.to_thread(started.wait, WAIT)
            scope.cancel()
        # The group is done although the call is still running.
        assert finished == []
        return scope.cancelled_caught

    try:
        assert yieldloop.run(main) is True
    finally:
        gate.set()
    pool.shutdown(wait=True)
    assert finished == ["fn"]  # it ran to the end, unobserved


def test_timeout_around_a_slow_call(pool: concurrent.futures.ThreadPoolExecutor) -> None:
    gate = threading.Event()

    def blocked() -> None:
        gate.wait(WAIT)

    async def main() -> None:
        with move_on_after(0.05) as scope:
            await run_in_executor(pool, blocked, abandon_on_cancel=True)
        assert scope.cancelled_caught
        with pytest.raises(TimeoutError):
            with yieldloop.fail_after(0.05):
                await run_in_executor(pool, blocked, abandon_on_cancel=True)

    try:
        yieldloop.run(main)
    finally:
        gate.set()


def test_future_cancelled_by_shutdown_raises_cancelled_error(no_thread_leak: None) -> None:
    started = threading.Event()
    gate = threading.Event()

    def occupy() -> None:
        started.set()
        gate.wait(WAIT)

    ex = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        ex.submit(occupy)
        assert started.wait(WAIT)

        async def main() -> None:
            async def shut_down_soon() -> None:
                await yieldloop.sleep(0)
                ex.shutdown(wait=False, cancel_futures=True)  # cancels the queued call
                gate.set()

            async with TaskGroup() as tg:
                tg.spawn(shut_down_soon)
                await run_in_executor(ex, add, 1, 2)

        with pytest.raises(ExceptionGroup) as info:
            yieldloop.run(main)
        [err] = info.value.exceptions
        assert isinstance(err, concurrent.futures.CancelledError)
        assert not isinstance(err, Cancelled)
    finally:
        gate.set()
        ex.shutdown(wait=True)


def test_shut_down_executor_raises_runtime_error(no_thread_leak: None) -> None:
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    ex.shutdown()

    async def main() -> None:
        await run_in_executor(ex, add, 1, 2)

    with pytest.raises(RuntimeError, match="shutdown"):
        yieldloop.run(main)


@pytest.mark.parametrize("bad", [None, 42, "pool", concurrent.futures.Future()])
def test_not_an_executor_is_a_type_error(bad: Any) -> None:
    async def main() -> None:
        await run_in_executor(bad, add, 1, 2)

    with pytest.raises(TypeError, match=r"concurrent\.futures\.Executor.*got"):
        yieldloop.run(main)


@pytest.mark.parametrize("bad", [None, 42, "add"])
def test_not_callable_is_a_type_error(
    pool: concurrent.futures.ThreadPoolExecutor, bad: Any
) -> None:
    async def main() -> None:
        await run_in_executor(pool, bad)

    with pytest.raises(TypeError, match="function to call.*got"):
        yieldloop.run(main)


def test_submit_must_return_a_future(no_thread_leak: None) -> None:
    class Broken(concurrent.futures.Executor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            return "not a future"

    async def main() -> None:
        await run_in_executor(Broken(), add, 1, 2)

    with pytest.raises(TypeError, match="not a concurrent.futures.Future"):
        yieldloop.run(main)


def test_already_done_future_from_an_inline_executor() -> None:
    # An executor that runs the call inside submit(): the future is done
    # before the task parks, and the done-callback runs on the loop thread.
    class Inline(concurrent.futures.Executor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
            fut.set_running_or_notify_cancel()
            try:
                fut.set_result(fn(*args, **kwargs))
            except Exception as exc:
                fut.set_exception(exc)
            return fut

    async def main() -> tuple[int, int]:
        with pytest.raises(ZeroDivisionError):
            await run_in_executor(Inline(), divide, 1, 0)
        return await run_in_executor(Inline(), add, 2, 3), threading.get_ident()

    value, ident = yieldloop.run(main)
    assert value == 5
    assert ident == threading.get_ident()


def test_virtual_clock_does_not_call_it_a_deadlock(
    pool: concurrent.futures.ThreadPoolExecutor,
) -> None:
    from yieldloop.testing import VirtualClock

    gate = threading.Event()

    def blocked() -> int:
        if not gate.wait(WAIT):
            raise TimeoutError("gate never opened")
        return 1

    async def opener() -> None:
        await yieldloop.sleep(5)  # virtual time: passes at once
        gate.set()

    async def main() -> int:
        async with TaskGroup() as tg:
            tg.spawn(opener)
            value = await run_in_executor(pool, blocked)
        return value

    assert yieldloop.run(main, clock=VirtualClock()) == 1


def test_no_thread_left_after_pool_shutdown() -> None:
    before = set(threading.enumerate())

    async def main() -> list[int]:
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as ex:
            async with TaskGroup() as tg:
                out: list[int] = []

                async def one(i: int) -> None:
                    out.append(await run_in_executor(ex, add, i, 0))

                for i in range(30):
                    tg.spawn(one, i)
        return sorted(out)

    assert yieldloop.run(main) == list(range(30))
    assert _wait_threads_back_to(before) == set()


# ---------------------------------------------------------- process pools


def test_process_pool_results_run_in_other_processes(
    process_pool: concurrent.futures.ProcessPoolExecutor,
) -> None:
    async def main() -> tuple[int, set[int]]:
        value = await run_in_executor(process_pool, add, 20, 1, scale=2)
        pids = await yieldloop.gather(
            *(run_in_executor(process_pool, pid_of_worker, i) for i in range(8))
        )
        return value, set(pids)

    value, pids = yieldloop.run(main)
    assert value == 42
    assert os.getpid() not in pids


def test_process_pool_pickled_exceptions(
    process_pool: concurrent.futures.ProcessPoolExecutor,
) -> None:
    async def main() -> None:
        with pytest.raises(ZeroDivisionError):
            await run_in_executor(process_pool, divide, 1, 0)
        with pytest.raises(CustomError) as info:
            await run_in_executor(process_pool, raise_custom, 99)
        assert info.value.code == 99
        assert info.value.message == "custom failure"
        # the worker's traceback travels along, as text
        assert "raise_custom" in str(info.value.__cause__)
        # a lambda cannot be sent to another process: the pickling error comes out here
        with pytest.raises(Exception, match="(?i)pickl"):
            await run_in_executor(process_pool, lambda: 1)
        # nor can a lock come back
        with pytest.raises(Exception, match="(?i)pickl"):
            await run_in_executor(process_pool, unpicklable_result)
        # the pool still works after all that
        assert await run_in_executor(process_pool, add, 1, 1) == 2

    yieldloop.run(main)


def test_process_pool_many_concurrent(
    process_pool: concurrent.futures.ProcessPoolExecutor,
) -> None:
    async def main() -> dict[int, int]:
        results: dict[int, int] = {}

        async def one(i: int) -> None:
            results[i] = await run_in_executor(process_pool, add, i, 1)

        async with TaskGroup() as tg:
            for i in range(50):
                tg.spawn(one, i)
        return results

    assert yieldloop.run(main) == {i: i + 1 for i in range(50)}


def test_process_pool_cancel_before_start_and_while_running(
    no_thread_leak: None, tmp_path: Any
) -> None:
    ctx = _spawn_context()
    started = ctx.Event()
    gate = ctx.Event()
    marker = tmp_path / "ran"
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=1, mp_context=ctx, initializer=_init_worker, initargs=(started, gate)
    ) as ex:
        outcome: dict[str, Any] = {}

        async def main() -> None:
            try:
                await body()
            finally:
                gate.set()  # on every path, so a failed assert does not hang the worker

        async def body() -> None:
            async with TaskGroup() as tg:
                running_scope = CancelScope()

                async def running_call() -> None:
                    with running_scope:
                        # the result comes back; Cancelled at the next checkpoint
                        outcome["running"] = await run_in_executor(ex, wait_for_gate, 5)
                        await yieldloop.checkpoint()
                    outcome["running_caught"] = running_scope.cancelled_caught

                tg.spawn(running_call)
                await yieldloop.to_thread(started.wait, WAIT)
                # The only worker is busy. A process pool hands up to
                # max_workers + 1 calls to its call queue at once (marking them
                # running); fill those places first, so that the next call
                # stays pending in the pool, where it can still be cancelled.
                fillers = [ex.submit(add, i, 0) for i in range(2)]
                with CancelScope() as queued:
                    submitted = Event()

                    async def cancel_queued() -> None:
                        await submitted.wait()
                        queued.cancel()

                    tg.spawn(cancel_queued)
                    submitted.set()
                    await run_in_executor(ex, record_in_file, str(marker))
                outcome["queued_caught"] = queued.cancelled_caught
                assert not gate.is_set()  # cancelled at once, with the worker still busy
                running_scope.cancel()
                for _ in range(10):
                    await yieldloop.sleep(0)
                assert "running_caught" not in outcome  # still waiting for the running call
                gate.set()
                assert [f.result(WAIT) for f in fillers] == [0, 1]

        yieldloop.run(main)
        assert outcome == {"queued_caught": True, "running": 5, "running_caught": True}
    assert not marker.exists()


def test_process_pool_shutdown_leaves_no_thread_or_process() -> None:
    before = set(threading.enumerate())

    async def main() -> int:
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=2, mp_context=_spawn_context()
        ) as ex:
            results = await yieldloop.gather(*(run_in_executor(ex, add, i, i) for i in range(6)))
        return sum(results)

    children_before = set(multiprocessing.active_children())  # the module's pool
    assert yieldloop.run(main) == 30
    assert _wait_threads_back_to(before) == set()
    assert set(multiprocessing.active_children()) <= children_before


# ----------------------------------------------------------------- dask


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    children_before = set(multiprocessing.active_children())
    threads_before = set(threading.enumerate())
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    )
    try:
        client = distributed.Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()
    # The worker processes are gone, and so are the threads that watched
    # them (waited for here, so that no thread ends during a later test).
    # Only distributed's process-wide offload thread stays, by design.
    assert set(multiprocessing.active_children()) <= children_before
    deadline = time.monotonic() + WAIT
    while True:
        extra = {
            t.name
            for t in set(threading.enumerate()) - threads_before
            if not t.name.startswith("Dask-Offload")
        }
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert extra == set()


@pytest.fixture
def dask_executor(dask_client: Any) -> Any:
    ex = dask_client.get_executor(pure=False)
    assert isinstance(ex, concurrent.futures.Executor)
    return ex


def test_dask_results_and_exceptions(dask_executor: Any) -> None:
    async def main() -> tuple[int, set[int]]:
        value = await run_in_executor(dask_executor, add, 1, 2, scale=3)
        with pytest.raises(CustomError) as info:
            await run_in_executor(dask_executor, raise_custom, 5)
        assert info.value.code == 5
        with pytest.raises(ZeroDivisionError):
            await run_in_executor(dask_executor, divide, 1, 0)
        pids = await yieldloop.gather(
            *(run_in_executor(dask_executor, pid_of_worker, i) for i in range(6))
        )
        return value, set(pids)

    value, pids = yieldloop.run(main)
    assert value == 9
    assert os.getpid() not in pids


def test_dask_many_concurrent(dask_executor: Any) -> None:
    async def main() -> dict[int, int]:
        results: dict[int, int] = {}

        async def one(i: int) -> None:
            results[i] = await run_in_executor(dask_executor, add, i, i)

        async with TaskGroup() as tg:
            for i in range(40):
                tg.spawn(one, i)
        return results

    assert yieldloop.run(main) == {i: 2 * i for i in range(40)}


def test_dask_cancel(dask_client: Any, dask_executor: Any, tmp_path: Any) -> None:
    # A dask future can always be cancelled (the cluster forgets the task),
    # so cancellation raises at once, even while the task runs.
    import distributed

    marker = tmp_path / "ran"
    event = distributed.Event("yieldloop-test-gate", client=dask_client)

    async def main() -> bool:
        try:
            with CancelScope() as scope:

                async def cancel_soon() -> None:
                    await yieldloop.sleep(0.05)
                    scope.cancel()

                async with TaskGroup() as tg:
                    tg.spawn(cancel_soon)
                    await run_in_executor(dask_executor, wait_dask_event, event.name)
            assert not event.is_set()  # it did not wait for the dask task
        finally:
            event.set()  # let the worker finish
        with CancelScope() as already:
            already.cancel()
            await run_in_executor(dask_executor, record_in_file, str(marker))
        assert already.cancelled_caught
        # the executor still works
        assert await run_in_executor(dask_executor, wait_dask_event, event.name) == "set"
        return scope.cancelled_caught

    assert yieldloop.run(main) is True
    assert not marker.exists()
