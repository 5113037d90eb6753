"""Bridges to asyncio, both ways.

Layer 5 (tools around the runtime).

* :func:`to_asyncio` runs a yieldloop program *inside* a running asyncio
  loop, as a guest: the kernel does one round per tick (``Kernel.guest_tick``),
  asyncio calls the ticks (``call_soon``/``call_later``), and the kernel's
  poller fd is watched with ``loop.add_reader``, so I/O wake-ups, timers and
  callbacks from other threads all reach the guest without a thread.
* :func:`from_asyncio` awaits asyncio code from a yieldloop task. Inside a
  guest run it becomes an asyncio task on the host loop (same thread, a few
  microseconds); in a plain :func:`yieldloop.run` it runs on an asyncio loop
  in a helper thread started on first use and stopped when the run ends (two
  thread hops per call, tens of microseconds).

Cancellation crosses in both directions: cancelling the asyncio task that
awaits ``to_asyncio`` cancels every yieldloop task of the guest run, and the
await raises ``asyncio.CancelledError`` once they have finished; cancelling a
yieldloop task in ``from_asyncio`` cancels the asyncio task, waits for it to
finish, then raises :class:`~yieldloop.Cancelled`.
"""

from __future__ import annotations

import asyncio
import math
import threading
import types
import weakref
from collections.abc import Awaitable as AnyAwaitable
from collections.abc import Generator
from typing import Any, TypeVar, cast

from .._kernel._errors import Cancelled
from .._kernel._kernel import Kernel, _name_of, coerce_coroutine
from .._kernel._requests import Awaitable
from .._kernel._state import current_kernel
from .._kernel._task import Task

__all__ = ["from_asyncio", "to_asyncio"]

T = TypeVar("T")

#: Guest runs and the asyncio loop that hosts each.
_HOSTS: weakref.WeakKeyDictionary[Kernel, _AsyncioHost] = weakref.WeakKeyDictionary()
#: Plain runs and the asyncio loop (in a thread of its own) serving their from_asyncio calls.
_BRIDGES: weakref.WeakKeyDictionary[Kernel, _BridgeLoop] = weakref.WeakKeyDictionary()


# ====================================================== yieldloop in asyncio


class _AsyncioHost:
    """Drives one guest run from an asyncio loop."""

    __slots__ = ("done", "fd", "handle", "kernel", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, kernel: Kernel) -> None:
        self.loop = loop
        self.kernel = kernel
        self.done: asyncio.Future[None] = loop.create_future()
        self.handle: asyncio.Handle | None = None
        self.fd = -1

    def start(self, coro: Any, name: str) -> None:
        self.fd = self.kernel.guest_start(coro, name)
        try:
            self.loop.add_reader(self.fd, self.tick)
        except BaseException:
            self.kernel.guest_finish()
            raise
        _HOSTS[self.kernel] = self
        self.handle = self.loop.call_soon(self.tick)

    def tick(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        if self.done.done():
            return
        try:
            delay = self.kernel.guest_tick()
        except BaseException as exc:  # not the program's errors: the tick's own
            if self.kernel._guest_error is None:
                self.kernel._guest_error = exc  # guest_finish raises it
            delay = None
        if delay is None:
            self.stop()
            self.done.set_result(None)
        elif delay <= 0:
            self.handle = self.loop.call_soon(self.tick)
        elif delay != math.inf:
            self.handle = self.loop.call_later(delay, self.tick)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            self.fd = -1
        _HOSTS.pop(self.kernel, None)


async def to_asyncio(main: Any, *args: Any) -> Any:
    """Run a yieldloop program inside the running asyncio loop and return its
    result (or raise its exception), like :func:`yieldloop.run` does.

    ``main`` is what :func:`yieldloop.run` accepts (an async function or a
    generator function called with ``args``, a coroutine, an awaitable). It
    runs as a *guest* of asyncio: yieldloop's scheduler advances one round
    per asyncio callback, and its I/O waits are watched by asyncio's own
    poller, so neither blocks the other and both share one thread. Each
    ``to_asyncio`` call is a separate yieldloop run (its own tasks, cancel
    scopes and clock); from inside it, :func:`from_asyncio` calls back into
    the host loop directly.

    Cancelling the asyncio task that awaits this cancels the whole yieldloop
    run; once its tasks have finished (``finally`` blocks included), this
    raises :class:`asyncio.CancelledError`. Needs epoll or kqueue (Linux,
    macOS, the BSDs).
    """
    loop = asyncio.get_running_loop()
    kernel = Kernel()
    coro = coerce_coroutine(main, args, "to_asyncio")
    host = _AsyncioHost(loop, kernel)
    host.start(coro, _name_of(main, coro))
    cancelled = False
    try:
        while not host.done.done():
            try:
                await asyncio.shield(host.done)
            except asyncio.CancelledError:
                cancelled = True
                if not host.done.done() and not kernel.closed:
                    kernel.call_soon_threadsafe(kernel.root_scope.cancel)
    finally:
        if not host.done.done():
            # This coroutine itself is being closed (its loop is going away):
            # close what is left of the run, its finally blocks included.
            host.stop()
            try:
                kernel.guest_finish()
            except BaseException:
                pass  # already leaving with an exception of our own
    try:
        result = kernel.guest_finish()
    except Cancelled:
        if cancelled:
            raise asyncio.CancelledError() from None
        raise
    if cancelled:
        raise asyncio.CancelledError()
    return result


# ====================================================== asyncio in yieldloop


class _BridgeLoop:
    """An asyncio loop in a thread of its own, for one plain yieldloop run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(
            target=self._main, args=(started,), name="yieldloop asyncio bridge", daemon=True
        )
        self.thread.start()
        started.wait()

    def _main(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(started.set)
        try:
            self.loop.run_forever()
        finally:
            asyncio.set_event_loop(None)

    async def _shutdown(self) -> None:
        # What asyncio.run does at its end: cancel what is left, finalize
        # async generators, stop the default executor.
        me = asyncio.current_task()
        left = [t for t in asyncio.all_tasks() if t is not me]
        for t in left:
            t.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        await self.loop.shutdown_asyncgens()
        await self.loop.shutdown_default_executor()

    def close(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
            self.loop.close()


def _bridge_for(kernel: Kernel) -> asyncio.AbstractEventLoop:
    bridge = _BRIDGES.get(kernel)
    if bridge is None:
        bridge = _BRIDGES[kernel] = _BridgeLoop()
        kernel.call_at_close(bridge.close)
    return bridge.loop




class _AsyncioCall:
    """One :func:`from_asyncio` call: its asyncio side and its yieldloop side."""

    #: Woken by the asyncio loop, not by another yieldloop task: on virtual
    #: time this is not a deadlock.
    wakes_from_outside = True

    __slots__ = ("aw", "done", "fut", "kernel", "loop", "requested", "task")

    def __init__(
        self, kernel: Kernel, task: Task[Any], loop: asyncio.AbstractEventLoop, aw: Any
    ) -> None:
        self.kernel = kernel
        self.task = task
        self.loop = loop
        self.aw = aw
        self.fut: asyncio.Future[Any] | None = None
        self.requested = False  # cancellation asked for by the yieldloop side
        self.done = False

    def __repr__(self) -> str:
        what = self.fut if self.fut is not None else self.aw
        return f"<from_asyncio {what!r}>"

    # ---- on the asyncio loop
    def start(self) -> None:
        try:
            self.fut = asyncio.ensure_future(self.aw, loop=self.loop)
        except BaseException as exc:  # e.g. a future of another loop
            self.fut = self.loop.create_future()
            self.fut.set_exception(exc)
        self.aw = None
        if self.requested:
            self.fut.cancel()
        self.fut.add_done_callback(self._done)

    def cancel(self) -> None:
        if self.fut is not None:
            self.fut.cancel()

    def _done(self, fut: asyncio.Future[Any]) -> None:
        try:
            self.kernel.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the run is over; nobody waits any more
            pass

    # ---- on the yieldloop loop
    def _deliver(self) -> None:
        if not self.done:
            self.done = True
            self.kernel.reschedule(self.task)

    def abort(self, task: Task[Any]) -> bool:
        if not self.requested:
            self.requested = True
            self.loop.call_soon_threadsafe(self.cancel)
        return False  # wait until the asyncio side has finished


@types.coroutine
def _from_asyncio(aw: Any) -> Generator[Any, Any, Any]:
    if not (asyncio.isfuture(aw) or isinstance(aw, AnyAwaitable)):
        raise TypeError(
            f"from_asyncio() needs an asyncio coroutine, task, future or awaitable, got {aw!r}"
        )
    try:
        kernel = current_kernel()
        task = kernel.current_task
        if task is None:
            raise RuntimeError("from_asyncio() must be called from inside a task")
        host = _HOSTS.get(kernel)
        loop = host.loop if host is not None else _bridge_for(kernel)
        call = _AsyncioCall(kernel, task, loop, aw)
        loop.call_soon_threadsafe(call.start)
    except BaseException:
        if isinstance(aw, types.CoroutineType):
            aw.close()  # never started: no "never awaited" warning
        raise
    yield ("park", call.abort, call)
    fut = call.fut
    assert fut is not None and fut.done()
    call.fut = None
    if fut.cancelled():
        if call.requested:
            raise Cancelled()
        raise asyncio.CancelledError()  # cancelled by asyncio code, not by us
    exc = fut.exception()
    if exc is not None:
        try:
            raise exc
        finally:
            del exc, fut
    if task._scope._eff:
        raise Cancelled()
    return fut.result()


def from_asyncio(aw: AnyAwaitable[T] | asyncio.Future[T]) -> Awaitable[T]:
    """Await asyncio code (a coroutine, task, future or other awaitable made
    for asyncio) from a yieldloop task, and return its result or raise its
    exception.

    ``await from_asyncio(client.fetch(url))`` in async code,
    ``yield from from_asyncio(...)`` in a generator coroutine. Inside
    :func:`to_asyncio` the coroutine runs as a task of the host asyncio
    loop, in this thread. In a plain :func:`yieldloop.run`, it runs on an
    asyncio loop in a helper thread, one per run, started on the first call
    and stopped (remaining asyncio tasks cancelled) when the run ends; every
    call then costs two thread hops, and a future passed in must belong to
    that loop.

    Cancelling the calling task cancels the asyncio task, waits for it to
    finish, then raises :class:`~yieldloop.Cancelled`. If the asyncio side
    is cancelled by asyncio code, :class:`asyncio.CancelledError` is raised.
    """
    return cast("Awaitable[T]", _from_asyncio(aw))
