"""A line-based chat room over TCP.

Run it, then connect with a few terminals::

    python examples/chat_server.py --port 7007
    nc 127.0.0.1 7007        # or: telnet 127.0.0.1 7007

Every line a client sends goes to everybody else as ``NAME: text``. Clients
start as ``guestN``; the commands are ``/nick NAME``, ``/who``, ``/quit``
and ``/help``. Joins, leaves and renames are announced with a ``* `` line.

A slow client must not hold up the room. Each client has an outbox: a
channel of at most ``--buffer`` lines, emptied onto its socket by a task of
its own. Broadcasting never waits - it puts the line in each outbox with
``send_nowait`` - and a client whose outbox is full (it has stopped reading,
or reads far slower than the room talks) is disconnected, and the others
are told so.

The first line printed is ``listening on HOST:PORT`` (``--port 0`` picks a
free port), then one line per event. Ctrl-C stops the server.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from typing import Any

import yieldloop

#: A nickname: 1 to 20 letters, digits, ``_`` or ``-``.
NICK = re.compile(r"[A-Za-z0-9_-]{1,20}")

#: Seconds a leaving client's outbox may take to drain (e.g. the reply to /quit).
GOODBYE_TIMEOUT = 5.0

TOO_SLOW = "was disconnected: too slow (its outbox is full)"

HELP = "* commands: /nick NAME, /who, /quit, /help\n"


class Client:
    """One connected client: its name and its outbox."""

    def __init__(self, name: str, peer: str, outbox: yieldloop.SendChannel[bytes]) -> None:
        self.name = name
        self.peer = peer
        self.outbox = outbox
        #: Set to cancel everything this client's connection is doing.
        self.cancel_scope: yieldloop.CancelScope | None = None

    def offer(self, message: bytes) -> bool:
        """Put ``message`` in the outbox without waiting. False if it is full."""
        try:
            self.outbox.send_nowait(message)
        except yieldloop.WouldBlock:
            return False
        except (yieldloop.BrokenResourceError, yieldloop.ClosedResourceError):
            pass  # the connection is ending anyway
        return True


class ChatRoom:
    """The clients present, by name, and what happens between them."""

    def __init__(self, buffer: int, max_line: int) -> None:
        self.buffer = buffer
        self.max_line = max_line
        self.clients: dict[str, Client] = {}
        self._guest_numbers = itertools.count(1)

    # ------------------------------------------------------- the room

    def log(self, text: str) -> None:
        """An event, on the server's stdout."""
        print(text, flush=True)

    def guest_name(self) -> str:
        """A ``guestN`` name nobody has."""
        while (name := f"guest{next(self._guest_numbers)}") in self.clients:
            pass
        return name

    def tell(self, client: Client, text: str) -> None:
        """Send ``text`` to one client (who is dropped if too slow)."""
        if not client.offer(text.encode()):
            self.remove(client, TOO_SLOW, disconnect=True)

    def broadcast(self, text: str, exclude: Client | None = None) -> None:
        """Send ``text`` to everyone but ``exclude``; drop whoever is too slow."""
        message = text.encode()
        too_slow = [
            client
            for client in self.clients.values()
            if client is not exclude and not client.offer(message)
        ]
        for client in too_slow:
            self.remove(client, TOO_SLOW, disconnect=True)

    def remove(self, client: Client, why: str, *, disconnect: bool = False) -> None:
        """Take ``client`` out of the room (if still in it) and tell the
        others ``why``. With ``disconnect``, also cancel what its connection
        is doing (which closes it)."""
        if self.clients.get(client.name) is not client:
            return  # already gone
        del self.clients[client.name]
        self.log(f"{client.name} {why}")
        if disconnect and client.cancel_scope is not None:
            client.cancel_scope.cancel()
        self.broadcast(f"* {client.name} {why}\n")

    def command(self, client: Client, text: str) -> bool:
        """Run a ``/`` command. Returns False for ``/quit``."""
        verb, _, rest = text.partition(" ")
        if verb == "/nick":
            new = rest.strip()
            if not NICK.fullmatch(new):
                self.tell(client, "* a name is 1 to 20 letters, digits, _ or -\n")
            elif new == client.name:
                self.tell(client, f"* you are {new} already\n")
            elif new in self.clients:
                self.tell(client, f"* {new} is taken\n")
            else:
                old = client.name
                del self.clients[old]
                client.name = new
                self.clients[new] = client
                self.log(f"{old} is now {new}")
                self.tell(client, f"* you are now {new}\n")
                self.broadcast(f"* {old} is now {new}\n", exclude=client)
        elif verb == "/who":
            self.tell(client, f"* here: {', '.join(sorted(self.clients))}\n")
        elif verb == "/quit":
            self.tell(client, "* bye\n")
            return False
        else:
            self.tell(client, HELP)
        return True

    # ------------------------------------------------- a connection

    async def handle(self, stream: yieldloop.SocketStream) -> None:
        """Run one client's connection: a reader (this task) and a writer."""
        conn = yieldloop.BufferedReceiveStream(stream)
        outbox, inbox = yieldloop.open_channel(self.buffer)
        client = Client(self.guest_name(), peer_of(stream), outbox)
        async with yieldloop.TaskGroup() as tg:
            client.cancel_scope = tg.cancel_scope
            tg.spawn(write_outbox, conn, inbox)
            self.clients[client.name] = client
            self.log(f"{client.name} joined from {client.peer}")
            others = len(self.clients) - 1
            self.tell(client, f"* welcome, {client.name}! {others} other(s) here\n" + HELP)
            self.broadcast(f"* {client.name} joined\n", exclude=client)
            try:
                await self.read_lines(conn, client)
            finally:
                self.remove(client, "left")
                # No more lines for this client: the writer sends what is
                # still in the outbox, then ends - within GOODBYE_TIMEOUT.
                outbox.close()
                tg.cancel_scope.deadline = yieldloop.current_time() + GOODBYE_TIMEOUT

    async def read_lines(self, conn: yieldloop.BufferedReceiveStream, client: Client) -> None:
        """Read the client's lines and act on them, until it leaves."""
        while True:
            try:
                line = await conn.receive_until(b"\n", self.max_line)
            except (yieldloop.IncompleteRead, yieldloop.BrokenResourceError):
                return  # the client closed the connection (or it broke)
            except yieldloop.DelimiterNotFound:
                self.tell(client, f"* lines are at most {self.max_line} bytes; bye\n")
                self.remove(client, "was disconnected: line too long")
                return
            text = line.decode("utf-8", "replace").rstrip("\r")
            if text.startswith("/"):
                if not self.command(client, text):
                    return
            elif text:
                self.broadcast(f"{client.name}: {text}\n", exclude=client)


async def write_outbox(
    conn: yieldloop.BufferedReceiveStream, inbox: yieldloop.ReceiveChannel[bytes]
) -> None:
    """Send the outbox's lines to the client as they come, until the outbox
    is closed and empty."""
    async with inbox:  # closed on the way out: later offers are ignored
        try:
            async for message in inbox:
                await conn.send_all(message)
        except yieldloop.BrokenResourceError:
            pass  # the client is gone; its reader sees that too


def peer_of(stream: yieldloop.SocketStream) -> str:
    """The client's address, for the log."""
    try:
        return format_address(stream.socket.getpeername())
    except OSError:  # already disconnected
        return "(unknown)"


def format_address(sockname: tuple[Any, ...]) -> str:
    """``host:port`` from a ``getsockname()`` result, with brackets around an
    IPv6 host."""
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def main(args: argparse.Namespace) -> None:
    """Listen, print the address, serve until cancelled."""
    room = ChatRoom(args.buffer, args.max_line)
    listeners = await yieldloop.open_tcp_listeners(args.port, host=args.host)
    try:
        for listener in listeners:
            print(f"listening on {format_address(listener.socket.getsockname())}", flush=True)
        await yieldloop.serve_listeners(room.handle, listeners)
    finally:
        for listener in listeners:  # serve_listeners closes them too; this
            listener.close()  # covers the case where it never started


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description="A line-based chat server on yieldloop.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=7007, help="port (7007; 0 picks a free one)")
    parser.add_argument(
        "--buffer",
        type=int,
        default=100,
        help="lines waiting for a client before it is dropped as too slow (100)",
    )
    parser.add_argument(
        "--max-line", type=int, default=4096, help="longest line accepted, in bytes (4096)"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, got {args.port}")
    if args.buffer < 1:
        parser.error(f"--buffer must be at least 1, got {args.buffer}")
    if args.max_line < 1:
        parser.error(f"--max-line must be at least 1, got {args.max_line}")
    return args


if __name__ == "__main__":
    options = parse_args()
    try:
        yieldloop.run(main, options)
    except KeyboardInterrupt:  # Ctrl-C: yieldloop already cancelled and closed everything
        pass
    except OSError as exc:  # e.g. the port is taken
        sys.exit(f"chat_server: {exc}")
