"""Memory channels: ``open_channel(n)`` gives a send end and a receive end.

Layer 3. Both ends share one :class:`_ChannelState`: a buffer of at most
``max_buffer_size`` items, the tasks waiting to send (with their item) and to
receive, and how many clones of each end are open. As with :class:`Queue`,
items move only when a waiter is woken, so cancelled sends and receives
neither lose nor insert items.

Closing:

* using an end after *it* was closed raises :class:`ClosedResourceError`
  (and closing an end wakes the tasks blocked on that very end with it);
* once every send end is closed, receivers drain the buffer and then get
  :class:`EndOfChannel` (``async for`` ends);
* once every receive end is closed, senders get :class:`BrokenResourceError`
  and the buffered items are dropped.
"""

from __future__ import annotations

import math
import types
from collections import OrderedDict, deque
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from .._kernel._errors import (
    BrokenResourceError,
    Cancelled,
    ClosedResourceError,
    EndOfChannel,
    WouldBlock,
)
from ._common import DONE as _DONE
from ._common import AsyncResource, Bound, enter_slow, kernel_of

if TYPE_CHECKING:
    from .._kernel._kernel import Kernel
    from .._kernel._task import Task

__all__ = ["ReceiveChannel", "SendChannel", "open_channel"]

T = TypeVar("T")


class _ChannelState(Bound, Generic[T]):
    __slots__ = ("buffer", "max", "open_receivers", "open_senders", "receivers", "senders")

    def __init__(self, max_buffer_size: float) -> None:
        super().__init__()
        self.max = max_buffer_size
        self.buffer: deque[T] = deque()
        # task -> (the end it is blocked on, the item it sends)
        self.senders: OrderedDict[Task[Any], tuple[SendChannel[T], T]] = OrderedDict()
        # task -> the end it is blocked on
        self.receivers: OrderedDict[Task[Any], ReceiveChannel[T]] = OrderedDict()
        self.open_senders = 0
        self.open_receivers = 0

    def _describe(self) -> str:
        return "memory channel"

    def statistics(self) -> dict[str, Any]:
        return {
            "current_buffer_used": len(self.buffer),
            "max_buffer_size": self.max,
            "open_send_channels": self.open_senders,
            "open_receive_channels": self.open_receivers,
            "tasks_waiting_send": len(self.senders),
            "tasks_waiting_receive": len(self.receivers),
        }


class _End(AsyncResource):
    """What both ends share: closing, context managers, statistics."""

    __slots__ = ("__weakref__", "_closed", "_state")

    _state: _ChannelState[Any]
    _closed: bool

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def aclose(self) -> Any:
        """Close this end (awaitable, for symmetry with other resources)."""
        self.close()
        return _DONE

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statistics(self) -> dict[str, Any]:
        """Buffer use, open ends and waiting tasks of the channel."""
        return self._state.statistics()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {state} at {id(self):#x}>"


class SendChannel(_End, Generic[T]):
    """The sending end of a memory channel (see :func:`open_channel`)."""

    __slots__ = ()

    def __init__(self, state: _ChannelState[T]) -> None:
        self._state = state
        self._closed = False
        state.open_senders += 1

    def _try_send(self, kernel: Kernel, value: T) -> bool:
        # Deliver ``value`` without waiting if possible: to the longest-waiting
        # receiver, else into the buffer. False if the sender must wait.
        state = self._state
        if self._closed:
            raise ClosedResourceError("this send channel was closed")
        if not state.open_receivers:
            raise BrokenResourceError("every receive channel was closed")
        receivers = state.receivers
        if receivers:
            receiver, _ = receivers.popitem(last=False)
            kernel.reschedule(receiver, value)
            return True
        if len(state.buffer) < state.max:
            state.buffer.append(value)
            return True
        return False

    @types.coroutine
    def send(self, value: T) -> Generator[Any, Any, None]:
        """Send ``value``, waiting while the buffer is full. A cancellation
        point; a cancelled send does not deliver ``value``."""
        state = self._state
        kernel = state._kernel  # enter(state), inlined: a hot path
        if kernel is None or (task := kernel.current_task) is None:
            kernel, task = enter_slow(state)
        if task._scope._eff:
            raise Cancelled()
        if self._try_send(kernel, value):
            return
        state.senders[task] = (self, value)
        yield ("park", self._abort, self)

    def send_nowait(self, value: T) -> None:
        """Send ``value`` if it fits now, else raise :class:`WouldBlock`."""
        if not self._try_send(kernel_of(self._state), value):
            raise WouldBlock("the channel's buffer is full")

    @staticmethod
    def _abort(task: Task[Any]) -> bool:
        # A plain function (no bound method to allocate per wait); the
        # primitive is the ``info`` the task parked with.
        owner = task._wait_info
        del owner._state.senders[task]
        return True

    def clone(self) -> SendChannel[T]:
        """Another send end of the same channel; receivers see the end of the
        channel only when every send end, clones included, is closed."""
        if self._closed:
            raise ClosedResourceError("cannot clone a closed send channel")
        return SendChannel(self._state)

    def close(self) -> None:
        """Close this end (idempotent). Tasks blocked sending on it get
        :class:`ClosedResourceError`; when it is the last send end, waiting
        receivers get :class:`EndOfChannel`."""
        if self._closed:
            return
        self._closed = True
        state = self._state
        state.open_senders -= 1
        kernel = state._kernel
        if state.senders:
            mine = [t for t, (end, _v) in state.senders.items() if end is self]
            for t in mine:
                del state.senders[t]
                _throw(kernel, t, ClosedResourceError("the send channel was closed"))
        if not state.open_senders and state.receivers:
            receivers = state.receivers
            state.receivers = OrderedDict()
            for t in receivers:
                _throw(kernel, t, EndOfChannel())



class ReceiveChannel(_End, Generic[T]):
    """The receiving end of a memory channel (see :func:`open_channel`).
    ``async for item in channel`` receives until :class:`EndOfChannel`."""

    __slots__ = ()

    def __init__(self, state: _ChannelState[T]) -> None:
        self._state = state
        self._closed = False
        state.open_receivers += 1

    def _try_receive(self, kernel: Kernel) -> Any:
        # An item that is ready now (from the buffer, or straight from a
        # waiting sender when unbuffered), or _EMPTY.
        state = self._state
        if self._closed:
            raise ClosedResourceError("this receive channel was closed")
        buffer = state.buffer
        senders = state.senders
        if buffer:
            value = buffer.popleft()
            if senders:  # a slot was freed: admit the longest-waiting sender
                sender, (_end, item) = senders.popitem(last=False)
                buffer.append(item)
                kernel.reschedule(sender)
            return value
        if senders:  # an unbuffered channel: take it from the sender
            sender, (_end, item) = senders.popitem(last=False)
            kernel.reschedule(sender)
            return item
        if not state.open_senders:
            raise EndOfChannel()
        return _EMPTY

    @types.coroutine
    def receive(self) -> Generator[Any, Any, T]:
        """Receive the next item, waiting for one. Raises :class:`EndOfChannel`
        once every send end is closed and the buffer is empty. A cancellation
        point; a cancelled receive takes no item."""
        state = self._state
        kernel = state._kernel  # enter(state), inlined: a hot path
        if kernel is None or (task := kernel.current_task) is None:
            kernel, task = enter_slow(state)
        if task._scope._eff:
            raise Cancelled()
        value = self._try_receive(kernel)
        if value is not _EMPTY:
            return value  # type: ignore[no-any-return]
        state.receivers[task] = self
        return (yield ("park", self._abort, self))  # type: ignore[no-any-return]

    def receive_nowait(self) -> T:
        """Receive an item that is ready now, else raise :class:`WouldBlock`
        (or :class:`EndOfChannel`)."""
        value = self._try_receive(kernel_of(self._state))
        if value is _EMPTY:
            raise WouldBlock("no item is ready")
        return value  # type: ignore[no-any-return]

    @staticmethod
    def _abort(task: Task[Any]) -> bool:
        # A plain function (no bound method to allocate per wait); the
        # primitive is the ``info`` the task parked with.
        owner = task._wait_info
        del owner._state.receivers[task]
        return True

    def clone(self) -> ReceiveChannel[T]:
        """Another receive end of the same channel (items go to whichever
        end asks first)."""
        if self._closed:
            raise ClosedResourceError("cannot clone a closed receive channel")
        return ReceiveChannel(self._state)

    def close(self) -> None:
        """Close this end (idempotent). Tasks blocked receiving on it get
        :class:`ClosedResourceError`; when it is the last receive end, the
        buffer is dropped and waiting senders get :class:`BrokenResourceError`."""
        if self._closed:
            return
        self._closed = True
        state = self._state
        state.open_receivers -= 1
        kernel = state._kernel
        if state.receivers:
            mine = [t for t, end in state.receivers.items() if end is self]
            for t in mine:
                del state.receivers[t]
                _throw(kernel, t, ClosedResourceError("the receive channel was closed"))
        if not state.open_receivers:
            state.buffer.clear()
            senders = state.senders
            state.senders = OrderedDict()
            for t in senders:
                _throw(kernel, t, BrokenResourceError("every receive channel was closed"))

    def __aiter__(self) -> ReceiveChannel[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except EndOfChannel:
            raise StopAsyncIteration from None



_EMPTY: Any = object()


def _throw(kernel: Kernel | None, task: Task[Any], exc: BaseException) -> None:
    assert kernel is not None  # a task only waits on a channel bound to its run
    kernel.reschedule_throw(task, exc)




def open_channel(max_buffer_size: float) -> tuple[SendChannel[Any], ReceiveChannel[Any]]:
    """Make a channel: ``send, receive = open_channel(10)``.

    ``max_buffer_size`` is how many items may wait in the channel before
    ``send`` blocks: 0 makes every send wait for a receiver (a rendezvous),
    ``math.inf`` never blocks. Both ends are (async) context managers that
    close them, and can be cloned for several producers or consumers.
    """
    if isinstance(max_buffer_size, bool) or not (
        isinstance(max_buffer_size, int)
        or (isinstance(max_buffer_size, float) and max_buffer_size == math.inf)
    ):
        raise TypeError(f"max_buffer_size must be an int or math.inf, got {max_buffer_size!r}")
    if max_buffer_size < 0:
        raise ValueError(f"max_buffer_size must be >= 0, got {max_buffer_size!r}")
    state: _ChannelState[Any] = _ChannelState(max_buffer_size)
    return SendChannel(state), ReceiveChannel(state)
