"""Run one benchmark server until interrupted.

    python -m benchmarks.net.servers PROTOCOL SERVER [--tls CERT_AND_KEY]
        [--cpus 1] [--profile FILE]

PROTOCOL is ``http`` or ``echo``; SERVER a name of
:data:`benchmarks.net.servers.SERVERS`. The server listens on 127.0.0.1,
an ephemeral port, and prints ``READY <port>`` on stdout once it accepts
connections. SIGINT (``KeyboardInterrupt``) stops it with exit status 0;
with ``--profile`` it runs under :mod:`cProfile` (timing CPU time, not
wall time) and writes the stats to FILE when it stops. Exit status 2
means bad arguments, 3 that the server's runtime cannot be imported.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import os
import signal
import ssl
import sys
import time
from collections.abc import Sequence

from . import SERVERS
from ._common import announce


def parse_cpus(value: str) -> set[int]:
    """``"0,2"`` -> ``{0, 2}``; a clear error for anything else."""
    try:
        cpus = {int(c) for c in value.split(",") if c.strip()}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected CPU numbers separated by commas, like 1 or 0,2; got {value!r}"
        ) from None
    if not cpus or min(cpus) < 0:
        raise argparse.ArgumentTypeError(f"expected CPU numbers >= 0, got {value!r}")
    return cpus


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.net.servers", description=__doc__)
    p.add_argument("protocol", choices=("http", "echo"))
    p.add_argument("server", choices=list(SERVERS))
    p.add_argument("--tls", metavar="PEM", help="serve TLS with this certificate chain + key")
    p.add_argument("--cpus", type=parse_cpus, help="pin the process to these CPUs")
    p.add_argument("--profile", metavar="FILE", help="run under cProfile, write stats here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    spec = SERVERS[args.server]
    if args.tls is not None and "tls" not in spec.sections:
        print(f"{spec.name} does not serve TLS", file=sys.stderr)
        return 2
    # Stop on SIGINT even if started with it ignored (as a background job of
    # a non-interactive shell is): the parent stops servers that way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.cpus:
        os.sched_setaffinity(0, args.cpus)
    ssl_context = None
    if args.tls is not None:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.tls)
    try:
        impl = importlib.import_module(f"{__package__}.{spec.impl}")
        if spec.name.startswith("uvloop"):
            import uvloop  # noqa: F401  (fail here, as "not installed", not later)
    except ImportError as exc:
        print(f"cannot import the runtime of {spec.name}: {exc}", file=sys.stderr)
        return 3
    # CPU time, not wall time: on a busy machine the server is preempted,
    # and wall time would pile up in whatever function was running then.
    profile = cProfile.Profile(time.process_time) if args.profile else None
    if profile is not None:
        profile.enable()
    try:
        impl.serve(spec.name, args.protocol, ssl_context, announce)
    except KeyboardInterrupt:
        pass
    except BaseExceptionGroup as group:  # trio wraps it when a nursery is open
        _, rest = group.split(KeyboardInterrupt)
        if rest is not None:
            raise
    finally:
        if profile is not None:
            profile.disable()
            profile.dump_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
