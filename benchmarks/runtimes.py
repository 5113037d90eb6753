"""The runtimes the suite knows, and how each one runs a ``main``.

Each loader imports its runtime and returns the runner that the child times.
Every runner is that runtime's ordinary top-level entry point, so the timed
region is "start a loop, run main, tear the loop down" for all of them.

The flavor names the implementation a workload must supply:

* ``yieldloop`` - ``yieldloop.run(main)``
* ``asyncio`` - shared by asyncio and uvloop (the same code on two loops)
* ``trio``, ``curio``, ``anyio`` - async functions in that library's API
* ``tinyio`` - plain generator coroutines; ``main`` is a generator function
* ``bare`` - no runtime: ``main()`` is called as is (a reference row)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .registry import Runtime, register_runtime

Runner = Callable[[Any], Any]


def _load_yieldloop() -> Runner:
    import yieldloop

    return yieldloop.run


def _load_asyncio() -> Runner:
    import asyncio

    def run(main: Any) -> Any:
        return asyncio.run(main())

    return run


def _load_uvloop() -> Runner:
    import uvloop

    def run(main: Any) -> Any:
        return uvloop.run(main())

    return run


def _load_trio() -> Runner:
    import trio

    return trio.run


def _load_curio() -> Runner:
    import curio

    return curio.run


def _load_tinyio() -> Runner:
    import tinyio

    def run(main: Any) -> Any:
        return tinyio.Loop().run(main())

    return run


def _load_anyio() -> Runner:
    import anyio

    # anyio imports its backend module on the first run() (~0.1 s): do it now,
    # outside the timed region, as every other runtime's import is.
    import anyio._backends._asyncio  # noqa: F401

    def run(main: Any) -> Any:
        return anyio.run(main, backend="asyncio")

    return run


def _load_bare() -> Runner:
    def run(main: Any) -> Any:
        return main()

    return run


# The order here is the order of the rows in the report. The extra runtimes
# run only when named or with ``--runtimes all``: anyio is a layer over
# asyncio, and curio's and tinyio's task spawning is quadratic with asserts on
# (an ``x in deque`` / a scan of a WeakKeyDictionary per task), so the spawn
# workload alone takes minutes on them.
register_runtime(
    Runtime("yieldloop", "yieldloop", ("yieldloop",), _load_yieldloop, "yieldloop.run")
)
register_runtime(
    Runtime("asyncio", "asyncio", ("asyncio",), _load_asyncio, "asyncio.run, default event loop")
)
register_runtime(
    Runtime(
        "uvloop", "asyncio", ("uvloop",), _load_uvloop, "uvloop.run (the asyncio code on libuv)"
    )
)
register_runtime(Runtime("trio", "trio", ("trio",), _load_trio, "trio.run"))
register_runtime(Runtime("curio", "curio", ("curio",), _load_curio, "curio.run", default=False))
register_runtime(
    Runtime(
        "tinyio",
        "tinyio",
        ("tinyio",),
        _load_tinyio,
        "tinyio.Loop().run, generator coroutines",
        default=False,
    )
)
register_runtime(
    Runtime(
        "anyio", "anyio", ("anyio",), _load_anyio, "anyio.run on its asyncio backend", default=False
    )
)
register_runtime(
    Runtime(
        "bare", "bare", (), _load_bare, "plain generators in a deque, no runtime", reference=True
    )
)
