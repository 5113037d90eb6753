"""Queue, PriorityQueue, LifoQueue and memory channels (``open_channel``).

Every test runs on :class:`~yieldloop.testing.VirtualClock`. ``settle()``
sleeps one virtual second: the clock only moves once every other task is
blocked, so after it returns each task has run as far as it can.
"""

from __future__ import annotations

import math

import pytest

import yieldloop as yl
from yieldloop import (
    BrokenResourceError,
    Cancelled,
    CancelScope,
    ClosedResourceError,
    EndOfChannel,
    LifoQueue,
    PriorityQueue,
    Queue,
    QueueEmpty,
    QueueFull,
    ReceiveChannel,
    RunFinishedError,
    SendChannel,
    TaskGroup,
    WouldBlock,
    checkpoint,
    current_time,
    move_on_after,
    open_channel,
    sleep,
)
from yieldloop.testing import VirtualClock

pytestmark = pytest.mark.timeout(60)


def vrun(main, *args):
    """Run ``main`` on a fresh virtual clock starting at 0."""
    return yl.run(main, *args, clock=VirtualClock())


async def settle():
    """Let every other task run until all of them are blocked."""
    await sleep(1)


# ==================================================================== Queue


def test_queue_put_get_and_sizes():
    async def main():
        q = Queue(2)
        assert q.maxsize == 2
        assert q.empty()
        assert not q.full()
        assert q.qsize() == 0
        await q.put("a")
        await q.put("b")
        assert q.qsize() == 2
        assert q.full()
        assert not q.empty()
        assert q.statistics() == {
            "qsize": 2,
            "maxsize": 2,
            "tasks_waiting_put": 0,
            "tasks_waiting_get": 0,
        }
        assert "2/2 items" in repr(q)
        assert await q.get() == "a"
        assert not q.full()
        assert await q.get() == "b"
        assert q.empty()
        return current_time()

    assert vrun(main) == 0


def test_queue_nowait_raises_queue_full_and_empty():
    assert issubclass(QueueFull, WouldBlock)
    assert issubclass(QueueEmpty, WouldBlock)

    async def main():
        q = Queue(1)
        with pytest.raises(QueueEmpty):
            q.get_nowait()
        q.put_nowait(1)
        with pytest.raises(QueueFull):
            q.put_nowait(2)
        with pytest.raises(WouldBlock):
            q.put_nowait(2)
        assert q.qsize() == 1
        assert q.get_nowait() == 1
        with pytest.raises(QueueEmpty):
            q.get_nowait()
        assert q.qsize() == 0

    vrun(main)


def test_queue_unbounded_by_default():
    async def main():
        q = Queue()
        assert q.maxsize == 0
        for i in range(1000):
            q.put_nowait(i)
            assert not q.full()
        for i in range(500):
            await q.put(i)
        assert q.qsize() == 1500
        assert "inf" in repr(q)
        return [q.get_nowait() for _ in range(1000)] == list(range(1000))

    assert vrun(main)


@pytest.mark.parametrize(
    ("maxsize", "exc"),
    [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("3", TypeError), (None, TypeError)],
)
@pytest.mark.parametrize("cls", [Queue, PriorityQueue, LifoQueue])
def test_queue_bad_maxsize(cls, maxsize, exc):
    with pytest.raises(exc):
        cls(maxsize)


def test_queue_waiting_getters_are_served_fifo():
    async def main():
        q = Queue()
        got = []

        async def getter(i):
            got.append((i, await q.get()))

        async with TaskGroup() as tg:
            for i in range(5):
                tg.spawn(getter, i)
            await settle()
            assert q.statistics()["tasks_waiting_get"] == 5
            for item in "abcde":
                q.put_nowait(item)
                # handed straight to a getter, never stored
                assert q.qsize() == 0
            assert q.statistics()["tasks_waiting_get"] == 0
        return got

    assert vrun(main) == [(0, "a"), (1, "b"), (2, "c"), (3, "d"), (4, "e")]


def test_queue_waiting_putters_are_served_fifo():
    async def main():
        q = Queue(1)
        q.put_nowait("first")
        done = []

        async def putter(item):
            await q.put(item)
            done.append(item)

        async with TaskGroup() as tg:
            for item in "abcd":
                tg.spawn(putter, item)
            await settle()
            assert q.statistics()["tasks_waiting_put"] == 4
            # a new putter queues behind the waiting ones
            with pytest.raises(QueueFull):
                q.put_nowait("barge")
            got = []
            for _ in range(5):
                got.append(await q.get())
                # the longest-waiting putter's item moved in at once
                assert q.qsize() == (1 if len(got) < 5 else 0)
        assert done == list("abcd")
        return got

    assert vrun(main) == ["first", "a", "b", "c", "d"]


def test_queue_put_waits_while_full():
    async def main():
        q = Queue(2)
        log = []

        async def producer():
            for i in range(5):
                await q.put(i)
                log.append(("put", i, current_time()))

        async def consumer():
            for _ in range(5):
                await sleep(10)
                log.append(("got", await q.get(), current_time()))

        async with TaskGroup() as tg:
            tg.spawn(producer)
            tg.spawn(consumer)
        return log

    assert vrun(main) == [
        ("put", 0, 0),
        ("put", 1, 0),
        ("got", 0, 10),
        ("put", 2, 10),
        ("got", 1, 20),
        ("put", 3, 20),
        ("got", 2, 30),
        ("put", 4, 30),
        ("got", 3, 40),
        ("got", 4, 50),
    ]


def test_priority_queue_gives_smallest_first():
    async def main():
        q = PriorityQueue()
        for item in [5, 1, 4, 2, 3, 1]:
            q.put_nowait(item)
        out = [await q.get() for _ in range(6)]
        for item in [(2, "b"), (1, "z"), (2, "a"), (0, "x")]:
            await q.put(item)
        out.append([q.get_nowait() for _ in range(4)])
        return out

    assert vrun(main) == [1, 1, 2, 3, 4, 5, [(0, "x"), (1, "z"), (2, "a"), (2, "b")]]


def test_priority_queue_with_waiting_putter():
    async def main():
        q = PriorityQueue(2)
        q.put_nowait(5)
        q.put_nowait(3)
        async with TaskGroup() as tg:
            tg.spawn(q.put, 1)
            await settle()
            assert q.statistics()["tasks_waiting_put"] == 1
            first = await q.get()  # 3, then 1 moves in
            assert q.qsize() == 2
        return [first, q.get_nowait(), q.get_nowait()]

    assert vrun(main) == [3, 1, 5]


def test_lifo_queue_gives_newest_first():
    async def main():
        q = LifoQueue(3)
        for i in range(3):
            await q.put(i)
        assert q.full()
        async with TaskGroup() as tg:
            tg.spawn(q.put, "late")
            await settle()
            assert q.statistics()["tasks_waiting_put"] == 1
            top = q.get_nowait()  # 2; "late" is pushed on top
        return [top] + [q.get_nowait() for _ in range(3)]

    assert vrun(main) == [2, "late", 1, 0]


def test_getter_gets_put_item_directly_whatever_the_queue_kind():
    async def main():
        out = []
        for cls in (PriorityQueue, LifoQueue):
            q = cls()
            async with TaskGroup() as tg:
                for _ in range(3):
                    tg.spawn(lambda q=q: _get_into(q, out))
                await settle()
                for item in (3, 1, 2):
                    q.put_nowait(item)
        return out

    # waiting getters are served in arrival order with the items in put order
    assert vrun(main) == [3, 1, 2, 3, 1, 2]


async def _get_into(q, out):
    out.append(await q.get())


# ----------------------------------------------------- Queue cancellation


def test_queue_cancelled_get_consumes_nothing():
    async def main():
        q = Queue()
        got = []

        async def getter(i):
            try:
                got.append((i, await q.get()))
            except Cancelled:
                got.append((i, "cancelled"))
                raise

        async with TaskGroup() as tg:
            tasks = [tg.spawn(getter, i) for i in range(3)]
            await settle()
            tasks[1].cancel()
            assert q.statistics()["tasks_waiting_get"] == 2
            await settle()
            q.put_nowait("a")
            q.put_nowait("b")
            q.put_nowait("c")
        assert q.qsize() == 1
        return got, q.get_nowait()

    assert vrun(main) == ([(1, "cancelled"), (0, "a"), (2, "b")], "c")


def test_queue_get_timeout_leaves_item_for_next_getter():
    async def main():
        q = Queue()
        with move_on_after(5) as scope:
            await q.get()
        assert scope.cancelled_caught
        assert q.statistics()["tasks_waiting_get"] == 0
        q.put_nowait("x")
        assert q.qsize() == 1
        return await q.get(), current_time()

    assert vrun(main) == ("x", 5)


def test_queue_get_and_put_in_cancelled_scope_change_nothing():
    async def main():
        q = Queue(3)
        q.put_nowait("a")
        with CancelScope() as scope:
            scope.cancel()
            await q.get()
        assert scope.cancelled_caught
        assert q.qsize() == 1
        with CancelScope() as scope:
            scope.cancel()
            await q.put("b")
        assert scope.cancelled_caught
        assert q.qsize() == 1
        return q.get_nowait()

    assert vrun(main) == "a"


def test_queue_cancelled_put_inserts_nothing():
    async def main():
        q = Queue(1)
        q.put_nowait("kept")
        log = []

        async def putter(item):
            try:
                await q.put(item)
                log.append(("put", item))
            except Cancelled:
                log.append(("cancelled", item))
                raise

        async with TaskGroup() as tg:
            tasks = [tg.spawn(putter, x) for x in "xyz"]
            await settle()
            tasks[0].cancel()
            tasks[2].cancel()
            assert q.statistics()["tasks_waiting_put"] == 1
            await settle()
            got = [await q.get(), await q.get()]
        with pytest.raises(QueueEmpty):
            q.get_nowait()
        return got, log

    assert vrun(main) == (
        ["kept", "y"],
        [("cancelled", "x"), ("cancelled", "z"), ("put", "y")],
    )


def test_queue_getter_woken_with_item_then_cancelled_keeps_it():
    async def main():
        q = Queue()
        log = []

        async def getter():
            item = await q.get()
            log.append(("got", item))
            try:
                await checkpoint()
            except Cancelled:
                log.append("cancelled")
                raise

        async with TaskGroup() as tg:
            t = tg.spawn(getter)
            await settle()
            q.put_nowait("precious")
            t.cancel()  # before the getter had a chance to run
        assert q.qsize() == 0
        return log

    assert vrun(main) == [("got", "precious"), "cancelled"]


def test_queue_putter_admitted_then_cancelled_put_succeeded():
    async def main():
        q = Queue(1)
        q.put_nowait("first")
        log = []

        async def putter():
            await q.put("second")
            log.append("put returned")
            await checkpoint()

        async with TaskGroup() as tg:
            t = tg.spawn(putter)
            await settle()
            assert q.get_nowait() == "first"
            t.cancel()
        assert t.cancelled()
        return log, q.get_nowait(), q.qsize()

    assert vrun(main) == (["put returned"], "second", 0)


def test_queue_generator_style():
    got = []

    def producer(q):
        for i in range(4):
            yield from q.put(i)
        yield from q.put(None)

    def consumer(q):
        while True:
            item = yield from q.get()
            if item is None:
                return
            got.append((item, (yield ("current_time",))))
            yield from sleep(1)

    def main():
        q = Queue(1)
        tg = TaskGroup()
        yield from tg.__aenter__().__await__()
        try:
            tg.spawn(consumer, q)
            tg.spawn(producer, q)
        finally:
            yield from tg.__aexit__(None, None, None).__await__()
        return q.qsize()

    assert vrun(main) == 0
    assert got == [(0, 0), (1, 1), (2, 2), (3, 3)]


N_WAITERS = 100_000


def test_queue_many_getters_cancel_one_in_the_middle():
    got = []

    def getter(q, i):
        item = yield from q.get()
        got.append((i, item))

    async def main():
        q = Queue()
        async with TaskGroup() as tg:
            tasks = [tg.spawn(getter, q, i) for i in range(N_WAITERS)]
            await settle()
            assert q.statistics()["tasks_waiting_get"] == N_WAITERS
            mid = N_WAITERS // 2
            tasks[mid].cancel()
            assert q.statistics()["tasks_waiting_get"] == N_WAITERS - 1
            await settle()
            q.put_nowait(0)
            # the first getter got it, straight away
            assert q.statistics()["tasks_waiting_get"] == N_WAITERS - 2
            for j in range(1, N_WAITERS - 1):
                q.put_nowait(j)
        assert tasks[mid].cancelled()
        assert q.qsize() == 0
        return mid

    mid = vrun(main)
    expected_getters = [i for i in range(N_WAITERS) if i != mid]
    assert got == list(zip(expected_getters, range(N_WAITERS - 1)))


# ================================================================= channels


def test_open_channel_returns_two_ends():
    async def main():
        send, receive = open_channel(2)
        assert isinstance(send, SendChannel)
        assert isinstance(receive, ReceiveChannel)
        assert (
            send.statistics()
            == receive.statistics()
            == {
                "current_buffer_used": 0,
                "max_buffer_size": 2,
                "open_send_channels": 1,
                "open_receive_channels": 1,
                "tasks_waiting_send": 0,
                "tasks_waiting_receive": 0,
            }
        )
        await send.send("a")
        send.send_nowait("b")
        assert send.statistics()["current_buffer_used"] == 2
        assert await receive.receive() == "a"
        assert receive.receive_nowait() == "b"
        assert "open" in repr(send)
        return current_time()

    assert vrun(main) == 0


@pytest.mark.parametrize("size", [1, 3])
def test_channel_buffer_limits_sends(size):
    async def main():
        send, receive = open_channel(size)
        for i in range(size):
            send.send_nowait(i)
        with pytest.raises(WouldBlock):
            send.send_nowait("extra")
        log = []

        async def sender():
            await send.send("late")
            log.append(("sent", current_time()))

        async with TaskGroup() as tg:
            tg.spawn(sender)
            await sleep(5)
            assert send.statistics()["tasks_waiting_send"] == 1
            assert log == []
            first = await receive.receive()
            # the waiting sender's item moved into the buffer at once
            assert send.statistics()["current_buffer_used"] == size
        rest = [receive.receive_nowait() for _ in range(size)]
        return first, rest, log

    first, rest, log = vrun(main)
    assert first == 0
    assert rest == [*range(1, size), "late"]
    assert log == [("sent", 5)]


def test_rendezvous_channel():
    async def main():
        send, receive = open_channel(0)
        with pytest.raises(WouldBlock):
            send.send_nowait("nobody listens")
        with pytest.raises(WouldBlock):
            receive.receive_nowait()
        log = []

        async def sender(item):
            await send.send(item)
            log.append(("sent", item, current_time()))

        async with TaskGroup() as tg:
            tg.spawn(sender, "x")
            await sleep(3)
            assert send.statistics()["tasks_waiting_send"] == 1
            assert send.statistics()["current_buffer_used"] == 0
            assert log == []
            # taken straight from the blocked sender
            assert receive.receive_nowait() == "x"
            tg.spawn(sender, "y")
            await sleep(3)
            assert await receive.receive() == "y"

        async def receiver():
            log.append(("received", await receive.receive(), current_time()))

        async with TaskGroup() as tg:
            tg.spawn(receiver)
            await sleep(2)
            send.send_nowait("z")  # handed to the waiting receiver
        return log

    assert vrun(main) == [
        ("sent", "x", 3),
        ("sent", "y", 6),
        ("received", "z", 8),
    ]


def test_unbounded_channel_never_blocks():
    async def main():
        send, receive = open_channel(math.inf)
        for i in range(1000):
            send.send_nowait(i)
        for i in range(1000, 1100):
            await send.send(i)
        assert send.statistics()["current_buffer_used"] == 1100
        assert send.statistics()["max_buffer_size"] == math.inf
        out = [receive.receive_nowait() for _ in range(1100)]
        return out == list(range(1100)), current_time()

    assert vrun(main) == (True, 0)


@pytest.mark.parametrize(
    ("size", "exc"),
    [
        (-1, ValueError),
        (1.5, TypeError),
        ("x", TypeError),
        (True, TypeError),
        (None, TypeError),
        (float("nan"), TypeError),
        (-math.inf, TypeError),
    ],
)
def test_open_channel_bad_size(size, exc):
    with pytest.raises(exc, match="max_buffer_size"):
        open_channel(size)


def test_channel_fifo_among_waiting_senders_and_receivers():
    async def main():
        send, receive = open_channel(0)
        got = []

        async def receiver(i):
            got.append((i, await receive.receive()))

        async with TaskGroup() as tg:
            for i in range(4):
                tg.spawn(receiver, i)
            await settle()
            assert send.statistics()["tasks_waiting_receive"] == 4
            for item in "abcd":
                await send.send(item)
        sent = []

        async def sender(item):
            await send.send(item)
            sent.append(item)

        async with TaskGroup() as tg:
            for item in "wxyz":
                tg.spawn(sender, item)
            await settle()
            assert send.statistics()["tasks_waiting_send"] == 4
            received = [await receive.receive() for _ in range(4)]
        return got, received, sent

    assert vrun(main) == (
        [(0, "a"), (1, "b"), (2, "c"), (3, "d")],
        list("wxyz"),
        list("wxyz"),
    )


def test_channel_async_for_ends_after_senders_closed_and_buffer_drained():
    async def main():
        send, receive = open_channel(10)
        got = []

        async def consumer():
            async for item in receive:
                got.append(item)
            got.append("end")

        async with TaskGroup() as tg:
            tg.spawn(consumer)
            async with send:
                for i in range(3):
                    await send.send(i)
                await settle()
                send.send_nowait(3)
                send.send_nowait(4)
            # closed with two items still buffered: they are delivered first
        with pytest.raises(EndOfChannel):
            await receive.receive()
        with pytest.raises(EndOfChannel):
            receive.receive_nowait()
        return got

    assert vrun(main) == [0, 1, 2, 3, 4, "end"]


def test_channel_end_only_when_every_sender_clone_closed():
    async def main():
        send, receive = open_channel(math.inf)
        clone = send.clone()
        assert send.statistics()["open_send_channels"] == 2
        got = []

        async def consumer():
            async for item in receive:
                got.append(item)
            got.append(("end", current_time()))

        async with TaskGroup() as tg:
            tg.spawn(consumer)
            await send.send("from original")
            send.close()
            await sleep(5)
            assert got == ["from original"]  # the clone is still open
            await clone.send("from clone")
            await sleep(5)
            clone.close()
        assert send.statistics()["open_send_channels"] == 0
        return got

    assert vrun(main) == ["from original", "from clone", ("end", 10)]


def test_receive_clones_share_the_items():
    async def main():
        send, receive = open_channel(math.inf)
        other = receive.clone()
        assert send.statistics()["open_receive_channels"] == 2
        got = []

        async def worker(name, end):
            try:
                async for item in end:
                    got.append((name, item))
                    await sleep(1)
            except ClosedResourceError:
                got.append((name, "closed"))

        async with TaskGroup() as tg:
            tg.spawn(worker, "a", receive)
            tg.spawn(worker, "b", other)
            await settle()
            for i in range(4):
                send.send_nowait(i)
            await settle()
            receive.close()  # the original goes away, the clone still works
            await send.send(4)
            await sleep(3)
            send.close()
        return got

    got = vrun(main)
    assert sorted(item for _, item in got if item != "closed") == [0, 1, 2, 3, 4]
    assert got[:2] == [("a", 0), ("b", 1)]
    # the worker on the closed original stops; the clone's worker gets the rest
    assert ("a", "closed") in got
    assert ("b", 4) in got


def test_channel_close_is_idempotent_and_context_managers_close():
    async def main():
        send, receive = open_channel(1)
        async with send, receive:
            pass
        assert "closed" in repr(send)
        assert "closed" in repr(receive)
        send.close()
        receive.close()
        await send.aclose()
        await receive.aclose()
        assert send.statistics()["open_send_channels"] == 0
        assert send.statistics()["open_receive_channels"] == 0

        send, receive = open_channel(1)
        with send as s, receive as r:
            assert s is send
            assert r is receive
        with pytest.raises(ClosedResourceError):
            send.send_nowait(1)
        with pytest.raises(ClosedResourceError):
            receive.receive_nowait()

    vrun(main)


def test_using_a_closed_end_raises_closed_resource_error():
    async def main():
        send, receive = open_channel(1)
        send2 = send.clone()
        receive2 = receive.clone()
        send.close()
        receive.close()
        with pytest.raises(ClosedResourceError):
            await send.send(1)
        with pytest.raises(ClosedResourceError):
            send.send_nowait(1)
        with pytest.raises(ClosedResourceError):
            send.clone()
        with pytest.raises(ClosedResourceError):
            await receive.receive()
        with pytest.raises(ClosedResourceError):
            receive.receive_nowait()
        with pytest.raises(ClosedResourceError):
            receive.clone()
        with pytest.raises(ClosedResourceError):
            async for _ in receive:
                pass  # pragma: no cover
        # the clones still work
        await send2.send("ok")
        assert await receive2.receive() == "ok"
        # closed beats broken: a closed end says so even when nobody receives
        receive2.close()
        send2.close()
        with pytest.raises(ClosedResourceError):
            await send2.send(1)

    vrun(main)


def test_closing_an_end_wakes_its_blocked_senders():
    async def main():
        send, receive = open_channel(0)
        clone = send.clone()
        log = []

        async def sender(name, end):
            try:
                await end.send(name)
                log.append(("sent", name))
            except ClosedResourceError:
                log.append(("closed", name, current_time()))

        async with TaskGroup() as tg:
            tg.spawn(sender, "on original", send)
            tg.spawn(sender, "on clone", clone)
            await sleep(4)
            send.close()
            await settle()
            assert log == [("closed", "on original", 4)]
            assert send.statistics()["tasks_waiting_send"] == 1
            assert await receive.receive() == "on clone"
        return log

    assert vrun(main) == [("closed", "on original", 4), ("sent", "on clone")]


def test_closing_an_end_wakes_its_blocked_receivers():
    async def main():
        send, receive = open_channel(0)
        clone = receive.clone()
        log = []

        async def receiver(name, end):
            try:
                log.append(("got", name, await end.receive()))
            except ClosedResourceError:
                log.append(("closed", name, current_time()))

        async with TaskGroup() as tg:
            tg.spawn(receiver, "original", receive)
            tg.spawn(receiver, "clone", clone)
            await sleep(4)
            receive.close()
            await settle()
            assert log == [("closed", "original", 4)]
            assert send.statistics()["tasks_waiting_receive"] == 1
            await send.send("item")
        return log

    assert vrun(main) == [("closed", "original", 4), ("got", "clone", "item")]


def test_closing_last_sender_wakes_receivers_with_end_of_channel():
    async def main():
        send, receive = open_channel(2)
        clone = receive.clone()
        log = []

        async def receiver(name, end):
            try:
                await end.receive()
            except EndOfChannel:
                log.append((name, current_time()))

        async with TaskGroup() as tg:
            tg.spawn(receiver, "a", receive)
            tg.spawn(receiver, "b", clone)
            await sleep(2)
            send.close()
        assert send.statistics()["tasks_waiting_receive"] == 0
        return log

    assert vrun(main) == [("a", 2), ("b", 2)]


def test_sending_when_every_receiver_closed_is_broken():
    async def main():
        send, receive = open_channel(1)
        clone = receive.clone()
        send.send_nowait("buffered")
        log = []

        async def sender(item):
            try:
                await send.send(item)
            except BrokenResourceError:
                log.append(("broken", item, current_time()))

        async with TaskGroup() as tg:
            tg.spawn(sender, "blocked")
            await sleep(3)
            receive.close()
            await settle()
            assert log == []  # a clone still receives
            clone.close()
        # the buffer was dropped with the last receiver
        assert send.statistics()["current_buffer_used"] == 0
        assert send.statistics()["tasks_waiting_send"] == 0
        with pytest.raises(BrokenResourceError):
            await send.send("after")
        with pytest.raises(BrokenResourceError):
            send.send_nowait("after")
        # cloning a send end of a broken channel is allowed; sending is not
        with pytest.raises(BrokenResourceError):
            send.clone().send_nowait("x")
        return log

    assert vrun(main) == [("broken", "blocked", 4)]


def test_rendezvous_sender_blocked_when_receivers_close_is_broken():
    async def main():
        send, receive = open_channel(0)
        async with TaskGroup() as tg:
            t = tg.spawn(send.send, "x")
            await settle()
            receive.close()
            await settle()
        return type(t.exception()).__name__

    with pytest.raises(ExceptionGroup) as info:
        vrun(main)
    assert info.group_contains(BrokenResourceError)


# --------------------------------------------------- channel cancellation


def test_cancelled_receive_takes_no_item():
    async def main():
        send, receive = open_channel(math.inf)
        got = []

        async def receiver(i):
            try:
                got.append((i, await receive.receive()))
            except Cancelled:
                got.append((i, "cancelled"))
                raise

        async with TaskGroup() as tg:
            tasks = [tg.spawn(receiver, i) for i in range(3)]
            await settle()
            tasks[1].cancel()
            assert send.statistics()["tasks_waiting_receive"] == 2
            await settle()
            for item in "abc":
                send.send_nowait(item)
        return got, receive.receive_nowait()

    assert vrun(main) == ([(1, "cancelled"), (0, "a"), (2, "b")], "c")


def test_receive_timeout_then_item_stays_buffered():
    async def main():
        send, receive = open_channel(1)
        with move_on_after(2) as scope:
            await receive.receive()
        assert scope.cancelled_caught
        assert send.statistics()["tasks_waiting_receive"] == 0
        send.send_nowait("x")
        assert send.statistics()["current_buffer_used"] == 1
        return await receive.receive()

    assert vrun(main) == "x"


def test_send_and_receive_in_cancelled_scope_change_nothing():
    async def main():
        send, receive = open_channel(5)
        send.send_nowait("a")
        with CancelScope() as scope:
            scope.cancel()
            await receive.receive()
        assert scope.cancelled_caught
        with CancelScope() as scope:
            scope.cancel()
            await send.send("b")
        assert scope.cancelled_caught
        assert send.statistics()["current_buffer_used"] == 1
        return receive.receive_nowait()

    assert vrun(main) == "a"


@pytest.mark.parametrize("size", [0, 1])
def test_cancelled_send_delivers_nothing(size):
    async def main():
        send, receive = open_channel(size)
        for i in range(size):
            send.send_nowait(f"kept{i}")
        log = []

        async def sender(item):
            try:
                await send.send(item)
                log.append(("sent", item))
            except Cancelled:
                log.append(("cancelled", item))
                raise

        async with TaskGroup() as tg:
            tasks = [tg.spawn(sender, x) for x in "xyz"]
            await settle()
            tasks[0].cancel()
            tasks[2].cancel()
            assert send.statistics()["tasks_waiting_send"] == 1
            await settle()
            got = [await receive.receive() for _ in range(size + 1)]
        with pytest.raises(WouldBlock):
            receive.receive_nowait()
        return got, log

    got, log = vrun(main)
    assert got == [*(f"kept{i}" for i in range(size)), "y"]
    assert log == [("cancelled", "x"), ("cancelled", "z"), ("sent", "y")]


@pytest.mark.parametrize("size", [0, 1, math.inf])
def test_receiver_woken_with_item_then_cancelled_keeps_it(size):
    async def main():
        send, receive = open_channel(size)
        log = []

        async def receiver():
            item = await receive.receive()
            log.append(("got", item))
            await checkpoint()

        async with TaskGroup() as tg:
            t = tg.spawn(receiver)
            await settle()
            send.send_nowait("precious")
            t.cancel()
        assert t.cancelled()
        assert send.statistics()["current_buffer_used"] == 0
        return log

    assert vrun(main) == [("got", "precious")]


def test_rendezvous_sender_whose_item_was_taken_then_cancelled_sent_it():
    async def main():
        send, receive = open_channel(0)
        log = []

        async def sender():
            await send.send("item")
            log.append("send returned")
            await checkpoint()

        async with TaskGroup() as tg:
            t = tg.spawn(sender)
            await settle()
            got = receive.receive_nowait()
            t.cancel()
        with pytest.raises(WouldBlock):
            receive.receive_nowait()
        return got, log

    assert vrun(main) == ("item", ["send returned"])


def test_channel_generator_style():
    got = []

    def producer(send):
        for i in range(3):
            yield from send.send(i)
        send.close()

    def consumer(receive):
        while True:
            try:
                item = yield from receive.receive()
            except EndOfChannel:
                got.append("end")
                return
            got.append(item)
            yield from sleep(1)

    def main():
        send, receive = open_channel(0)
        tg = TaskGroup()
        yield from tg.__aenter__().__await__()
        try:
            tg.spawn(producer, send)
            tg.spawn(consumer, receive)
        finally:
            yield from tg.__aexit__(None, None, None).__await__()
        return (yield ("current_time",))

    assert vrun(main) == 3
    assert got == [0, 1, 2, "end"]


# ================================================================== bad use


async def _put(p):
    await p.put(1)


async def _get(p):
    await p.get()


async def _put_nowait(p):
    p.put_nowait(1)


async def _get_nowait(p):
    p.get_nowait()


async def _send(p):
    await p[0].send(1)


async def _send_nowait(p):
    p[0].send_nowait(1)


async def _receive(p):
    await p[1].receive()


async def _receive_nowait(p):
    p[1].receive_nowait()


def _channel():
    return open_channel(1)


CROSS_RUN = {
    "Queue.put": (Queue, _put),
    "Queue.get": (Queue, _get),
    "Queue.put_nowait": (Queue, _put_nowait),
    "Queue.get_nowait": (Queue, _get_nowait),
    "PriorityQueue.get": (PriorityQueue, _get),
    "LifoQueue.put": (LifoQueue, _put),
    "SendChannel.send": (_channel, _send),
    "SendChannel.send_nowait": (_channel, _send_nowait),
    "ReceiveChannel.receive": (_channel, _receive),
    "ReceiveChannel.receive_nowait": (_channel, _receive_nowait),
}


@pytest.mark.parametrize("op", sorted(CROSS_RUN))
def test_queue_or_channel_from_another_run_raises_run_finished(op):
    factory, use = CROSS_RUN[op]

    async def make():
        return factory()

    prim = vrun(make)
    with pytest.raises(RunFinishedError, match=r"belongs to another yieldloop\.run\(\)") as info:
        vrun(use, prim)
    name = "channel" if isinstance(prim, tuple) else "queue"
    assert name in str(info.value).lower()


@pytest.mark.parametrize("op", sorted(CROSS_RUN))
def test_queue_or_channel_made_outside_a_run_binds_to_first_run(op):
    factory, use = CROSS_RUN[op]
    prim = factory()

    async def first():
        try:
            with move_on_after(1):
                await use(prim)
        except WouldBlock:
            pass

    vrun(first)
    with pytest.raises(RunFinishedError):
        vrun(use, prim)


def _drive(aw):
    """Step a yieldloop awaitable once, outside any run."""
    it = iter(aw)
    try:
        next(it)
    finally:
        it.close()


OUTSIDE = {
    "Queue.put": (Queue, lambda p: _drive(p.put(1))),
    "Queue.get": (Queue, lambda p: _drive(p.get())),
    "SendChannel.send": (_channel, lambda p: _drive(p[0].send(1))),
    "ReceiveChannel.receive": (_channel, lambda p: _drive(p[1].receive())),
}


@pytest.mark.parametrize("op", sorted(OUTSIDE))
def test_queue_or_channel_used_outside_any_run_raises(op):
    factory, use = OUTSIDE[op]
    with pytest.raises(RuntimeError, match=r"inside yieldloop\.run\(\)"):
        use(factory())

    async def make():
        return factory()

    prim = vrun(make)
    with pytest.raises(RuntimeError, match=r"inside yieldloop\.run\(\)"):
        use(prim)


def test_queue_and_channel_state_queries_work_outside_a_run():
    q = Queue(3)
    assert q.empty()
    assert not q.full()
    assert q.qsize() == 0
    assert q.statistics()["maxsize"] == 3
    send, receive = open_channel(0)
    assert send.statistics()["open_send_channels"] == 1
    assert repr(q)
    assert repr(send)
    assert repr(receive)
    # closing needs no run
    send.close()
    receive.close()
    assert send.statistics()["open_receive_channels"] == 0
