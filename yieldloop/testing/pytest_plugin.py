"""The pytest plugin: run ``async def`` (and generator) tests on yieldloop.

Installed with yieldloop (entry point ``pytest11``), nothing to enable::

    import pytest, yieldloop

    @pytest.mark.yieldloop
    async def test_timeout(autojump_clock):
        with yieldloop.move_on_after(3600) as scope:
            await yieldloop.sleep_forever()
        assert scope.cancelled_caught and yieldloop.current_time() == 3600

* ``@pytest.mark.yieldloop`` marks a test (an ``async def``, or a generator
  function yielding requests) to run with :func:`yieldloop.run`. With the ini
  option ``yieldloop_mode = auto`` every ``async def`` test runs on yieldloop.
* Fixtures: ``autojump_clock`` (a :class:`VirtualClock` that jumps to the
  next deadline whenever every task waits) and ``virtual_clock`` (one that
  only moves with ``clock.jump(seconds)``). A test that asks for one runs
  on it.
* ``--yieldloop-seed=N`` runs every yieldloop test under
  ``RandomScheduler(N)`` on virtual time; ``--yieldloop-explore=RUNS`` runs
  each under up to RUNS schedules (``--yieldloop-strategy``: pct, random,
  exhaustive) and reports the first failing one, shrunk;
  ``--yieldloop-replay=TOKEN`` runs one schedule again. A failure in these
  modes ends with the command line that replays it.

Fixture values are made once per test, so with ``--yieldloop-explore`` every
run of a test sees the same fixture objects: keep per-run state in the test.
"""

from __future__ import annotations

import functools
import inspect
import shlex
from collections.abc import Callable
from typing import Any

import pytest

from .._kernel._clock import Clock, VirtualClock
from .._kernel._kernel import run
from ._explore import STRATEGIES, ScheduleFailure, explore, replay
from ._schedulers import RandomScheduler

__all__ = ["autojump_clock", "virtual_clock"]

_MARK = "yieldloop"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``--yieldloop-*`` options and the ``yieldloop_mode`` ini option."""
    group = parser.getgroup("yieldloop", "yieldloop: async tests, schedules and replay")
    group.addoption(
        "--yieldloop-seed",
        type=int,
        default=None,
        metavar="N",
        help="run yieldloop tests under RandomScheduler(N) on virtual time",
    )
    group.addoption(
        "--yieldloop-explore",
        type=int,
        default=None,
        metavar="RUNS",
        help="run each yieldloop test under up to RUNS schedules; report the first failure",
    )
    group.addoption(
        "--yieldloop-strategy",
        default="pct",
        choices=STRATEGIES,
        help="schedule exploration strategy (default: pct)",
    )
    group.addoption(
        "--yieldloop-replay",
        default=None,
        metavar="TOKEN",
        help="run yieldloop tests under the schedule TOKEN names (from a failure)",
    )
    parser.addini(
        "yieldloop_mode",
        "strict: only tests marked @pytest.mark.yieldloop run on yieldloop; "
        "auto: every async def test does",
        default="strict",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; check the ini option."""
    config.addinivalue_line(
        "markers", "yieldloop: run this async def (or generator) test with yieldloop.run"
    )
    mode = config.getini("yieldloop_mode")
    if mode not in ("strict", "auto"):
        raise pytest.UsageError(f"yieldloop_mode must be 'strict' or 'auto', got {mode!r}")
    runs = config.getoption("--yieldloop-explore")
    if runs is not None and runs < 1:
        raise pytest.UsageError(f"--yieldloop-explore needs a number of runs >= 1, got {runs}")


@pytest.fixture
def autojump_clock() -> VirtualClock:
    """A :class:`VirtualClock` that jumps to the next deadline whenever
    every task waits: sleeps and timeouts take no real time."""
    return VirtualClock(autojump_threshold=0.0)


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A :class:`VirtualClock` that stands still until ``clock.jump(s)``."""
    return VirtualClock(autojump_threshold=None)


def _marked(obj: Any, collector: Any) -> bool:
    marks = list(getattr(obj, "pytestmark", []))
    module = getattr(collector, "module", None)
    if module is not None:
        found = getattr(module, "pytestmark", [])
        marks += found if isinstance(found, list) else [found]
    return any(getattr(m, "name", None) == _MARK for m in marks)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Any:
    """Collect generator test functions marked ``yieldloop`` as tests
    (pytest itself ignores generator tests)."""
    if (
        isinstance(collector, (pytest.Module, pytest.Class))
        and inspect.isgeneratorfunction(obj)
        and collector.funcnamefilter(name)
        and _marked(obj, collector)
    ):
        return list(collector._genfunctions(name, obj))
    return None


def _ours(item: pytest.Function) -> bool:
    fn = item.obj
    if item.get_closest_marker(_MARK) is not None:
        return inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn)
    return item.config.getini("yieldloop_mode") == "auto" and inspect.iscoroutinefunction(fn)


def _replay_command(item: pytest.Function, token: str) -> str:
    return f"pytest {shlex.quote(item.nodeid)} --yieldloop-replay={shlex.quote(token)}"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a yieldloop test (see the module docs)."""
    if not _ours(pyfuncitem):
        return None
    kwargs = {n: pyfuncitem.funcargs[n] for n in pyfuncitem._fixtureinfo.argnames}
    test: Callable[[], Any] = functools.partial(pyfuncitem.obj, **kwargs)
    clocks = [v for v in kwargs.values() if isinstance(v, Clock)]
    chosen: Clock | None = clocks[0] if clocks else None
    config = pyfuncitem.config
    seed = config.getoption("--yieldloop-seed")
    runs = config.getoption("--yieldloop-explore")
    token = config.getoption("--yieldloop-replay")

    unused = [chosen] if chosen is not None else []

    def make_clock() -> Clock:
        # A clock per run: the fixture's own for the first run (it is the one
        # the test sees), then fresh virtual clocks configured like it.
        if unused:
            return unused.pop()
        if isinstance(chosen, VirtualClock):
            return VirtualClock(autojump_threshold=chosen.autojump_threshold)
        return VirtualClock()

    if token is not None:
        replay(test, token, clock=make_clock)
    elif runs is not None:
        try:
            explore(
                test,
                runs=runs,
                strategy=config.getoption("--yieldloop-strategy"),
                seed=seed or 0,
                clock=make_clock,
            )
        except ScheduleFailure as exc:
            exc.add_note("replay this schedule with:\n  " + _replay_command(pyfuncitem, exc.token))
            raise
    elif seed is not None:
        sched = RandomScheduler(seed)
        try:
            run(test, clock=make_clock(), scheduler=sched)
        except BaseException as exc:
            if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                exc.add_note(
                    f"failed under --yieldloop-seed={seed}; replay this schedule with:\n  "
                    + _replay_command(pyfuncitem, sched.token())
                )
            raise
    else:
        run(test, clock=chosen)
    return True
