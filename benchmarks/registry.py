"""The two registries of the suite: runtimes and workloads.

A *runtime* knows how to run a ``main`` (``asyncio.run(main())``,
``trio.run(main)``, ...). A *workload* is one benchmark: its sizes, how many
operations one run performs, and one implementation per runtime *flavor*.
Runtimes that run the same code share a flavor (asyncio and uvloop both run
the ``"asyncio"`` implementation), so a workload is written once per API, not
once per runtime.

Nothing here imports a runtime: implementations import theirs inside the
function, so a child process loads only the runtime it measures, and a
runtime that is not installed costs nothing until it is asked for.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "RUNTIMES",
    "WORKLOADS",
    "Params",
    "Runtime",
    "Workload",
    "register",
    "register_runtime",
]

#: Sizes of one workload run, e.g. ``{"tasks": 100, "switches": 2000}``.
Params = Mapping[str, Any]

#: ``factory(params) -> main``: builds (outside the timed region) whatever the
#: runtime's runner is handed. For the async flavors that is an async function
#: taking no arguments; it must return the number of operations it completed.
Factory = Callable[[Params], Any]


@dataclass(frozen=True)
class Runtime:
    """One thing that can run a workload.

    ``load()`` imports the runtime and returns ``runner(main) -> result``; it
    is called in the child *before* the clock starts, so import time is never
    measured. The runner call itself is what gets timed, loop creation and
    teardown included.
    """

    name: str
    flavor: str
    modules: tuple[str, ...]
    load: Callable[[], Callable[[Any], Any]]
    description: str = ""
    #: A reference row (e.g. bare generators), not a runtime to compare.
    reference: bool = False
    #: Run when ``--runtimes`` is not given. Extra runtimes are run only when
    #: named (or with ``--runtimes all``).
    default: bool = True

    def missing(self) -> str | None:
        """Name of the first required module that is not installed, or None."""
        for mod in self.modules:
            try:
                if importlib.util.find_spec(mod) is None:
                    return mod
            except (ImportError, ValueError):
                return mod
        return None


@dataclass
class Workload:
    """One benchmark, with an implementation per runtime flavor.

    ``sizes`` holds the default parameters, ``quick`` the ones for
    ``--quick`` (small enough for CI); ``description`` is a format string
    over them. ``ops(params)`` is the number of
    operations one run performs: the reported rate is ``ops / seconds``, and
    every implementation's ``main`` must return exactly that number, which
    the child checks so a broken run cannot pass as a fast one.
    """

    name: str
    description: str
    sizes: dict[str, Any]
    quick: dict[str, Any]
    ops: Callable[[Params], int]
    unit: str = "ops"
    impls: dict[str, Factory] = field(default_factory=dict)

    def impl(self, *flavors: str) -> Callable[[Factory], Factory]:
        """Decorator: register ``factory`` as the implementation for ``flavors``."""

        def deco(factory: Factory) -> Factory:
            for flavor in flavors:
                if flavor in self.impls:
                    raise ValueError(f"workload {self.name!r} already has a {flavor!r} impl")
                self.impls[flavor] = factory
            return factory

        return deco

    def params(self, quick: bool) -> dict[str, Any]:
        return dict(self.quick if quick else self.sizes)

    def describe(self, params: Params | None = None) -> str:
        """``description`` with the sizes filled in (``{tasks:,}`` etc.)."""
        return self.description.format(**(self.sizes if params is None else params))


#: All workloads by name, in the order they are reported.
WORKLOADS: dict[str, Workload] = {}
#: All runtimes by name, in the order they are reported.
RUNTIMES: dict[str, Runtime] = {}


def register(workload: Workload) -> Workload:
    """Add ``workload`` to :data:`WORKLOADS` and return it."""
    if workload.name in WORKLOADS:
        raise ValueError(f"duplicate workload name {workload.name!r}")
    WORKLOADS[workload.name] = workload
    return workload


def register_runtime(runtime: Runtime) -> Runtime:
    """Add ``runtime`` to :data:`RUNTIMES` and return it."""
    if runtime.name in RUNTIMES:
        raise ValueError(f"duplicate runtime name {runtime.name!r}")
    RUNTIMES[runtime.name] = runtime
    return runtime
