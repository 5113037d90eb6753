"""Network benchmarks: ``python -m benchmarks.net --help``.

Three sections, each server in a process of its own, loaded from other
processes (see ``benchmarks/net/README.md``):

* ``http`` - an HTTP/1.1 keep-alive "hello" server loaded by ``wrk``;
* ``echo`` - TCP echo with 1, 10 and 100 KiB messages, 10 connections;
* ``tls`` - the same echo over TLS.

The servers (:mod:`benchmarks.net.servers`) run on yieldloop, asyncio and
uvloop (streams and protocols) and trio.
"""
