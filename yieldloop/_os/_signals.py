"""Receiving Unix signals as an async iterator.

Layer 4. ::

    with yieldloop.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            ...

How it works: Python runs a signal's handler in the main thread, between two
bytecodes - that is, somewhere in the middle of the loop or of a task. So the
handler installed here does as little as possible: it records the signal in
an ordered set and asks the loop (with ``call_soon_threadsafe``, whose wake-up
write also ends a blocking poll) to run :meth:`SignalReceiver._wake` at a
moment when the kernel's state is consistent; that callback reschedules the
task parked in :meth:`SignalReceiver.receive`. (The C-level handler also
writes to the kernel's wakeup fd when ``run`` installed one.)

Coalescing: the receiver keeps *which* signals are pending, not how many
times each arrived, in the order they first arrived. A signal that arrives
again before it was received is counted once. (The operating system
coalesces the same way: a pending standard signal is not queued twice.)

SIGINT may be received too: while the ``with`` block is open, Ctrl-C is
delivered to the receiver instead of cancelling the run; the run's own
handling comes back when the block exits.

Signals still pending when the block exits are raised again with
:func:`signal.raise_signal` after the previous handlers are restored, so
none is lost (a pending SIGTERM with the default handler then ends the
process, as it would have without the receiver).
"""

from __future__ import annotations

import signal
import threading
import types
from collections import OrderedDict
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from .._kernel._errors import Cancelled, ClosedResourceError
from .._kernel._requests import Awaitable
from .._kernel._state import current_kernel

if TYPE_CHECKING:
    from .._kernel._kernel import Kernel
    from .._kernel._task import Task

__all__ = ["SignalReceiver", "open_signal_receiver"]

_Handler = Any  # what signal.signal() returns: a callable, SIG_DFL, SIG_IGN or None


class SignalReceiver:
    """The signals caught by :func:`open_signal_receiver`, as an async
    iterator of signal numbers (``async for signum in receiver``), or one at a
    time with ``await receiver.receive()`` / ``yield from receiver.receive()``.
    One task at a time may receive."""

    #: A task parked on this is woken from outside the loop (a thread, a
    #: signal): on virtual time, the kernel does not call it a deadlock.
    wakes_from_outside = True

    __slots__ = ("_closed", "_kernel", "_pending", "_signals", "_wake_scheduled", "_waiter")

    def __init__(self, kernel: Kernel, signals: tuple[int, ...]) -> None:
        self._kernel = kernel
        self._signals = signals
        self._pending: OrderedDict[int, None] = OrderedDict()
        self._waiter: Task[Any] | None = None
        self._wake_scheduled = False
        self._closed = False

    # Runs in the main thread at any bytecode boundary, even inside the kernel.
    # Each step here is one C-level operation, safe to interleave.
    def _handler(self, signum: int, frame: types.FrameType | None) -> None:
        self._pending[signum] = None
        if not self._wake_scheduled:
            self._wake_scheduled = True
            try:
                self._kernel.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the run has finished
                pass

    def _wake(self) -> None:  # a loop callback: kernel state is consistent here
        self._wake_scheduled = False
        task = self._waiter
        if task is not None and self._pending:
            self._waiter = None
            self._kernel.reschedule(task)

    def _abort(self, task: Task[Any]) -> bool:
        self._waiter = None
        return True

    def pending(self) -> list[int]:
        """The signals caught and not received yet, oldest first."""
        return list(self._pending)

    @types.coroutine
    def _receive(self) -> Generator[Any, Any, int]:
        kernel = current_kernel()
        task = kernel.current_task
        if task is None:
            raise RuntimeError("SignalReceiver.receive() must be called from inside a task")
        if self._closed:
            raise ClosedResourceError("this signal receiver is closed (its with block exited)")
        if task._scope._eff:
            raise Cancelled()
        if self._waiter is not None:
            raise RuntimeError(
                f"another task ({self._waiter.name!r}) is already receiving from this "
                "signal receiver"
            )
        if self._pending:
            yield ("reschedule",)  # let others run; not a cancellation point
        else:
            self._waiter = task
            yield ("park", self._abort, self)
        if not self._pending:  # closed while we waited
            raise ClosedResourceError("this signal receiver was closed")
        # popitem is one C call: a handler cannot run in the middle of it.
        signum, _ = self._pending.popitem(last=False)
        return signum

    def receive(self) -> Awaitable[int]:
        """Wait for the next signal and return its number. A cancellation point."""
        return cast("Awaitable[int]", self._receive())

    def __aiter__(self) -> SignalReceiver:
        return self

    def __anext__(self) -> Awaitable[int]:
        return self.receive()

    def _close(self) -> None:
        self._closed = True
        task = self._waiter
        if task is not None:
            self._waiter = None
            self._kernel.reschedule_throw(
                task, ClosedResourceError("the signal receiver was closed while waiting")
            )

    def __repr__(self) -> str:
        names = ", ".join(_name(s) for s in self._signals)
        state = "closed" if self._closed else f"{len(self._pending)} pending"
        return f"<SignalReceiver for {names}, {state}>"


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


@contextmanager
def open_signal_receiver(*signals: int) -> Iterator[SignalReceiver]:
    """Catch ``signals`` while the ``with`` block is open::

        with open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as signals:
            async for signum in signals:
                print("got", signal.Signals(signum).name)

    Installs handlers that only record the signal (repeats of a signal not
    yet received are coalesced into one) and restores the previous handlers
    when the block exits; signals still pending then are raised again, so the
    restored handlers see them. Must be used inside a run, in the main thread
    (only the main thread can set signal handlers); SIGINT is allowed and
    replaces the run's Ctrl-C handling inside the block. Nested receivers must
    exit in reverse order of entry.
    """
    if not signals:
        raise TypeError("open_signal_receiver() needs at least one signal")
    kernel = current_kernel()
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "open_signal_receiver() only works in the main thread (Python runs "
            "signal handlers there), and yieldloop.run() is running in "
            f"{threading.current_thread().name!r}"
        )
    nums: list[int] = []
    for sig in signals:
        if isinstance(sig, bool) or not isinstance(sig, int):
            raise TypeError(f"open_signal_receiver() needs signal numbers, got {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"{sig!r} is not a valid signal number")
        if sig not in nums:
            nums.append(sig)
    receiver = SignalReceiver(kernel, tuple(nums))
    previous: list[tuple[int, _Handler]] = []
    try:
        for sig in nums:
            previous.append((sig, signal.signal(sig, receiver._handler)))
        yield receiver
    finally:
        for sig, old in reversed(previous):
            # None: the old handler was not set from Python; the default is
            # the closest we can restore.
            signal.signal(sig, signal.SIG_DFL if old is None else old)
        receiver._close()
        pending = list(receiver._pending)
        receiver._pending.clear()
        for sig in pending:
            signal.raise_signal(sig)
