"""yieldloop inside asyncio (to_asyncio, guest runs) and asyncio inside
yieldloop (from_asyncio): results, errors, cancellation both ways, I/O and
threads in guest runs, fairness, and nothing left behind."""

from __future__ import annotations

import asyncio
import functools
import socket
import threading

import pytest
from _leaks import no_leaks

import yieldloop
import yieldloop.socket
from yieldloop.lowlevel import Kernel

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is in the test extra
    uvloop = None

LOOPS = ["asyncio"] + (["uvloop"] if uvloop is not None else [])
if uvloop is not None:
    # uvloop opens a pipe pair once per process, on its first run: do that
    # run now, so the leak checks below see only what each test leaves.
    uvloop.run(asyncio.sleep(0))


def arun(main, loop_kind="asyncio"):
    if loop_kind == "uvloop":
        return uvloop.run(main)
    return asyncio.run(main)


# ============================================================ to_asyncio


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_to_asyncio_returns_result_and_shares_the_thread(loop_kind):
    async def yl(x):
        await yieldloop.sleep(0.01)
        return x * 2, threading.get_ident()

    async def main():
        return await yieldloop.to_asyncio(yl, 21)

    with no_leaks():
        value, ident = arun(main(), loop_kind)
    assert value == 42
    assert ident == threading.get_ident()


def test_to_asyncio_accepts_coroutines_and_generators():
    @yieldloop.coroutine
    def gen():
        yield ("sleep", 0.001)
        return "gen"

    async def main():
        a = await yieldloop.to_asyncio(gen)
        b = await yieldloop.to_asyncio(yieldloop.gather(gen(), gen()))
        return a, b

    assert asyncio.run(main()) == ("gen", ["gen", "gen"])


def test_to_asyncio_raises_the_programs_errors():
    async def child():
        await yieldloop.sleep(0)
        raise KeyError("child")

    async def yl():
        async with yieldloop.TaskGroup() as tg:
            tg.spawn(child)
            await yieldloop.sleep(1)

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            await yieldloop.to_asyncio(yl)
        assert info.group_contains(KeyError)
        with pytest.raises(ValueError, match="plain"):
            await yieldloop.to_asyncio(_raise_value_error)

    asyncio.run(main())


async def _raise_value_error():
    raise ValueError("plain")


def test_to_asyncio_bad_input():
    async def main():
        with pytest.raises(TypeError, match="to_asyncio"):
            await yieldloop.to_asyncio(42)

    asyncio.run(main())


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_both_loops_make_progress_together(loop_kind):
    # yieldloop tasks sleep and asyncio tasks sleep in one thread; the
    # wake-ups interleave in time order.
    log = []

    async def yl():
        async with yieldloop.TaskGroup() as tg:
            for i in range(3):
                tg.spawn(_yl_ticker, log, f"y{i}")

    async def main():
        ticker = asyncio.create_task(_aio_ticker(log, "a"))
        await yieldloop.to_asyncio(yl)
        await ticker

    arun(main(), loop_kind)
    assert {name for name, _ in log} == {"a", "y0", "y1", "y2"}
    # Interleaved, not one side then the other.
    names = [name for name, _ in log]
    first_a, last_a = names.index("a"), len(names) - 1 - names[::-1].index("a")
    assert any(n.startswith("y") for n in names[first_a:last_a])


async def _yl_ticker(log, name):
    for i in range(5):
        log.append((name, i))
        await yieldloop.sleep(0.01)


async def _aio_ticker(log, name):
    for i in range(5):
        log.append((name, i))
        await asyncio.sleep(0.01)


def test_a_busy_guest_does_not_starve_asyncio():
    # A yieldloop task that only checkpoints (never sleeps) still lets the
    # host loop run its callbacks: one round per tick.
    seen = []

    async def yl():
        for i in range(2000):
            seen.append(("y", i))
            await yieldloop.checkpoint()

    async def spinner():
        for i in range(50):
            seen.append(("a", i))
            await asyncio.sleep(0)

    async def main():
        t = asyncio.create_task(spinner())
        await yieldloop.to_asyncio(yl)
        await t

    asyncio.run(main())
    a_positions = [i for i, (who, _) in enumerate(seen) if who == "a"]
    assert len(a_positions) == 50
    assert a_positions[-1] < 200  # asyncio finished early, during yieldloop's loop


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_guest_sockets_talk_to_asyncio_streams(loop_kind):
    # A yieldloop TCP server in the guest run, an asyncio client in the host,
    # in one thread: each side's waits go through the other's poller.
    async def handler(stream):
        async with stream:
            while data := await stream.receive_some():
                await stream.send_all(data.upper())

    async def yl_server(port_box, stop):
        async with yieldloop.TaskGroup() as tg:
            serve = functools.partial(yieldloop.serve_tcp, host="127.0.0.1")
            listeners = await tg.start(serve, handler, 0)
            port_box.set_result(listeners[0].socket.getsockname()[1])
            await yieldloop.from_asyncio(stop.wait())
            tg.cancel_scope.cancel()

    async def main():
        port_box = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        server = asyncio.create_task(yieldloop.to_asyncio(yl_server, port_box, stop))
        await asyncio.wait([port_box, server], return_when=asyncio.FIRST_COMPLETED)
        if server.done():
            await server  # failed before listening: raise its error
        port = port_box.result()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        replies = []
        for word in (b"hello", b"guest", b"run"):
            writer.write(word)
            await writer.drain()
            replies.append(await reader.readexactly(len(word)))
        writer.close()
        await writer.wait_closed()
        stop.set()
        await server
        return replies

    with no_leaks():
        assert arun(main(), loop_kind) == [b"HELLO", b"GUEST", b"RUN"]


def test_guest_threads_wake_the_guest():
    async def yl():
        results = await yieldloop.gather(
            yieldloop.to_thread(threading.get_ident),
            yieldloop.to_thread(sum, [1, 2, 3]),
        )
        return results

    async def main():
        return await yieldloop.to_asyncio(yl)

    with no_leaks():
        ident, total = asyncio.run(main())
    assert ident != threading.get_ident()
    assert total == 6


@pytest.mark.parametrize("how", ["wait_for", "cancel"])
def test_cancelling_the_asyncio_side_cancels_the_guest(how):
    events = []

    async def yl():
        try:
            await yieldloop.sleep_forever()
        finally:
            events.append("yieldloop finally")
            with yieldloop.CancelScope(shield=True):
                await yieldloop.sleep(0.01)  # cleanup that awaits still runs
            events.append("cleanup done")

    async def main():
        if how == "wait_for":
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(yieldloop.to_asyncio(yl), 0.05)
        else:
            task = asyncio.create_task(yieldloop.to_asyncio(yl))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert task.cancelled()

    with no_leaks():
        asyncio.run(main())
    assert events == ["yieldloop finally", "cleanup done"]


def test_guest_run_cannot_use_a_virtual_clock():
    from yieldloop.testing import VirtualClock

    kernel = Kernel(clock=VirtualClock())

    async def nothing():
        pass

    coro = nothing()
    with pytest.raises(ValueError, match="real time"):
        kernel.guest_start(coro, "x")


# ========================================================== from_asyncio


def test_from_asyncio_in_a_guest_run_is_same_thread():
    async def aio_part():
        await asyncio.sleep(0.001)
        return threading.get_ident(), asyncio.get_running_loop()

    async def yl():
        return await yieldloop.from_asyncio(aio_part())

    async def main():
        ident, loop = await yieldloop.to_asyncio(yl)
        return ident == threading.get_ident() and loop is asyncio.get_running_loop()

    assert asyncio.run(main())


def test_from_asyncio_in_a_plain_run_uses_a_bridge_thread():
    async def aio_part(x):
        await asyncio.sleep(0.001)
        return x, threading.get_ident()

    async def main():
        a = await yieldloop.from_asyncio(aio_part(1))
        b = await yieldloop.from_asyncio(aio_part(2))
        return a, b

    with no_leaks():  # the bridge thread and its loop are gone after run()
        (x1, t1), (x2, t2) = yieldloop.run(main)
    assert (x1, x2) == (1, 2)
    assert t1 == t2 != threading.get_ident()  # one bridge loop per run


def test_from_asyncio_accepts_tasks_and_futures_of_its_loop():
    async def main():
        loop = await yieldloop.from_asyncio(_running_loop())
        fut = await yieldloop.from_asyncio(_make_future_set_later())
        return loop, await yieldloop.from_asyncio(fut)

    loop, value = yieldloop.run(main)
    assert value == "later"


async def _running_loop():
    return asyncio.get_running_loop()


async def _make_future_set_later():
    fut = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.01, fut.set_result, "later")
    return fut


def test_from_asyncio_propagates_exceptions():
    async def aio_fail():
        await asyncio.sleep(0)
        raise OSError(5, "asyncio side")

    async def main():
        with pytest.raises(OSError, match="asyncio side"):
            await yieldloop.from_asyncio(aio_fail())
        return "ok"

    assert yieldloop.run(main) == "ok"


@pytest.mark.parametrize("guest", [False, True])
def test_cancelling_the_yieldloop_side_cancels_asyncio(guest):
    events = []

    async def aio_part():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            events.append("asyncio cancelled")
            await asyncio.sleep(0.01)  # cleanup on the asyncio side
            events.append("asyncio cleanup done")
            raise

    async def yl():
        with yieldloop.move_on_after(0.05) as scope:
            await yieldloop.from_asyncio(aio_part())
        events.append("yieldloop resumed")
        return scope.cancelled_caught

    async def host():
        return await yieldloop.to_asyncio(yl)

    with no_leaks():
        caught = asyncio.run(host()) if guest else yieldloop.run(yl)
    assert caught
    assert events == ["asyncio cancelled", "asyncio cleanup done", "yieldloop resumed"]


def test_asyncio_side_cancelling_itself_raises_cancelled_error():
    async def aio_part():
        asyncio.current_task().cancel()
        await asyncio.sleep(1)

    async def main():
        with pytest.raises(asyncio.CancelledError):
            await yieldloop.from_asyncio(aio_part())
        return "ok"

    assert yieldloop.run(main) == "ok"


def test_from_asyncio_bad_input_and_unawaited_coroutine_closed():
    async def main():
        with pytest.raises(TypeError, match="from_asyncio"):
            await yieldloop.from_asyncio(42)

    yieldloop.run(main)
    with pytest.raises(RuntimeError, match="inside yieldloop.run"):
        yieldloop.from_asyncio(asyncio.sleep(0)).send(None)


def test_bridge_cancels_leftover_asyncio_tasks_at_the_end_of_the_run():
    events = []

    async def background():
        try:
            await asyncio.sleep(10)
        finally:
            events.append("background finalized")

    async def start_background():
        asyncio.get_running_loop().create_task(background())
        await asyncio.sleep(0)

    async def main():
        await yieldloop.from_asyncio(start_background())

    with no_leaks():
        yieldloop.run(main)
    assert events == ["background finalized"]


def test_sniffio_names_the_running_library():
    sniffio = pytest.importorskip("sniffio")
    seen = []

    async def yl():
        seen.append(sniffio.current_async_library())
        await yieldloop.sleep(0.01)
        seen.append(sniffio.current_async_library())
        seen.append(await yieldloop.from_asyncio(_which(sniffio)))

    async def main():
        t = asyncio.create_task(_record_asyncio(seen, sniffio))
        await yieldloop.to_asyncio(yl)
        await t

    asyncio.run(main())
    assert seen.count("yieldloop") == 2
    assert seen.count("asyncio") == 2
    assert yieldloop.run(_which_async, sniffio) == "yieldloop"


async def _which(sniffio):
    return sniffio.current_async_library()


async def _which_async(sniffio):
    return sniffio.current_async_library()


async def _record_asyncio(seen, sniffio):
    await asyncio.sleep(0.005)
    seen.append(sniffio.current_async_library())


def test_nested_plain_run_then_guest_in_the_bridge_thread():
    # yieldloop.run -> from_asyncio (bridge thread) -> to_asyncio (a guest
    # run inside the bridge loop): each runtime where it belongs.
    async def inner():
        await yieldloop.sleep(0.001)
        return threading.get_ident()

    async def main():
        ident = await yieldloop.from_asyncio(yieldloop.to_asyncio(inner))
        return ident != threading.get_ident()

    assert yieldloop.run(main)


def test_guest_uses_real_sockets_with_a_yieldloop_client():
    async def yl():
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.setblocking(False)
            sa = yieldloop.socket.from_stdlib_socket(a)
            sb = yieldloop.socket.from_stdlib_socket(b)

            async def echo():
                data = await sb.recv(100)
                await sb.sendall(data[::-1])

            async with yieldloop.TaskGroup() as tg:
                tg.spawn(echo)
                await yieldloop.sleep(0.01)
                await sa.sendall(b"abc")
                return await sa.recv(100)

    async def main():
        return await yieldloop.to_asyncio(yl)

    assert asyncio.run(main()) == b"cba"


def test_a_failing_tick_ends_the_guest_run_with_its_error():
    # A tick cannot run while another yieldloop run is active in the thread:
    # the guest run ends with that error, and nothing is left open.
    async def forever():
        await yieldloop.sleep_forever()

    async def host():
        blocker = Kernel()
        from yieldloop._kernel._state import local

        task = asyncio.create_task(yieldloop.to_asyncio(forever))
        await asyncio.sleep(0.01)
        local.kernel = blocker  # as if a plain run were active here
        try:
            await asyncio.sleep(0.01)
            [guest] = _hosts().values()
            guest.tick()
        finally:
            local.kernel = None
        with pytest.raises(RuntimeError, match="already active"):
            await task

    with no_leaks():
        asyncio.run(host())


def _hosts():
    from yieldloop._interop._asyncio import _HOSTS

    return dict(_HOSTS)


def test_closing_the_awaiting_coroutine_closes_the_guest_run():
    # The to_asyncio coroutine closed while it waits (as when its loop is
    # abandoned): the guest run is closed too, its finally blocks run.
    events = []

    async def yl():
        try:
            await yieldloop.sleep_forever()
        finally:
            events.append("finally ran")

    async def main():
        coro = yieldloop.to_asyncio(yl)
        step = coro.__await__()
        step.send(None)  # started: now waiting for the run to finish
        await asyncio.sleep(0.01)  # the guest runs meanwhile
        assert events == []
        coro.close()

    with no_leaks():
        asyncio.run(main())
    assert events == ["finally ran"]
