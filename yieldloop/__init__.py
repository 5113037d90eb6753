"""yieldloop: a small, fast, structured async runtime in pure Python.

A generator that can receive values is a coroutine; a scheduler that resumes
coroutines and looks at the *requests* they yield (``("sleep", 1.5)``) runs
many of them at once. yieldloop is that scheduler grown into a runtime: task
groups, cancellation and timeouts, both ``async``/``await`` and plain
generator coroutines on one kernel.

The public API, at a glance::

    run(main, *args, clock=None, on_emit=None)
    sleep(s), sleep_until(t), sleep_forever(), checkpoint()
    current_time(), current_task()
    TaskGroup(): spawn(fn, *args, name=None), start(fn, *args), cancel_scope
    Task: await task, name, done(), result(), exception(), cancel(), cancelled()
    gather(*aws)
    CancelScope(deadline=inf, shield=False), move_on_after(s), move_on_at(t),
    fail_after(s), fail_at(t)
    Cancelled, TaskCancelled, coroutine
    Event, Lock, Semaphore, Condition, CapacityLimiter
    Queue, PriorityQueue, LifoQueue, open_channel -> (SendChannel, ReceiveChannel)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._interop import install_anyio_backend
from ._io._connect import open_tcp_stream, open_udp_socket, open_unix_stream
from ._io._server import (
    SocketListener,
    open_tcp_listeners,
    open_unix_listeners,
    serve_listeners,
    serve_tcp,
    serve_unix,
)
from ._io._streams import (
    BufferedReceiveStream,
    BusyResourceError,
    DelimiterNotFound,
    IncompleteRead,
    SocketStream,
    Stream,
)
from ._io._tls import TLSStream
from ._kernel._clock import Clock, MonotonicClock
from ._kernel._errors import (
    BrokenResourceError,
    Cancelled,
    ClosedResourceError,
    EndOfChannel,
    QueueEmpty,
    QueueFull,
    RunFinishedError,
    TaskCancelled,
    WouldBlock,
)
from ._kernel._kernel import run
from ._kernel._requests import (
    Awaitable,
    checkpoint,
    coroutine,
    current_task,
    current_time,
    sleep,
    sleep_forever,
    sleep_until,
)
from ._kernel._scope import CancelScope
from ._kernel._task import Task
from ._os._executors import run_in_executor
from ._os._files import AsyncFile, open_file, wrap_file
from ._os._signals import SignalReceiver, open_signal_receiver
from ._os._subprocess import DEVNULL, PIPE, STDOUT, Process, open_process, run_process
from ._os._threads import (
    current_default_thread_limiter,
    from_thread,
    from_thread_run,
    from_thread_run_sync,
    to_thread,
)
from ._structured._group import TASK_STATUS_IGNORED, TaskGroup, TaskStatus, gather
from ._structured._timeouts import fail_after, fail_at, move_on_after, move_on_at
from ._sync._channel import ReceiveChannel, SendChannel, open_channel
from ._sync._event import Event
from ._sync._lock import CapacityLimiter, Condition, Lock, Semaphore
from ._sync._queue import LifoQueue, PriorityQueue, Queue

if TYPE_CHECKING:
    from ._interop._asyncio import from_asyncio, to_asyncio

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The asyncio bridges import asyncio, which is big: only when first used.
    if name in ("from_asyncio", "to_asyncio"):
        from ._interop import _asyncio

        value = getattr(_asyncio, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'yieldloop' has no attribute {name!r}")

install_anyio_backend()

__all__ = [
    "from_asyncio",
    "to_asyncio",
    "AsyncFile",
    "open_file",
    "run_in_executor",
    "wrap_file",
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "Process",
    "SignalReceiver",
    "current_default_thread_limiter",
    "from_thread",
    "from_thread_run",
    "from_thread_run_sync",
    "open_process",
    "open_signal_receiver",
    "run_process",
    "to_thread",
    "Awaitable",
    "BufferedReceiveStream",
    "BusyResourceError",
    "DelimiterNotFound",
    "IncompleteRead",
    "SocketListener",
    "SocketStream",
    "Stream",
    "TLSStream",
    "open_tcp_listeners",
    "open_unix_listeners",
    "open_tcp_stream",
    "open_udp_socket",
    "open_unix_stream",
    "serve_listeners",
    "serve_tcp",
    "serve_unix",
    "BrokenResourceError",
    "CapacityLimiter",
    "ClosedResourceError",
    "Condition",
    "EndOfChannel",
    "Event",
    "LifoQueue",
    "Lock",
    "PriorityQueue",
    "Queue",
    "QueueEmpty",
    "QueueFull",
    "ReceiveChannel",
    "Semaphore",
    "SendChannel",
    "WouldBlock",
    "open_channel",
    "Cancelled",
    "CancelScope",
    "Clock",
    "MonotonicClock",
    "RunFinishedError",
    "TASK_STATUS_IGNORED",
    "Task",
    "TaskCancelled",
    "TaskGroup",
    "TaskStatus",
    "__version__",
    "checkpoint",
    "coroutine",
    "current_task",
    "current_time",
    "fail_after",
    "fail_at",
    "gather",
    "move_on_after",
    "move_on_at",
    "run",
    "sleep",
    "sleep_forever",
    "sleep_until",
]
