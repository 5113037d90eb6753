"""Queue, PriorityQueue, LifoQueue.

Layer 3. A ``get`` that finds the queue empty parks; a ``put`` hands its item
straight to the longest-waiting getter (the item is then that getter's, even
if it is cancelled before it runs). A ``put`` on a full queue parks with its
item; a ``get`` that frees a slot moves the longest-waiting putter's item in.
So a cancelled ``get`` never consumes an item and a cancelled ``put`` never
inserts one: a waiter is removed from the queue of waiters when aborted, and
an item only moves when its waiter is woken.
"""

from __future__ import annotations

import functools
import heapq
import types
from collections import OrderedDict, deque
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._kernel._errors import Cancelled, QueueEmpty, QueueFull
from ._common import Bound, enter_slow, kernel_of

if TYPE_CHECKING:
    from .._kernel._task import Task

__all__ = ["LifoQueue", "PriorityQueue", "Queue"]

T = TypeVar("T")


class Queue(Bound, Generic[T]):
    """A first-in, first-out queue of items between tasks.

    ``Queue(maxsize)``: ``put`` waits while the queue holds ``maxsize``
    items; ``maxsize=0`` (the default) means no limit. ``put`` and ``get``
    are cancellation points and serve waiting tasks first-in, first-out.
    """

    __slots__ = ("_getters", "_items", "_maxsize", "_pop", "_push", "_putters")

    def __init__(self, maxsize: int = 0) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, got {maxsize!r}")
        if maxsize < 0:
            raise ValueError(f"maxsize must be >= 0 (0 means unbounded), got {maxsize}")
        super().__init__()
        self._maxsize = maxsize
        self._items: Any = self._new_items()
        # C callables (bound methods or partials): no Python frame per item.
        self._push: Callable[[T], None]
        self._pop: Callable[[], T]
        self._push, self._pop = self._accessors(self._items)
        self._getters: OrderedDict[Task[Any], None] = OrderedDict()
        self._putters: OrderedDict[Task[Any], T] = OrderedDict()

    # The storage; subclasses change these two.
    def _new_items(self) -> Any:
        return deque()

    def _accessors(self, items: Any) -> tuple[Callable[[T], None], Callable[[], T]]:
        return items.append, items.popleft

    @property
    def maxsize(self) -> int:
        """The capacity (0: unbounded)."""
        return self._maxsize

    def qsize(self) -> int:
        """The number of items in the queue now."""
        return len(self._items)

    def empty(self) -> bool:
        """True if the queue holds no items."""
        return not self._items

    def full(self) -> bool:
        """True if ``put`` would wait."""
        return 0 < self._maxsize <= len(self._items)

    @types.coroutine
    def put(self, item: T) -> Generator[Any, Any, None]:
        """Put ``item`` in, waiting while the queue is full."""
        kernel = self._kernel  # enter(self), inlined: this is a hot path
        if kernel is None or (task := kernel.current_task) is None:
            kernel, task = enter_slow(self)
        if task._scope._eff:
            raise Cancelled()
        getters = self._getters
        if getters:
            getter, _ = getters.popitem(last=False)
            kernel.reschedule(getter, item)
            return
        if not (0 < self._maxsize <= len(self._items)):
            self._push(item)
            return
        self._putters[task] = item
        yield ("park", self._abort_put, self)

    def put_nowait(self, item: T) -> None:
        """Put ``item`` in, or raise :class:`QueueFull`."""
        kernel = kernel_of(self)
        getters = self._getters
        if getters:
            getter, _ = getters.popitem(last=False)
            kernel.reschedule(getter, item)
            return
        if 0 < self._maxsize <= len(self._items):
            raise QueueFull(f"the queue is full ({self._maxsize} items)")
        self._push(item)

    @types.coroutine
    def get(self) -> Generator[Any, Any, T]:
        """Take the next item out, waiting while the queue is empty."""
        kernel = self._kernel  # enter(self), inlined: this is a hot path
        if kernel is None or (task := kernel.current_task) is None:
            kernel, task = enter_slow(self)
        if task._scope._eff:
            raise Cancelled()
        if self._items:
            item = self._pop()
            if self._putters:
                self._admit_putter(kernel)
            return item
        self._getters[task] = None
        return (yield ("park", self._abort_get, self))  # type: ignore[no-any-return]

    def get_nowait(self) -> T:
        """Take the next item out, or raise :class:`QueueEmpty`."""
        kernel = kernel_of(self)
        if not self._items:
            raise QueueEmpty("the queue is empty")
        item = self._pop()
        if self._putters:
            self._admit_putter(kernel)
        return item

    def _admit_putter(self, kernel: Any) -> None:
        putter, item = self._putters.popitem(last=False)
        self._push(item)
        kernel.reschedule(putter)

    @staticmethod
    def _abort_get(task: Task[Any]) -> bool:
        # A plain function (no bound method to allocate per wait); the
        # primitive is the ``info`` the task parked with.
        owner = task._wait_info
        del owner._getters[task]
        return True

    @staticmethod
    def _abort_put(task: Task[Any]) -> bool:
        # A plain function (no bound method to allocate per wait); the
        # primitive is the ``info`` the task parked with.
        owner = task._wait_info
        del owner._putters[task]
        return True

    def statistics(self) -> dict[str, int]:
        """Items, capacity, and how many tasks wait to put and to get."""
        return {"qsize": len(self._items), "maxsize": self._maxsize,
                "tasks_waiting_put": len(self._putters), "tasks_waiting_get": len(self._getters)}

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {len(self._items)}/{self._maxsize or 'inf'} items, "
            f"{len(self._getters)} getting, {len(self._putters)} putting at {id(self):#x}>"
        )


class PriorityQueue(Queue[T]):
    """A :class:`Queue` that gives out the smallest item first (a heap);
    items must be comparable, e.g. ``(priority, seq, payload)`` tuples."""

    __slots__ = ()

    def _new_items(self) -> Any:
        return []

    def _accessors(self, items: Any) -> tuple[Callable[[T], None], Callable[[], T]]:
        return functools.partial(heapq.heappush, items), functools.partial(heapq.heappop, items)


class LifoQueue(Queue[T]):
    """A :class:`Queue` that gives out the newest item first (a stack)."""

    __slots__ = ()

    def _new_items(self) -> Any:
        return []

    def _accessors(self, items: Any) -> tuple[Callable[[T], None], Callable[[], T]]:
        return items.append, items.pop
