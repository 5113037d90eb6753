"""State-machine tests for Queue and memory channels.

Hypothesis builds a random *program* with a :class:`RuleBasedStateMachine`:
each rule appends one operation (spawn a getter/putter/sender/receiver task,
a ``*_nowait`` call, cancel a task, close or clone an end, or "settle": let
every task run until all are blocked). The teardown runs the program inside
one :func:`yieldloop.run` on :class:`~yieldloop.testing.VirtualClock`, with
every spawned task in one long-lived :class:`TaskGroup`, and checks it step
by step against a small model of what the primitive promises:

* waiting tasks are served first-in, first-out, and the queue kind decides
  the order of stored items (FIFO, LIFO, smallest first);
* a cancelled get/receive takes no item, a cancelled put/send inserts none;
  a task that was already handed its item (or whose item was already taken)
  when it is cancelled completes normally: nothing is lost or duplicated;
* closing ends wakes exactly the tasks the model says, with the right error;
* after every operation, ``statistics()`` (buffer use, open ends, blocked
  tasks) matches the model.

Operations done by the main task are synchronous (no checkpoint), so several
of them can happen before any woken task runs: this is how a task gets
cancelled after it was woken with an item but before it ran.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    rule,
)

import yieldloop
from yieldloop import (
    BrokenResourceError,
    Cancelled,
    ClosedResourceError,
    EndOfChannel,
    LifoQueue,
    PriorityQueue,
    Queue,
    QueueEmpty,
    QueueFull,
    TaskGroup,
    WouldBlock,
    open_channel,
    sleep,
)
from yieldloop.testing import VirtualClock

pytestmark = pytest.mark.timeout(120)

SETTINGS = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

EMPTY: Any = object()


def vrun(main: Any, *args: Any) -> Any:
    return yieldloop.run(main, *args, clock=VirtualClock())


async def settle() -> None:
    # On the virtual clock, time moves only once every other task is blocked.
    await sleep(1)


# ==================================================================== Queue


class QueueModel:
    """What a Queue(maxsize) of one kind should do, one operation at a time."""

    def __init__(self, maxsize: int, kind: str) -> None:
        self.maxsize = maxsize
        self.kind = kind
        self.items: list[int] | deque[int] = deque() if kind == "fifo" else []
        self.getters: list[int] = []  # parked, in arrival order
        self.putters: list[tuple[int, int]] = []  # (task id, item), parked
        self.pending: list[tuple[int, str, int | None]] = []  # spawned, not yet run
        self.outcomes: dict[int, tuple[Any, ...]] = {}

    def _push(self, item: int) -> None:
        if self.kind == "priority":
            heapq.heappush(self.items, item)  # type: ignore[arg-type]
        else:
            self.items.append(item)

    def _pop(self) -> int:
        if self.kind == "fifo":
            return self.items.popleft()  # type: ignore[union-attr]
        if self.kind == "lifo":
            return self.items.pop()
        return heapq.heappop(self.items)  # type: ignore[arg-type]

    def _full(self) -> bool:
        return 0 < self.maxsize <= len(self.items)

    def _put(self, item: int) -> bool:
        if self.getters:
            self.outcomes[self.getters.pop(0)] = ("got", item)
            return True
        if self._full():
            return False
        self._push(item)
        return True

    def _get(self) -> Any:
        if not self.items:
            return EMPTY
        item = self._pop()
        if self.putters:
            tid, pitem = self.putters.pop(0)
            self._push(pitem)
            self.outcomes[tid] = ("put",)
        return item

    def put_nowait(self, item: int) -> str:
        return "ok" if self._put(item) else "full"

    def get_nowait(self) -> tuple[Any, ...]:
        item = self._get()
        return ("empty",) if item is EMPTY else ("ok", item)

    def spawn(self, tid: int, op: str, item: int | None) -> None:
        self.pending.append((tid, op, item))

    def cancel(self, tid: int) -> None:
        for i, (p, _op, _item) in enumerate(self.pending):
            if p == tid:
                del self.pending[i]
                self.outcomes[tid] = ("cancelled",)
                return
        if tid in self.getters:
            self.getters.remove(tid)
            self.outcomes[tid] = ("cancelled",)
            return
        for i, (p, _item) in enumerate(self.putters):
            if p == tid:
                del self.putters[i]
                self.outcomes[tid] = ("cancelled",)
                return
        # already finished (or woken with its result): nothing changes

    def settle(self) -> None:
        # Spawned tasks take their first step in spawn order; tasks that were
        # woken only record their result, which touches no queue state.
        for tid, op, item in self.pending:
            if op == "get":
                got = self._get()
                if got is EMPTY:
                    self.getters.append(tid)
                else:
                    self.outcomes[tid] = ("got", got)
            else:
                assert item is not None
                if self._put(item):
                    self.outcomes[tid] = ("put",)
                else:
                    self.putters.append((tid, item))
        self.pending.clear()

    def cancel_all(self) -> None:
        for tid, _op, _item in self.pending:
            self.outcomes[tid] = ("cancelled",)
        for tid in self.getters:
            self.outcomes[tid] = ("cancelled",)
        for tid, _item in self.putters:
            self.outcomes[tid] = ("cancelled",)
        self.pending.clear()
        self.getters.clear()
        self.putters.clear()

    def statistics(self) -> dict[str, int]:
        return {
            "qsize": len(self.items),
            "maxsize": self.maxsize,
            "tasks_waiting_put": len(self.putters),
            "tasks_waiting_get": len(self.getters),
        }


QUEUE_CLASSES = {"fifo": Queue, "lifo": LifoQueue, "priority": PriorityQueue}


def run_queue_program(maxsize: int, kind: str, program: list[tuple[Any, ...]]) -> None:
    model = QueueModel(maxsize, kind)
    outcomes: dict[int, tuple[Any, ...]] = {}
    nowait_gets: list[int] = []
    nowait_puts: list[int] = []

    async def getter(q: Any, tid: int) -> None:
        try:
            item = await q.get()
        except Cancelled:
            outcomes[tid] = ("cancelled",)
            raise
        outcomes[tid] = ("got", item)

    def gen_getter(q: Any, tid: int) -> Any:
        try:
            item = yield from q.get()
        except Cancelled:
            outcomes[tid] = ("cancelled",)
            raise
        outcomes[tid] = ("got", item)

    async def putter(q: Any, tid: int, item: int) -> None:
        try:
            await q.put(item)
        except Cancelled:
            outcomes[tid] = ("cancelled",)
            raise
        outcomes[tid] = ("put",)

    def gen_putter(q: Any, tid: int, item: int) -> Any:
        try:
            yield from q.put(item)
        except Cancelled:
            outcomes[tid] = ("cancelled",)
            raise
        outcomes[tid] = ("put",)

    async def main() -> None:
        q = QUEUE_CLASSES[kind](maxsize)
        tasks: dict[int, Any] = {}
        async with TaskGroup() as tg:
            for step, op in enumerate(program):
                name = op[0]
                if name == "spawn_get":
                    _, tid, gen = op
                    tasks[tid] = tg.spawn(gen_getter if gen else getter, q, tid)
                    model.spawn(tid, "get", None)
                elif name == "spawn_put":
                    _, tid, item, gen = op
                    tasks[tid] = tg.spawn(gen_putter if gen else putter, q, tid, item)
                    model.spawn(tid, "put", item)
                elif name == "put_nowait":
                    item = op[1]
                    try:
                        q.put_nowait(item)
                        real = "ok"
                    except QueueFull:
                        real = "full"
                    assert real == model.put_nowait(item), (step, op)
                    if real == "ok":
                        nowait_puts.append(item)
                elif name == "get_nowait":
                    try:
                        got: tuple[Any, ...] = ("ok", q.get_nowait())
                    except QueueEmpty:
                        got = ("empty",)
                    assert got == model.get_nowait(), (step, op)
                    if got[0] == "ok":
                        nowait_gets.append(got[1])
                elif name == "cancel":
                    tasks[op[1]].cancel()
                    model.cancel(op[1])
                elif name == "settle":
                    await settle()
                    model.settle()
                    assert outcomes == model.outcomes, (step, op)
                else:  # pragma: no cover
                    raise AssertionError(op)
                assert q.statistics() == model.statistics(), (step, op)
                assert q.qsize() == len(model.items)
                assert q.full() == model._full()
                assert q.empty() == (not model.items)
            await settle()
            model.settle()
            assert outcomes == model.outcomes
            assert q.statistics() == model.statistics()
            tg.cancel_scope.cancel()
        model.cancel_all()
        assert outcomes == model.outcomes
        # drain what is left, in the queue's own order
        left = []
        while True:
            try:
                left.append(q.get_nowait())
            except QueueEmpty:
                break
        expected_left = []
        while model.items:
            expected_left.append(model._pop())
        assert left == expected_left
        # accounting, independent of the model: every item that went in came
        # out exactly once, and nothing else came out
        put_items = nowait_puts + [
            item
            for op in program
            if op[0] == "spawn_put" and outcomes[op[1]] == ("put",)
            for item in [op[2]]
        ]
        got_items = nowait_gets + [o[1] for o in outcomes.values() if o[0] == "got"] + left
        assert len(got_items) == len(set(got_items)), "an item came out twice"
        assert sorted(got_items) == sorted(put_items)

    vrun(main)


class QueueMachine(RuleBasedStateMachine):
    tasks = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        self.program: list[tuple[Any, ...]] = []
        self.next_id = 0
        self.next_item = 0
        self.maxsize = 0
        self.kind = "fifo"

    def _item(self) -> int:
        self.next_item += 1
        return self.next_item

    def _tid(self) -> int:
        self.next_id += 1
        return self.next_id

    @initialize(maxsize=st.integers(0, 3), kind=st.sampled_from(sorted(QUEUE_CLASSES)))
    def setup(self, maxsize: int, kind: str) -> None:
        self.maxsize = maxsize
        self.kind = kind

    @rule(target=tasks, gen=st.booleans())
    def spawn_getter(self, gen: bool) -> int:
        tid = self._tid()
        self.program.append(("spawn_get", tid, gen))
        return tid

    @rule(target=tasks, gen=st.booleans())
    def spawn_putter(self, gen: bool) -> int:
        tid = self._tid()
        self.program.append(("spawn_put", tid, self._item(), gen))
        return tid

    @rule()
    def put_nowait(self) -> None:
        self.program.append(("put_nowait", self._item()))

    @rule()
    def get_nowait(self) -> None:
        self.program.append(("get_nowait",))

    @rule(tid=tasks)
    def cancel(self, tid: int) -> None:
        self.program.append(("cancel", tid))

    @rule()
    def settle(self) -> None:
        self.program.append(("settle",))

    def teardown(self) -> None:
        run_queue_program(self.maxsize, self.kind, self.program)


TestQueueMachine = QueueMachine.TestCase
TestQueueMachine.settings = SETTINGS


# ================================================================= channels


class ChannelModel:
    """What a memory channel should do, one operation at a time."""

    def __init__(self, max_buffer: float) -> None:
        self.max = max_buffer
        self.buffer: deque[int] = deque()
        self.senders: list[tuple[int, int, int]] = []  # (task id, end, item)
        self.receivers: list[tuple[int, int]] = []  # (task id, end)
        # end index -> closed?  (None: a clone that failed, there is no end)
        self.send_ends: list[bool | None] = [False]
        self.recv_ends: list[bool | None] = [False]
        self.pending: list[tuple[int, str, int, int | None]] = []
        self.outcomes: dict[int, tuple[Any, ...]] = {}
        self.dropped: list[int] = []

    @property
    def open_senders(self) -> int:
        return sum(1 for c in self.send_ends if c is False)

    @property
    def open_receivers(self) -> int:
        return sum(1 for c in self.recv_ends if c is False)

    def try_send(self, end: int, item: int) -> str:
        if self.send_ends[end]:
            return "closed"
        if not self.open_receivers:
            return "broken"
        if self.receivers:
            rid, _ = self.receivers.pop(0)
            self.outcomes[rid] = ("got", item)
            return "ok"
        if len(self.buffer) < self.max:
            self.buffer.append(item)
            return "ok"
        return "block"

    def try_receive(self, end: int) -> tuple[Any, ...]:
        if self.recv_ends[end]:
            return ("closed",)
        if self.buffer:
            item = self.buffer.popleft()
            if self.senders:
                sid, _, sitem = self.senders.pop(0)
                self.buffer.append(sitem)
                self.outcomes[sid] = ("sent",)
            return ("ok", item)
        if self.senders:
            sid, _, sitem = self.senders.pop(0)
            self.outcomes[sid] = ("sent",)
            return ("ok", sitem)
        if not self.open_senders:
            return ("eoc",)
        return ("block",)

    def clone(self, which: str, end: int) -> str:
        ends = self.send_ends if which == "send" else self.recv_ends
        if ends[end]:
            ends.append(None)
            return "closed"
        ends.append(False)
        return "ok"

    def close_send(self, end: int) -> None:
        if self.send_ends[end]:
            return
        self.send_ends[end] = True
        for sid, e, _item in list(self.senders):
            if e == end:
                self.senders.remove((sid, e, _item))
                self.outcomes[sid] = ("closed",)
        if not self.open_senders:
            for rid, _e in self.receivers:
                self.outcomes[rid] = ("eoc",)
            self.receivers.clear()

    def close_recv(self, end: int) -> None:
        if self.recv_ends[end]:
            return
        self.recv_ends[end] = True
        for rid, e in list(self.receivers):
            if e == end:
                self.receivers.remove((rid, e))
                self.outcomes[rid] = ("closed",)
        if not self.open_receivers:
            self.dropped.extend(self.buffer)
            self.buffer.clear()
            for sid, _e, _item in self.senders:
                self.outcomes[sid] = ("broken",)
            self.senders.clear()

    def spawn(self, tid: int, op: str, end: int, item: int | None) -> None:
        self.pending.append((tid, op, end, item))

    def cancel(self, tid: int) -> None:
        for i, p in enumerate(self.pending):
            if p[0] == tid:
                del self.pending[i]
                self.outcomes[tid] = ("cancelled",)
                return
        for i, s in enumerate(self.senders):
            if s[0] == tid:
                del self.senders[i]
                self.outcomes[tid] = ("cancelled",)
                return
        for i, r in enumerate(self.receivers):
            if r[0] == tid:
                del self.receivers[i]
                self.outcomes[tid] = ("cancelled",)
                return

    def settle(self) -> None:
        for tid, op, end, item in self.pending:
            if op == "send":
                assert item is not None
                result = self.try_send(end, item)
                if result == "block":
                    self.senders.append((tid, end, item))
                elif result == "ok":
                    self.outcomes[tid] = ("sent",)
                else:
                    self.outcomes[tid] = (result,)
            else:
                got = self.try_receive(end)
                if got == ("block",):
                    self.receivers.append((tid, end))
                else:
                    self.outcomes[tid] = ("got", got[1]) if got[0] == "ok" else got
        self.pending.clear()

    def cancel_all(self) -> None:
        for p in self.pending:
            self.outcomes[p[0]] = ("cancelled",)
        for s in self.senders:
            self.outcomes[s[0]] = ("cancelled",)
        for r in self.receivers:
            self.outcomes[r[0]] = ("cancelled",)
        self.pending.clear()
        self.senders.clear()
        self.receivers.clear()

    def statistics(self) -> dict[str, Any]:
        return {
            "current_buffer_used": len(self.buffer),
            "max_buffer_size": self.max,
            "open_send_channels": self.open_senders,
            "open_receive_channels": self.open_receivers,
            "tasks_waiting_send": len(self.senders),
            "tasks_waiting_receive": len(self.receivers),
        }


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, ClosedResourceError):
        return "closed"
    if isinstance(exc, BrokenResourceError):
        return "broken"
    if isinstance(exc, EndOfChannel):
        return "eoc"
    raise exc


def run_channel_program(max_buffer: float, program: list[tuple[Any, ...]]) -> None:
    model = ChannelModel(max_buffer)
    outcomes: dict[int, tuple[Any, ...]] = {}
    nowait_sent: list[int] = []
    nowait_received: list[int] = []

    async def sender(end: Any, tid: int, item: int) -> None:
        try:
            await end.send(item)
        except Cancelled:
            outcomes[tid] = ("cancelled",)
            raise
        except Exception as exc:
            outcomes[tid] = (_error_name(exc),)
            return
        outcomes[tid] = ("sent",)

    def gen_sender(end: Any, tid: int, item: int) -> Any:
        try:
            yield from end.send(item)
        except Cancelled:
            outcomes[tid] = ("cancelled",)
            raise
        except Exception as exc:
            outcomes[tid] = (_error_name(exc),)
            return
        outcomes[tid] = ("sent",)

    async def receiver(end: Any, tid: int) -> None:
        try:
            item = await end.receive()
        except Cancelled:
            outcomes[tid] = ("cancelled",)
            raise
        except Exception as exc:
            outcomes[tid] = (_error_name(exc),)
            return
        outcomes[tid] = ("got", item)

    def gen_receiver(end: Any, tid: int) -> Any:
        try:
            item = yield from end.receive()
        except Cancelled:
            outcomes[tid] = ("cancelled",)
            raise
        except Exception as exc:
            outcomes[tid] = (_error_name(exc),)
            return
        outcomes[tid] = ("got", item)

    async def main() -> None:
        send0, recv0 = open_channel(max_buffer)
        send_ends: list[Any] = [send0]
        recv_ends: list[Any] = [recv0]
        tasks: dict[int, Any] = {}
        async with TaskGroup() as tg:
            for step, op in enumerate(program):
                name = op[0]
                where = (step, op)
                if name == "spawn_send":
                    _, tid, end, item, gen = op
                    if send_ends[end] is not None:
                        fn = gen_sender if gen else sender
                        tasks[tid] = tg.spawn(fn, send_ends[end], tid, item)
                        model.spawn(tid, "send", end, item)
                elif name == "spawn_recv":
                    _, tid, end, gen = op
                    if recv_ends[end] is not None:
                        fn = gen_receiver if gen else receiver
                        tasks[tid] = tg.spawn(fn, recv_ends[end], tid)
                        model.spawn(tid, "recv", end, None)
                elif name == "send_nowait":
                    _, end, item = op
                    if send_ends[end] is not None:
                        try:
                            send_ends[end].send_nowait(item)
                            real = "ok"
                        except WouldBlock:
                            real = "block"
                        except (ClosedResourceError, BrokenResourceError) as exc:
                            real = _error_name(exc)
                        assert real == model.try_send(end, item), where
                        if real == "ok":
                            nowait_sent.append(item)
                elif name == "recv_nowait":
                    end = op[1]
                    if recv_ends[end] is not None:
                        try:
                            got: tuple[Any, ...] = ("ok", recv_ends[end].receive_nowait())
                        except WouldBlock:
                            got = ("block",)
                        except (ClosedResourceError, EndOfChannel) as exc:
                            got = (_error_name(exc),)
                        assert got == model.try_receive(end), where
                        if got[0] == "ok":
                            nowait_received.append(got[1])
                elif name in ("clone_send", "clone_recv"):
                    which = "send" if name == "clone_send" else "recv"
                    ends = send_ends if which == "send" else recv_ends
                    src = ends[op[1]]
                    if src is None:
                        # cloning nothing gives nothing, on both sides
                        ends.append(None)
                        (model.send_ends if which == "send" else model.recv_ends).append(None)
                    else:
                        try:
                            ends.append(src.clone())
                            real = "ok"
                        except ClosedResourceError:
                            ends.append(None)
                            real = "closed"
                        assert real == model.clone(which, op[1]), where
                elif name == "close_send":
                    if send_ends[op[1]] is not None:
                        send_ends[op[1]].close()
                        model.close_send(op[1])
                elif name == "close_recv":
                    if recv_ends[op[1]] is not None:
                        recv_ends[op[1]].close()
                        model.close_recv(op[1])
                elif name == "cancel":
                    if op[1] in tasks:
                        tasks[op[1]].cancel()
                        model.cancel(op[1])
                elif name == "settle":
                    await settle()
                    model.settle()
                    assert outcomes == model.outcomes, where
                else:  # pragma: no cover
                    raise AssertionError(op)
                assert send0.statistics() == model.statistics(), where
            await settle()
            model.settle()
            assert outcomes == model.outcomes
            assert send0.statistics() == model.statistics()
            # drain what is buffered (and what waiting senders bring in)
            drained: list[int] = []
            open_recv = [i for i, c in enumerate(model.recv_ends) if c is False]
            if open_recv:
                end = open_recv[0]
                while True:
                    expected = model.try_receive(end)
                    try:
                        got = ("ok", recv_ends[end].receive_nowait())
                    except WouldBlock:
                        got = ("block",)
                    except EndOfChannel:
                        got = ("eoc",)
                    assert got == expected
                    if got[0] != "ok":
                        break
                    drained.append(got[1])
            assert send0.statistics() == model.statistics()
            tg.cancel_scope.cancel()
        model.cancel_all()
        assert outcomes == model.outcomes
        # accounting, independent of the model: every item accepted by the
        # channel came out exactly once, or was dropped with the buffer when
        # the last receive end closed
        sent = nowait_sent + [
            op[3] for op in program if op[0] == "spawn_send" and outcomes.get(op[1]) == ("sent",)
        ]
        received = nowait_received + [o[1] for o in outcomes.values() if o[0] == "got"] + drained
        assert len(received) == len(set(received)), "an item was received twice"
        assert not set(received) & set(model.dropped)
        assert sorted(received + model.dropped) == sorted(sent)

    vrun(main)


class ChannelMachine(RuleBasedStateMachine):
    tasks = Bundle("tasks")
    send_ends = Bundle("send_ends")
    recv_ends = Bundle("recv_ends")

    def __init__(self) -> None:
        super().__init__()
        self.program: list[tuple[Any, ...]] = []
        self.next_id = 0
        self.next_item = 0
        self.n_send = 1
        self.n_recv = 1
        self.max_buffer: float = 0

    def _item(self) -> int:
        self.next_item += 1
        return self.next_item

    def _tid(self) -> int:
        self.next_id += 1
        return self.next_id

    @initialize(target=send_ends, max_buffer=st.sampled_from([0, 1, 2, math.inf]))
    def setup(self, max_buffer: float) -> int:
        self.max_buffer = max_buffer
        return 0

    @initialize(target=recv_ends)
    def first_receive_end(self) -> int:
        return 0

    @rule(target=tasks, end=send_ends, gen=st.booleans())
    def spawn_sender(self, end: int, gen: bool) -> int:
        tid = self._tid()
        self.program.append(("spawn_send", tid, end, self._item(), gen))
        return tid

    @rule(target=tasks, end=recv_ends, gen=st.booleans())
    def spawn_receiver(self, end: int, gen: bool) -> int:
        tid = self._tid()
        self.program.append(("spawn_recv", tid, end, gen))
        return tid

    @rule(end=send_ends)
    def send_nowait(self, end: int) -> None:
        self.program.append(("send_nowait", end, self._item()))

    @rule(end=recv_ends)
    def receive_nowait(self, end: int) -> None:
        self.program.append(("recv_nowait", end))

    @rule(target=send_ends, end=send_ends)
    def clone_send(self, end: int) -> int:
        self.program.append(("clone_send", end))
        self.n_send += 1
        return self.n_send - 1

    @rule(target=recv_ends, end=recv_ends)
    def clone_receive(self, end: int) -> int:
        self.program.append(("clone_recv", end))
        self.n_recv += 1
        return self.n_recv - 1

    @rule(end=send_ends)
    def close_send(self, end: int) -> None:
        self.program.append(("close_send", end))

    @rule(end=recv_ends)
    def close_receive(self, end: int) -> None:
        self.program.append(("close_recv", end))

    @rule(tid=tasks)
    def cancel(self, tid: int) -> None:
        self.program.append(("cancel", tid))

    @rule()
    def settle(self) -> None:
        self.program.append(("settle",))

    def teardown(self) -> None:
        run_channel_program(self.max_buffer, self.program)


TestChannelMachine = ChannelMachine.TestCase
TestChannelMachine.settings = SETTINGS


# ============================================= fixed programs (regressions)


def test_queue_program_woken_getter_cancelled_before_it_runs():
    run_queue_program(
        1,
        "fifo",
        [
            ("spawn_get", 1, False),
            ("spawn_get", 2, True),
            ("settle",),
            ("put_nowait", 10),
            ("cancel", 1),  # already handed item 10
            ("cancel", 2),  # still waiting: takes nothing
            ("put_nowait", 11),
            ("settle",),
        ],
    )


def test_channel_program_close_races():
    run_channel_program(
        0,
        [
            ("clone_send", 0),
            ("spawn_send", 1, 0, 10, False),
            ("spawn_send", 2, 1, 11, True),
            ("spawn_recv", 3, 0, False),
            ("settle",),
            ("close_send", 0),
            ("recv_nowait", 0),
            ("cancel", 2),
            ("close_recv", 0),
            ("settle",),
        ],
    )
