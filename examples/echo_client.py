"""A TCP echo client: sends messages to ``echo_server.py`` and checks that
every byte comes back, in order.

Two modes::

    # the lines you type (or pipe in) are sent; their echoes are printed
    printf 'hello\\nworld\\n' | python examples/echo_client.py --port 7000

    # 1000 messages of 64 KiB of random bytes, every echo checked
    python examples/echo_client.py --port 7000 --count 1000 --size 65536

The exit status is 0 when every echo matched, 1 otherwise (a wrong echo,
the server closing early, no echo within ``--timeout`` seconds, no server).

What it shows: two tasks share one connection - one sends, one receives -
so a large message cannot deadlock (the server echoes while we are still
sending). The sender tells the receiver what to expect through a bounded
channel, which also stops the sender from running far ahead.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

import yieldloop

#: Bytes read from stdin at a time.
STDIN_CHUNK = 65536


class EchoError(Exception):
    """The echo did not match what was sent, or never came back."""


async def check_echoes(
    conn: yieldloop.BufferedReceiveStream,
    expected: yieldloop.ReceiveChannel[bytes],
    timeout: float,
    show: bool,
) -> int:
    """Receive the echo of each message the sender announces on
    ``expected``, compare it, and (if ``show``) print it. Returns the number
    of bytes checked once the sender has closed its end of ``expected``."""
    checked = 0
    async with expected:  # closes our end of the channel when we are done
        async for message in expected:
            try:
                # fail_after raises TimeoutError if the echo takes too long.
                with yieldloop.fail_after(timeout):
                    echo = await conn.receive_exactly(len(message))
            except yieldloop.IncompleteRead as exc:
                raise EchoError(
                    f"the server closed the connection after echoing {checked + len(exc.partial)}"
                    f" bytes; {checked + len(message)} were expected"
                ) from None
            except TimeoutError:
                raise EchoError(f"no echo within {timeout} s (after {checked} bytes)") from None
            if echo != message:
                raise EchoError(f"wrong echo after {checked} correct bytes: {echo[:40]!r}...")
            checked += len(message)
            if show:
                sys.stdout.buffer.write(echo)
                sys.stdout.flush()
    return checked


async def send_one(
    conn: yieldloop.Stream, expected: yieldloop.SendChannel[bytes], data: bytes
) -> None:
    """Announce ``data`` to the receiver, then send it."""
    await expected.send(data)  # waits if the receiver is far behind
    await conn.send_all(data)


async def send_stdin_lines(conn: yieldloop.Stream, expected: yieldloop.SendChannel[bytes]) -> None:
    """Send stdin line by line until it ends (Ctrl-D on a terminal)."""
    fd = sys.stdin.fileno()
    pending = b""
    async with expected:  # closing it tells the receiver "that was all"
        while True:
            # Reading stdin blocks, so it runs in a worker thread. If we are
            # cancelled (Ctrl-C), we do not wait for the user to type a line:
            # abandon_on_cancel leaves the thread behind.
            chunk = await yieldloop.to_thread(os.read, fd, STDIN_CHUNK, abandon_on_cancel=True)
            if not chunk:
                break
            pending += chunk
            while (end := pending.find(b"\n")) >= 0:
                line, pending = pending[: end + 1], pending[end + 1 :]
                await send_one(conn, expected, line)
        if pending:  # a last line without a newline
            await send_one(conn, expected, pending)


async def send_random(
    conn: yieldloop.Stream, expected: yieldloop.SendChannel[bytes], count: int, size: int
) -> None:
    """Send ``count`` messages of ``size`` random bytes."""
    async with expected:
        for _ in range(count):
            await send_one(conn, expected, random.randbytes(size))


async def main(args: argparse.Namespace) -> int:
    """Connect, run the sender and the receiver side by side, and report.
    Returns the exit status."""
    try:
        stream = await yieldloop.open_tcp_stream(args.host, args.port)
    except OSError as exc:
        print(f"echo_client: cannot connect: {exc}", file=sys.stderr)
        return 1
    if args.count is None and sys.stdin.isatty():
        print("connected; type lines, Ctrl-D to finish", file=sys.stderr)
    start = time.perf_counter()
    problem = None
    # BufferedReceiveStream adds receive_exactly(); "async with" closes the
    # connection on every way out of this block.
    async with yieldloop.BufferedReceiveStream(stream) as conn:
        # The sender puts each message here before sending it; the receiver
        # takes them out in order. 16 messages at most are in flight.
        announce, expected = yieldloop.open_channel(16)
        try:
            async with yieldloop.TaskGroup() as tg:
                checker = tg.spawn(check_echoes, conn, expected, args.timeout, args.count is None)
                if args.count is None:
                    await send_stdin_lines(conn, announce)
                else:
                    await send_random(conn, announce, args.count, args.size)
        # A task group raises the errors of its tasks as an ExceptionGroup;
        # except* picks out the kinds we expect.
        except* EchoError as group:
            problem = str(group.exceptions[0])
        except* yieldloop.BrokenResourceError as group:
            if problem is None:  # if both kinds were raised, the first one tells more
                problem = f"the connection broke: {group.exceptions[0]}"
    if problem is not None:
        print(f"echo_client: {problem}", file=sys.stderr)
        return 1
    if args.count is not None:
        elapsed = time.perf_counter() - start
        total = checker.result()
        print(
            f"{args.count} messages of {args.size} bytes echoed correctly "
            f"({total} bytes in {elapsed:.3f} s, {total / elapsed / 1e6:.1f} MB/s)"
        )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description="A TCP echo client on yieldloop.")
    parser.add_argument("--host", default="127.0.0.1", help="server address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=7000, help="server port (7000)")
    parser.add_argument(
        "--count", type=int, help="send COUNT random messages instead of reading stdin"
    )
    parser.add_argument("--size", type=int, default=1024, help="bytes per message (1024)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for each echo (30)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be between 1 and 65535, got {args.port}")
    if args.count is not None and args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    if args.size < 1:
        parser.error(f"--size must be at least 1, got {args.size}")
    if not args.timeout > 0:
        parser.error(f"--timeout must be more than 0, got {args.timeout}")
    return args


if __name__ == "__main__":
    options = parse_args()
    try:
        status = yieldloop.run(main, options)
    except KeyboardInterrupt:  # Ctrl-C: yieldloop already cancelled and closed everything
        status = 0
    sys.exit(status)
