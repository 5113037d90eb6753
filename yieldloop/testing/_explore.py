"""Schedule exploration: run a test under many interleavings, find one that
fails, shrink it, and replay it from a token.

Layer 5. Each run is a fresh :func:`~yieldloop.run` of the test on a fresh
:class:`VirtualClock`, with a scheduler that picks the order of the steps
(:mod:`._schedulers`). On virtual time, with no real I/O or threads, the
order of the steps is the only thing that can differ between two runs, so a
failing schedule, written down as the list of its decisions, fails again
every time it is replayed.

* ``strategy="pct"`` (default): probabilistic concurrency testing, good at
  bugs that need a few ordering constraints (see :class:`PCTScheduler`);
* ``"random"``: a uniformly random choice at every step;
* ``"exhaustive"``: every schedule with at most ``depth`` deviations from
  FIFO, depth first (bounded like a preemption bound), until ``runs`` or
  the tree is covered.

A failure is *shrunk* before it is reported: deviations from FIFO are
removed (in halves, then one by one) and lowered while the run still fails
the same way, so the token names few decisions - each one a place where the
order mattered.

:func:`explore_cancellation` is the other mode: it cancels a region of the
test at its first await point, then its second, and so on, to find code that
breaks when it is cancelled midway.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._kernel._clock import Clock, VirtualClock
from .._kernel._errors import Cancelled
from .._kernel._kernel import CHECKPOINT, run
from .._kernel._scope import CancelScope
from .._kernel._task import Task
from ._schedulers import (
    PCTScheduler,
    RandomScheduler,
    RecordingScheduler,
    ReplayScheduler,
    decode_token,
    encode_token,
)

__all__ = [
    "ExploreResult",
    "ScheduleFailure",
    "explore",
    "explore_cancellation",
    "replay",
]

STRATEGIES = ("pct", "random", "exhaustive")

_CANCEL_PREFIX = "yl1-cancel:"

#: Requests at which a task can be cancelled (``reschedule`` and the
#: questions ``current_time``/``current_task``/``spawn`` are not such points).
_CANCEL_POINTS = frozenset(
    {"checkpoint", "sleep", "sleep_until", "park", "wait_readable", "wait_writable"}
)


class ScheduleFailure(AssertionError):
    """The test failed under some schedule. ``token`` replays it
    (``replay(test, token)``); the test's own exception is ``__cause__``."""

    def __init__(
        self,
        message: str,
        *,
        token: str,
        runs: int,
        strategy: str,
        deviations: int,
    ) -> None:
        super().__init__(message)
        #: Pass to :func:`replay` to run the failing schedule again.
        self.token = token
        #: Runs made before the failure was found (the failing one included).
        self.runs = runs
        #: The strategy that found it (or ``"cancel"``).
        self.strategy = strategy
        #: Decisions that differ from FIFO in the (shrunk) schedule.
        self.deviations = deviations


@dataclass(frozen=True)
class ExploreResult:
    """What :func:`explore` / :func:`explore_cancellation` did when no
    schedule failed."""

    #: How many runs were made.
    runs: int
    #: The strategy used.
    strategy: str
    #: How many of those runs had a schedule no earlier run had.
    distinct_schedules: int
    #: True if every schedule within the bounds was tried (exhaustive /
    #: cancellation modes), False if ``runs`` ran out first.
    complete: bool


# ------------------------------------------------------------ running once


def _check_test(test: Any) -> None:
    if not callable(test):
        raise TypeError(
            f"explore() needs the test as an async function (or generator function) "
            f"taking no arguments, got {test!r}"
        )


def _clock_factory(clock: Callable[[], Clock] | None) -> Callable[[], Clock]:
    if clock is None:
        return VirtualClock
    if not callable(clock):
        raise TypeError(f"clock must be a function returning a Clock, got {clock!r}")
    return clock


def _run_once(
    test: Callable[..., Any],
    scheduler: RecordingScheduler,
    clock: Callable[[], Clock],
    max_steps: int,
) -> BaseException | None:
    """Run ``test`` once under ``scheduler``; its exception, or None."""
    scheduler.max_steps = max_steps
    try:
        run(test, clock=clock(), scheduler=scheduler)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        return exc
    return None


def _signature(exc: BaseException) -> tuple[str, ...]:
    """What makes two failures "the same": the exception types (of every
    leaf, for exception groups), not their messages."""
    if isinstance(exc, BaseExceptionGroup):
        leaves: list[str] = []
        for sub in exc.exceptions:
            leaves.extend(_signature(sub))
        return tuple(sorted(leaves))
    return (f"{type(exc).__module__}.{type(exc).__qualname__}",)


def _deviations(decisions: Sequence[int]) -> int:
    return sum(1 for d in decisions if d)


def _trim(decisions: Sequence[int]) -> list[int]:
    out = list(decisions)
    while out and not out[-1]:
        out.pop()
    return out


# ------------------------------------------------------------ explore


def explore(
    test: Callable[[], Any],
    *,
    runs: int = 1000,
    strategy: str = "pct",
    depth: int = 3,
    seed: int = 0,
    shrink: bool = True,
    max_steps: int = 100_000,
    clock: Callable[[], Clock] | None = None,
) -> ExploreResult:
    """Run ``test`` (an async function taking no arguments; it must build
    its own state on every call) under up to ``runs`` schedules; raise
    :class:`ScheduleFailure` for the first one that fails.

    The first run is always plain FIFO. ``strategy`` is ``"pct"``,
    ``"random"`` or ``"exhaustive"`` (see the module docs); ``depth`` is the
    PCT bug depth, or for exhaustive the most deviations from FIFO a
    schedule may have. ``seed`` makes the random strategies reproducible.
    ``clock`` makes each run's clock (default :class:`VirtualClock`).
    ``max_steps`` ends a run that never finishes with :class:`TooManySteps`.

    The failure's message holds the (shrunk) replay token and the command
    to replay it; its ``__cause__`` is the test's exception in that schedule.
    """
    _check_test(test)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    for name, value, low in (("runs", runs, 1), ("depth", depth, 0), ("max_steps", max_steps, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    make_clock = _clock_factory(clock)
    seen: set[tuple[int, ...]] = set()

    def fail(sched: RecordingScheduler, exc: BaseException, n: int) -> ScheduleFailure:
        decisions = _trim(sched.decisions)
        if shrink:
            decisions, exc = _shrink(test, decisions, exc, make_clock, max_steps)
        token = encode_token(decisions)
        err = ScheduleFailure(
            f"{type(exc).__name__} under schedule {token} (found by {strategy!r} in run {n} "
            f"of {runs}; {_deviations(decisions)} decisions differ from FIFO).\n"
            f"Replay it with: yieldloop.testing.replay(test, {token!r})",
            token=token,
            runs=n,
            strategy=strategy,
            deviations=_deviations(decisions),
        )
        err.__cause__ = exc
        return err

    # Run 1: FIFO. It also tells PCT how long a run is.
    fifo = RecordingScheduler()
    exc = _run_once(test, fifo, make_clock, max_steps)
    if exc is not None:
        raise fail(fifo, exc, 1)
    seen.add(tuple(_trim(fifo.decisions)))
    longest = max(fifo.steps, 1)  # PCT spreads its change points over this

    if strategy == "exhaustive":
        return _explore_exhaustive(test, runs, depth, make_clock, max_steps, fifo, seen, fail)

    for n in range(2, runs + 1):
        sub_seed = seed * 1_000_003 + n
        sched: RecordingScheduler
        if strategy == "pct":
            sched = PCTScheduler(sub_seed, depth=max(depth, 1), steps=longest)
        else:
            sched = RandomScheduler(sub_seed)
        exc = _run_once(test, sched, make_clock, max_steps)
        if exc is not None:
            raise fail(sched, exc, n)
        longest = max(longest, sched.steps)
        seen.add(tuple(_trim(sched.decisions)))
    return ExploreResult(runs=runs, strategy=strategy, distinct_schedules=len(seen), complete=False)


class _TreeScheduler(ReplayScheduler):
    """Replays a prefix, then FIFO; remembers how many tasks were ready at
    each decision point (the branching of the schedule tree)."""

    __slots__ = ("widths",)

    def __init__(self, prefix: Sequence[int]) -> None:
        super().__init__(list(prefix))
        self.widths: list[int] = []

    def pick(self, ready: Sequence[Task[Any]]) -> int:
        self.widths.append(len(ready))
        return super().pick(ready)


def _explore_exhaustive(
    test: Callable[[], Any],
    runs: int,
    depth: int,
    make_clock: Callable[[], Clock],
    max_steps: int,
    first: RecordingScheduler,
    seen: set[tuple[int, ...]],
    fail: Callable[[RecordingScheduler, BaseException, int], ScheduleFailure],
) -> ExploreResult:
    # Depth-first over the tree of decisions, leftmost (FIFO) first. The
    # first run (FIFO) is replayed to learn the widths of its decisions.
    sched = _TreeScheduler([])
    exc = _run_once(test, sched, make_clock, max_steps)
    n = 2
    if exc is not None:  # FIFO passed a moment ago: the test is not deterministic
        raise fail(sched, exc, n)
    del first
    while True:
        decisions, widths = sched.decisions, sched.widths
        prefix: list[int] | None = None
        for k in range(len(decisions) - 1, -1, -1):
            if decisions[k] + 1 < widths[k]:
                devs = _deviations(decisions[:k]) + 1
                if devs <= depth:
                    prefix = [*decisions[:k], decisions[k] + 1]
                    break
        if prefix is None:
            return ExploreResult(
                runs=n, strategy="exhaustive", distinct_schedules=len(seen), complete=True
            )
        if n >= runs:
            return ExploreResult(
                runs=n, strategy="exhaustive", distinct_schedules=len(seen), complete=False
            )
        n += 1
        sched = _TreeScheduler(prefix)
        exc = _run_once(test, sched, make_clock, max_steps)
        if exc is not None:
            raise fail(sched, exc, n)
        seen.add(tuple(_trim(sched.decisions)))


# ------------------------------------------------------------ shrinking


def _shrink(
    test: Callable[[], Any],
    decisions: list[int],
    exc: BaseException,
    make_clock: Callable[[], Clock],
    max_steps: int,
    budget: int = 400,
) -> tuple[list[int], BaseException]:
    """Fewer, smaller deviations from FIFO that still fail the same way."""
    target = _signature(exc)
    best, best_exc = _trim(decisions), exc
    tries = 0

    def better(cand: list[int]) -> bool:
        nonlocal best, best_exc, tries
        tries += 1
        sched = ReplayScheduler(cand)
        e = _run_once(test, sched, make_clock, max_steps)
        if e is None or _signature(e) != target:
            return False
        got = _trim(sched.decisions)
        if (_deviations(got), sum(got)) >= (_deviations(best), sum(best)):
            return False
        best, best_exc = got, e
        return True

    changed = True
    while changed and tries < budget:
        changed = False
        # Remove deviations in chunks, halving the chunk size (ddmin-like).
        positions = [k for k, v in enumerate(best) if v]
        size = max(len(positions) // 2, 1)
        while size >= 1 and tries < budget:
            positions = [k for k, v in enumerate(best) if v]
            i = 0
            while i < len(positions) and tries < budget:
                cand = list(best)
                for k in positions[i : i + size]:
                    if k < len(cand):
                        cand[k] = 0
                if better(cand):
                    changed = True
                    positions = [k for k, v in enumerate(best) if v]
                else:
                    i += size
            if size == 1:
                break
            size //= 2
        # Lower the remaining deviations to the nearest alternative.
        for k, v in enumerate(list(best)):
            if tries >= budget:
                break
            if v > 1 and k < len(best) and best[k] == v:
                cand = list(best)
                cand[k] = 1
                if better(cand):
                    changed = True
    return best, best_exc


# ------------------------------------------------------------ cancellation


def _inside(task: Task[Any], region: CancelScope) -> bool:
    scope: Any = task._scope
    while scope is not None:
        if scope is region:
            return True
        scope = scope._parent
    return False


class _CancelInjector(RecordingScheduler):
    """FIFO, and cancel ``region`` right after the ``point``-th time a task
    inside it stops at a cancellation point (0 = the first)."""

    __slots__ = ("count", "injected", "point", "region")

    def __init__(self, region: CancelScope, point: int) -> None:
        super().__init__()
        self.region = region
        self.point = point
        self.count = 0
        self.injected = False

    def after_step(self, task: Task[Any], request: Any) -> None:
        if self.injected or task._done or not _inside(task, self.region):
            return
        if not (
            request is None
            or request is CHECKPOINT
            or (type(request) is tuple and request and request[0] in _CANCEL_POINTS)
        ):
            return
        if self.count < self.point:
            self.count += 1
            return
        self.injected = True
        self.region.cancel()
        # A task that is parked was woken with Cancelled by cancel(); one that
        # stopped at a checkpoint is ready again: make it raise there too.
        if (
            task._abort is None
            and task._next is not None
            and getattr(task._next, "__func__", None) is not Task._throw
        ):
            task._next = task._throw
            task._val = Cancelled()


def explore_cancellation(
    test: Callable[[CancelScope], Any],
    *,
    max_points: int = 10_000,
    max_steps: int = 100_000,
    clock: Callable[[], Clock] | None = None,
) -> ExploreResult:
    """Cancel a region of ``test`` at each of its await points in turn.

    ``test`` is an async function taking one argument, a
    :class:`~yieldloop.CancelScope` to enter around the code under test::

        async def test(region):
            account = Account(100)
            with region:
                await account.transfer_out(30)
            assert account.balance in (70, 100)   # all or nothing

    Run ``k`` cancels the region right after the ``k``-th time a task in it
    stops at a cancellation point (a checkpoint, a sleep, a wait), so the
    region's code sees :class:`~yieldloop.Cancelled` there. It stops when a
    run finishes without reaching its point (every point was tried) and
    raises :class:`ScheduleFailure` for the first run that fails; replay it
    with :func:`replay` and the failure's token.
    """
    _check_test(test)
    make_clock = _clock_factory(clock)
    for point in range(max_points):
        region = CancelScope()
        sched = _CancelInjector(region, point)
        exc = _run_once(functools.partial(test, region), sched, make_clock, max_steps)
        if exc is not None:
            token = f"{_CANCEL_PREFIX}{point}"
            err = ScheduleFailure(
                f"{type(exc).__name__} when the region was cancelled at its await point "
                f"{point} (counting from 0).\nReplay it with: "
                f"yieldloop.testing.replay(test, {token!r})",
                token=token,
                runs=point + 1,
                strategy="cancel",
                deviations=0,
            )
            err.__cause__ = exc
            raise err
        if not sched.injected:
            return ExploreResult(
                runs=point + 1, strategy="cancel", distinct_schedules=point + 1, complete=True
            )
    return ExploreResult(
        runs=max_points, strategy="cancel", distinct_schedules=max_points, complete=False
    )


# ------------------------------------------------------------ replay


def replay(
    test: Callable[..., Any],
    token: str,
    *,
    clock: Callable[[], Clock] | None = None,
    trace: list[str] | None = None,
    max_steps: int = 100_000,
) -> Any:
    """Run ``test`` once under the schedule ``token`` names (from a
    :class:`ScheduleFailure`) and return its result - or, as it failed
    before, raise its exception. Pass a list as ``trace`` to get one line
    per step naming the task that ran."""
    _check_test(test)
    make_clock = _clock_factory(clock)
    sched: RecordingScheduler
    if isinstance(token, str) and token.startswith(_CANCEL_PREFIX):
        try:
            point = int(token[len(_CANCEL_PREFIX) :])
        except ValueError:
            raise ValueError(f"not a valid replay token: {token!r}") from None
        region = CancelScope()
        sched = _CancelInjector(region, point)
        test = functools.partial(test, region)
    else:
        sched = ReplayScheduler(decode_token(token))
    if trace is not None:
        sched.trace = trace
    sched.max_steps = max_steps
    return run(test, clock=make_clock(), scheduler=sched)
