"""anyio on yieldloop: ``anyio.run(..., backend="yieldloop")``, anyio code
inside yieldloop tasks, and anyio's pytest runner on yieldloop (every test
here runs through it). anyio's own test suite is run against the backend by
``scripts/anyio_conformance.py``; these tests are the quick, always-on part."""

from __future__ import annotations

import math
import os
import signal
import sys
import threading

import pytest

anyio = pytest.importorskip("anyio")
sniffio = pytest.importorskip("sniffio")

import yieldloop  # noqa: E402
import yieldloop.lowlevel  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "yieldloop"


@pytest.fixture
async def resource():
    # An async generator fixture: set up and torn down in the same run as the test.
    events = ["set up in " + sniffio.current_async_library()]
    yield events
    events.append("torn down")
    assert anyio.get_current_task()


# ================================================================ running


def test_anyio_run_with_the_yieldloop_backend():
    async def main(x):
        await anyio.sleep(0.001)
        return x, sniffio.current_async_library()

    assert anyio.run(main, 7, backend="yieldloop") == (7, "yieldloop")


def test_anyio_code_inside_a_yieldloop_task():
    async def anyio_library_code():
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep, 0.001)
        return sniffio.current_async_library()

    async def main():
        return await anyio_library_code()

    assert yieldloop.run(main) == "yieldloop"


def test_backend_options_are_passed_to_run():
    from yieldloop.testing import RandomScheduler

    async def main():
        return anyio.current_time() >= 0

    assert anyio.run(main, backend="yieldloop", backend_options={"scheduler": RandomScheduler(1)})


async def test_the_pytest_runner_shares_one_run_with_fixtures(resource):
    assert resource == ["set up in yieldloop"]
    assert sniffio.current_async_library() == "yieldloop"
    assert yieldloop.lowlevel.current_kernel() is anyio.lowlevel.current_token().native_token


# ========================================================= cancellation


async def test_cancel_scopes_and_deadlines():
    assert anyio.current_effective_deadline() == math.inf
    with anyio.move_on_after(0.01) as scope:
        deadline = anyio.current_effective_deadline()
        assert deadline == pytest.approx(anyio.current_time() + 0.01, abs=0.01)
        await anyio.sleep(1)
    assert scope.cancelled_caught
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.01):
            await anyio.sleep(1)
    with anyio.CancelScope() as outer:
        outer.cancel()
        assert anyio.current_effective_deadline() == -math.inf
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.001)  # shielded: not cancelled
        await anyio.sleep(1)
    assert outer.cancelled_caught
    assert anyio.get_cancelled_exc_class() is yieldloop.Cancelled


async def test_task_groups_start_handles_and_errors():
    async def server(task_status=anyio.TASK_STATUS_IGNORED):
        task_status.started("ready")
        await anyio.sleep(0.001)
        return "done"

    async with anyio.create_task_group() as tg:
        assert await tg.start(server) == "ready"
        handle = await tg.start(server, return_handle=True)
        other = tg.create_task(server())
    assert handle.return_value == "done"
    assert other.status is anyio.TaskHandle.Status.FINISHED

    async def fail():
        raise ValueError("boom")

    with pytest.raises(ExceptionGroup) as info:
        async with anyio.create_task_group() as tg:
            tg.start_soon(fail)
            await anyio.sleep(1)
    assert info.group_contains(ValueError)


async def test_cancelling_a_task_group_from_inside():
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.sleep_forever)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert tg.cancel_scope.cancel_called


# =========================================================== primitives


async def test_primitives():
    lock = anyio.Lock()
    async with lock:
        stats = lock.statistics()
        assert stats.locked
        assert stats.owner == anyio.get_current_task()
        with pytest.raises(RuntimeError, match="already held"):
            lock.acquire_nowait()

        async def other():
            with pytest.raises(anyio.WouldBlock):
                lock.acquire_nowait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(other)
    sem = anyio.Semaphore(2, max_value=2)
    async with sem:
        assert sem.value == 1
    limiter = anyio.CapacityLimiter(1)
    async with limiter:
        assert limiter.borrowed_tokens == 1
        assert len(limiter.statistics().borrowers) == 1
    event = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(event.wait)
        await anyio.wait_all_tasks_blocked()
        assert event.statistics().tasks_waiting == 1
        event.set()
    send, receive = anyio.create_memory_object_stream[int](1)
    async with send, receive:
        await send.send(1)
        assert await receive.receive() == 1


async def test_task_infos():
    me = anyio.get_current_task()
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.sleep_forever, name="sleeper")
        await anyio.wait_all_tasks_blocked()
        names = {t.name for t in anyio.get_running_tasks()}
        assert "sleeper" in names
        sleeper = next(t for t in anyio.get_running_tasks() if t.name == "sleeper")
        assert sleeper.parent_id == me.id
        tg.cancel_scope.cancel()


# ============================================================== threads


async def test_threads_both_ways():
    def in_thread():
        assert threading.current_thread() is not threading.main_thread()
        name = anyio.from_thread.run_sync(sniffio.current_async_library)
        slept = anyio.from_thread.run(anyio.sleep, 0)
        anyio.from_thread.check_cancelled()
        return name, slept

    assert await anyio.to_thread.run_sync(in_thread) == ("yieldloop", None)
    limiter = anyio.CapacityLimiter(1)
    assert await anyio.to_thread.run_sync(lambda: 5, limiter=limiter) == 5
    assert anyio.to_thread.current_default_thread_limiter().total_tokens == 40


async def test_from_thread_with_an_explicit_token():
    token = anyio.lowlevel.current_token()
    results = []

    def foreign():  # a thread that yieldloop did not start
        results.append(anyio.from_thread.run_sync(sniffio.current_async_library, token=token))

    t = threading.Thread(target=foreign)
    t.start()
    while t.is_alive():
        await anyio.sleep(0.005)
    assert results == ["yieldloop"]


def test_from_thread_after_the_run_raises_run_finished():
    async def main():
        return anyio.lowlevel.current_token()

    token = anyio.run(main, backend="yieldloop")
    with pytest.raises(anyio.RunFinishedError):
        anyio.from_thread.run_sync(print, token=token)


# ============================================================ processes


async def test_subprocesses():
    result = await anyio.run_process([sys.executable, "-c", "print('hi')"])
    assert result.stdout == b"hi\n"
    result = await anyio.run_process("echo shell", check=True)
    assert result.stdout == b"shell\n"
    async with await anyio.open_process(
        [sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())"]
    ) as proc:
        await proc.stdin.send(b"abc")
        await proc.stdin.aclose()
        assert await proc.stdout.receive() == b"ABC"
    assert proc.returncode == 0
    with pytest.raises(Exception):
        await anyio.run_process([sys.executable, "-c", "raise SystemExit(3)"])


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="main thread")
async def test_signals():
    with anyio.open_signal_receiver(signal.SIGUSR1) as signals:
        os.kill(os.getpid(), signal.SIGUSR1)
        async for signum in signals:
            assert signum is signal.SIGUSR1
            break


# ============================================================== sockets


async def test_tcp_round_trip():
    async def handle(stream):
        async with stream:
            await stream.send(await stream.receive())

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            await client.send(b"ping")
            assert await client.receive() == b"ping"
        tg.cancel_scope.cancel()
