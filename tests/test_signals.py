"""open_signal_receiver: real signals sent to this process."""

from __future__ import annotations

import os
import signal
import threading
import time
import types
from collections.abc import Generator
from typing import Any

import pytest

import yieldloop
from yieldloop import ClosedResourceError, TaskGroup, move_on_after
from yieldloop._os import open_signal_receiver

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs Unix signals")

USR1 = signal.SIGUSR1 if hasattr(signal, "SIGUSR1") else 0
USR2 = signal.SIGUSR2 if hasattr(signal, "SIGUSR2") else 0


def test_receives_and_restores_handlers() -> None:
    before1 = signal.getsignal(USR1)
    before2 = signal.getsignal(USR2)

    async def main() -> list[int]:
        got = []
        with open_signal_receiver(USR1, USR2) as signals:
            assert signal.getsignal(USR1) is not before1
            os.kill(os.getpid(), USR1)
            async for signum in signals:
                got.append(signum)
                if len(got) == 1:
                    os.kill(os.getpid(), USR2)
                else:
                    break
        assert signal.getsignal(USR1) is before1
        return got

    assert yieldloop.run(main) == [USR1, USR2]
    assert signal.getsignal(USR1) is before1
    assert signal.getsignal(USR2) is before2


def test_signal_wakes_a_parked_receiver() -> None:
    # The loop is blocked in its poll with nothing else to do; a signal sent
    # from another thread must wake it.
    def send_later() -> None:
        time.sleep(0.1)
        os.kill(os.getpid(), USR1)

    async def main() -> int:
        with open_signal_receiver(USR1) as signals:
            t = threading.Thread(target=send_later)
            t.start()
            try:
                with yieldloop.fail_after(30):
                    return await signals.receive()
            finally:
                t.join()

    assert yieldloop.run(main) == USR1


def test_coalescing_keeps_first_arrival_order() -> None:
    async def main() -> list[int]:
        with open_signal_receiver(USR1, USR2) as signals:
            os.kill(os.getpid(), USR2)
            os.kill(os.getpid(), USR1)
            os.kill(os.getpid(), USR2)
            os.kill(os.getpid(), USR1)
            assert signals.pending() == [USR2, USR1]
            got = [await signals.receive(), await signals.receive()]
            assert signals.pending() == []
            return got

    assert yieldloop.run(main) == [USR2, USR1]


def test_generator_style() -> None:
    def main() -> Generator[Any, Any, int]:
        with open_signal_receiver(USR1) as signals:
            os.kill(os.getpid(), USR1)
            return (yield from signals.receive())

    assert yieldloop.run(main) == USR1


def test_pending_signals_redelivered_on_exit() -> None:
    seen: list[int] = []

    def outer(signum: int, frame: types.FrameType | None) -> None:
        seen.append(signum)

    old = signal.signal(USR1, outer)
    try:

        async def main() -> None:
            with open_signal_receiver(USR1):
                os.kill(os.getpid(), USR1)
                os.kill(os.getpid(), USR1)
                assert seen == []
            await yieldloop.sleep(0)

        yieldloop.run(main)
        assert seen == [USR1]  # coalesced, then handed to the restored handler
    finally:
        signal.signal(USR1, old)


def test_receive_is_cancellable() -> None:
    async def main() -> bool:
        with open_signal_receiver(USR1) as signals:
            with move_on_after(0.05) as scope:
                await signals.receive()
            # still usable after a cancelled receive
            os.kill(os.getpid(), USR1)
            assert await signals.receive() == USR1
        return scope.cancelled_caught

    assert yieldloop.run(main) is True


def test_closed_receiver() -> None:
    async def main() -> None:
        with open_signal_receiver(USR1) as signals:
            pass
        with pytest.raises(ClosedResourceError):
            await signals.receive()

    yieldloop.run(main)


def test_waiter_woken_when_receiver_closes() -> None:
    async def main() -> None:
        async def waiter(signals: Any) -> None:
            with pytest.raises(ClosedResourceError):
                await signals.receive()

        async with TaskGroup() as tg:
            with open_signal_receiver(USR1) as signals:
                tg.spawn(waiter, signals)
                await yieldloop.sleep(0.01)
                with pytest.raises(RuntimeError, match="already receiving"):
                    await signals.receive()

    yieldloop.run(main)


def test_sigint_can_be_received() -> None:
    async def main() -> int:
        with open_signal_receiver(signal.SIGINT) as signals:
            os.kill(os.getpid(), signal.SIGINT)
            return await signals.receive()

    # the run's own Ctrl-C handling is not triggered, and comes back afterwards
    assert yieldloop.run(main) == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_bad_arguments() -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="at least one"), open_signal_receiver():
            pass
        with pytest.raises(ValueError), open_signal_receiver(10_000):
            pass
        with pytest.raises(TypeError), open_signal_receiver("SIGUSR1"):  # type: ignore[arg-type]
            pass
        before = signal.getsignal(USR1)
        with pytest.raises(OSError), open_signal_receiver(USR1, signal.SIGKILL):
            pass
        assert signal.getsignal(USR1) is before  # undone after the failure

    yieldloop.run(main)


def test_only_in_main_thread() -> None:
    errors: list[BaseException] = []

    async def main() -> None:
        with open_signal_receiver(USR1):
            pass  # pragma: no cover

    def in_thread() -> None:
        try:
            yieldloop.run(main)
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert len(errors) == 1
    assert "main thread" in str(errors[0])


def test_outside_run() -> None:
    with pytest.raises(RuntimeError), open_signal_receiver(USR1):
        pass  # pragma: no cover
