"""The servers of the network benchmarks, one per runtime and API.

Nothing here imports a runtime: :data:`SERVERS` only describes each server
(the modules it needs, the sections it takes part in); the implementations
live in ``yieldloop_server``, ``asyncio_server`` and ``trio_server`` and are
imported by ``python -m benchmarks.net.servers`` - one server per process.

Every server is written the way a user of its runtime would write it: a
coroutine per connection (streams) or callbacks (protocols), the request
head read up to ``\\r\\n\\r\\n``, the same response bytes everywhere
(:mod:`._common`).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

__all__ = ["SECTIONS", "SERVERS", "ServerSpec"]

#: The benchmark sections; a server lists the ones it takes part in.
SECTIONS = ("http", "echo", "tls")


@dataclass(frozen=True)
class ServerSpec:
    """One server implementation: a row of the report."""

    #: The row name, e.g. ``"uvloop-protocol"``.
    name: str
    #: Modules that must be importable to run it (else it is skipped).
    modules: tuple[str, ...]
    #: The module of :mod:`benchmarks.net.servers` with its ``serve()``.
    impl: str
    #: One line: what the server is.
    description: str
    #: The sections it takes part in (others show it as ``n/a``).
    sections: tuple[str, ...] = SECTIONS
    #: Run when ``--runtimes`` is not given.
    default: bool = True

    def missing(self) -> str | None:
        """The first required module that is not installed, or None."""
        for mod in self.modules:
            try:
                if importlib.util.find_spec(mod) is None:
                    return mod
            except (ImportError, ValueError):
                return mod
        return None


_SPECS = [
    ServerSpec(
        "yieldloop",
        ("yieldloop",),
        "yieldloop_server",
        "yieldloop.serve_tcp; HTTP heads via BufferedReceiveStream.receive_until, "
        "echo via receive_some/send_all",
    ),
    ServerSpec(
        "yieldloop-some",
        ("yieldloop",),
        "yieldloop_server",
        "yieldloop.serve_tcp; HTTP heads via a receive_some loop with its own buffer",
        sections=("http",),
        default=False,
    ),
    ServerSpec(
        "asyncio-streams",
        ("asyncio",),
        "asyncio_server",
        "asyncio.start_server, StreamReader.readuntil / read, write + drain",
    ),
    ServerSpec(
        "asyncio-protocol",
        ("asyncio",),
        "asyncio_server",
        "loop.create_server with an asyncio.Protocol (data_received, transport.write)",
    ),
    ServerSpec(
        "uvloop-streams",
        ("uvloop",),
        "asyncio_server",
        "the asyncio-streams server on uvloop",
    ),
    ServerSpec(
        "uvloop-protocol",
        ("uvloop",),
        "asyncio_server",
        "the asyncio-protocol server on uvloop",
    ),
    ServerSpec(
        "trio",
        ("trio",),
        "trio_server",
        "trio.serve_tcp / trio.serve_ssl_over_tcp, a receive_some loop with its own buffer",
    ),
]

#: Every server by name, in the order of the report's rows.
SERVERS: dict[str, ServerSpec] = {s.name: s for s in _SPECS}
