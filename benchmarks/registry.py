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
    "SERIES",
    "WORKLOADS",
    "Params",
    "Runtime",
    "Series",
    "Workload",
    "register",
    "register_runtime",
    "register_series",
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


@dataclass(frozen=True)
class Series:
    """A family of workloads that differ in one size: a scaling experiment.

    Each point is a :class:`Workload` of its own (so every point is measured,
    interleaved and checked like any other workload) whose ``series`` is this
    one and whose ``x`` is the size that varies. The report shows a series as
    one table - the rate at each ``x`` and how it changes from the smallest
    ``x`` to the largest - instead of as rows of the main table, and leaves it
    out of the geometric mean.
    """

    name: str
    #: One line, e.g. "N tasks x 100 sleep(0.01)".
    title: str
    #: What ``x`` is, e.g. "N (tasks)"; labels the table and the chart axis.
    axis: str
    #: How to read the table: what a good result looks like.
    note: str = ""
    #: ``ideal(params)``: the rate a runtime that cost nothing would reach,
    #: for series bounded by time rather than by work (timers); None if none.
    ideal: Callable[[Params], float] | None = None
    #: The short name of the point at ``x`` in table headers.
    label: Callable[[int], str] = field(default=lambda x: f"{x:,}")
    #: What the chart plots against ``x``: ``"rate"`` (median ops/s) or
    #: ``"cpu"`` (median CPU time per operation: the cost, steadier than the
    #: rate when other processes share the machine).
    chart: str = "rate"

    def __post_init__(self) -> None:
        if self.chart not in ("rate", "cpu"):
            raise ValueError(f"series {self.name!r}: chart must be 'rate' or 'cpu'")


@dataclass
class Workload:
    """One benchmark, with an implementation per runtime flavor.

    ``sizes`` holds the default parameters, ``quick`` the ones for
    ``--quick`` (small enough for CI); ``description`` is a format string
    over them; ``quick=None`` leaves the workload out of ``--quick``.
    ``ops(params)`` is the number of operations one run performs: the
    reported rate is ``ops / seconds``, and every implementation's ``main``
    must return exactly that number, which the child checks so a broken run
    cannot pass as a fast one.

    A ``self_timed`` workload times only part of its run - the part that is
    the operation, not the setup it needs inside the runtime (spawning
    100,000 idle tasks, say): its ``main`` returns ``(ops, seconds,
    cpu_seconds)``, measured with ``time.perf_counter`` and
    ``time.process_time`` around that part, instead of ``ops``.
    """

    name: str
    description: str
    sizes: dict[str, Any]
    quick: dict[str, Any] | None
    ops: Callable[[Params], int]
    unit: str = "ops"
    impls: dict[str, Factory] = field(default_factory=dict)
    #: The scaling series this workload is a point of, and its size there.
    series: Series | None = None
    x: int | None = None
    self_timed: bool = False

    def __post_init__(self) -> None:
        if (self.series is None) != (self.x is None):
            raise ValueError(f"workload {self.name!r}: give both series and x, or neither")
        if self.quick is not None and set(self.quick) != set(self.sizes):
            raise ValueError(f"workload {self.name!r}: quick and sizes name different parameters")

    def impl(self, *flavors: str) -> Callable[[Factory], Factory]:
        """Decorator: register ``factory`` as the implementation for ``flavors``."""

        def deco(factory: Factory) -> Factory:
            for flavor in flavors:
                if flavor in self.impls:
                    raise ValueError(f"workload {self.name!r} already has a {flavor!r} impl")
                self.impls[flavor] = factory
            return factory

        return deco

    @property
    def in_quick(self) -> bool:
        """Whether ``--quick`` runs this workload."""
        return self.quick is not None

    def params(self, quick: bool) -> dict[str, Any]:
        """The parameters of a run: ``quick`` or the full ``sizes``."""
        if quick:
            if self.quick is None:
                raise ValueError(f"workload {self.name!r} is not part of --quick")
            return dict(self.quick)
        return dict(self.sizes)

    def describe(self, params: Params | None = None) -> str:
        """``description`` with the sizes filled in (``{tasks:,}`` etc.; ``{ops:,}``
        is the number of operations)."""
        p = self.sizes if params is None else params
        return self.description.format(**p, ops=self.ops(p))


#: All workloads by name, in the order they are reported.
WORKLOADS: dict[str, Workload] = {}
#: All runtimes by name, in the order they are reported.
RUNTIMES: dict[str, Runtime] = {}
#: All scaling series by name, in the order they are reported.
SERIES: dict[str, Series] = {}


def register(workload: Workload) -> Workload:
    """Add ``workload`` to :data:`WORKLOADS` and return it."""
    if workload.name in WORKLOADS or workload.name in SERIES:
        raise ValueError(f"duplicate workload name {workload.name!r}")
    WORKLOADS[workload.name] = workload
    return workload


def register_runtime(runtime: Runtime) -> Runtime:
    """Add ``runtime`` to :data:`RUNTIMES` and return it."""
    if runtime.name in RUNTIMES:
        raise ValueError(f"duplicate runtime name {runtime.name!r}")
    RUNTIMES[runtime.name] = runtime
    return runtime


def register_series(series: Series) -> Series:
    """Add ``series`` to :data:`SERIES` and return it."""
    if series.name in SERIES or series.name in WORKLOADS:
        raise ValueError(f"duplicate series name {series.name!r}")
    SERIES[series.name] = series
    return series
