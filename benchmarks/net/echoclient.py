"""One connection of the echo load generator, in a process of its own.

    python -m benchmarks.net.echoclient --port PORT --size BYTES
        [--host 127.0.0.1] [--ca CA_PEM] [--cpus 0] [--timeout 30]

A plain blocking stdlib socket (TLS-wrapped with ``--ca``). It connects,
checks one round trip, prints ``READY`` and waits for one line on stdin::

    GO <start> <end>

(``time.monotonic()`` values, the same clock in every process on Linux).
Then it sends a message of ``--size`` random bytes, reads back exactly as
many and checks them, again and again until ``end``; round trips that end
inside ``[start, end)`` are counted. It prints one JSON line::

    {"count": N, "bytes": N * size, "cpu_seconds": ...}

(``cpu_seconds``: its own CPU time inside the window). Any error - a wrong
echo, a closed connection, a timeout - is printed on stderr, exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import sys
import time
from collections.abc import Sequence


def round_trip(sock: socket.socket, message: bytes, buf: bytearray) -> None:
    """Send ``message``, read back exactly ``len(message)`` bytes into ``buf``
    (of that length) and check they are the same."""
    size = len(message)
    sock.sendall(message)
    got = 0
    with memoryview(buf) as view:
        while got < size:
            n = sock.recv_into(view[got:], size - got)
            if not n:
                raise ConnectionError(
                    f"the server closed the connection after {got} of {size} bytes"
                )
            got += n
    if buf != message:
        raise ValueError(f"the server sent back different bytes than the {size} sent")


def connect(host: str, port: int, ca: str | None, timeout: float) -> socket.socket:
    """A connected blocking socket (TLS-wrapped, verified against ``ca``, if given)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ca is None:
            return sock
        context = ssl.create_default_context(cafile=ca)
        return context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


def parse_go(line: str) -> tuple[float, float]:
    """``"GO <start> <end>"`` -> ``(start, end)``; ValueError for anything else."""
    parts = line.split()
    if len(parts) != 3 or parts[0] != "GO":
        raise ValueError(f"expected 'GO <start> <end>' on stdin, got {line!r}")
    start, end = float(parts[1]), float(parts[2])
    if not end > start:
        raise ValueError(f"the window must end after it starts, got {line!r}")
    return start, end


def run(sock: socket.socket, size: int, start: float, end: float) -> dict[str, float]:
    """The measured loop: round trips until ``end``; counts those in the window."""
    message = os.urandom(size)
    buf = bytearray(size)
    monotonic = time.monotonic
    count = 0
    cpu_start = cpu_end = None
    while True:
        round_trip(sock, message, buf)
        now = monotonic()
        if now >= start:
            if cpu_start is None:
                cpu_start = time.process_time()
            if now >= end:
                cpu_end = time.process_time()
                break
            count += 1
    return {"count": count, "bytes": count * size, "cpu_seconds": cpu_end - cpu_start}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.net.echoclient", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--size", type=int, required=True, help="message size in bytes")
    p.add_argument("--ca", help="connect with TLS, trusting this CA certificate (PEM)")
    p.add_argument("--cpus", help="pin the process to these CPUs, e.g. 0 or 0,2")
    p.add_argument("--timeout", type=float, default=30.0, help="socket timeout in seconds")
    args = p.parse_args(argv)
    if args.size < 1:
        p.error(f"--size must be >= 1 byte, got {args.size}")
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    try:
        with connect(args.host, args.port, args.ca, args.timeout) as sock:
            probe = os.urandom(args.size)
            round_trip(sock, probe, bytearray(args.size))
            sys.stdout.write("READY\n")
            sys.stdout.flush()
            start, end = parse_go(sys.stdin.readline())
            result = run(sock, args.size, start, end)
    except (OSError, ValueError) as exc:
        print(f"echo client: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
