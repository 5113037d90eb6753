"""Schedulers for tests: random, PCT, and replay of a recorded schedule.

Layer 5. A :class:`~yieldloop.testing.Scheduler` is asked before every step
which ready task runs next (:meth:`Kernel._loop_slow`). The ones here
all *record* what they chose: ``decisions`` holds the index picked at every
step where more than one task was ready (a *decision point*; steps with one
ready task are not choices). That list, with the run's virtual clock, fixes
the whole interleaving, so it is the schedule: :func:`encode_token` turns it
into a short replay token, and :class:`ReplayScheduler` plays it back.
"""

from __future__ import annotations

import array
import base64
import itertools
import random
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from .._kernel._scheduler import Scheduler
from .._kernel._task import Task

__all__ = [
    "PCTScheduler",
    "RandomScheduler",
    "RecordingScheduler",
    "ReplayScheduler",
    "decode_token",
    "encode_token",
]

_TOKEN_PREFIX = "yl1:"
_ZIPPED_PREFIX = "yl1z:"


class RecordingScheduler(Scheduler):
    """Base of the test schedulers: records every decision, and (with
    ``trace=True``) a line per step naming the task that ran.

    Tasks are named in the trace as ``"<n>:<name>"`` where ``n`` counts
    tasks in the order the scheduler first saw them ready: the same for
    every run that makes the same choices, so two traces can be compared
    byte for byte.
    """

    __slots__ = ("_ids", "decisions", "max_steps", "steps", "trace")

    def __init__(self, *, trace: bool = False, max_steps: int | None = None) -> None:
        #: The index chosen at each decision point (more than one task ready).
        self.decisions: list[int] = []
        #: Steps run so far.
        self.steps = 0
        #: One entry per step when tracing, else None.
        self.trace: list[str] | None = [] if trace else None
        if max_steps is not None and (
            isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
        ):
            raise ValueError(f"max_steps must be None or an int >= 1, got {max_steps!r}")
        #: Longest run allowed, in steps (see :class:`Scheduler`).
        self.max_steps = max_steps
        self._ids: dict[Task[Any], int] = {}

    def pick(self, ready: Sequence[Task[Any]]) -> int:
        """Choose among ``len(ready) >= 2`` tasks (override this, not :meth:`choose`)."""
        return 0

    def choose(self, ready: Sequence[Task[Any]]) -> int:
        """Record and return the choice for this step."""
        self.steps += 1
        if len(ready) == 1:
            i = 0
        else:
            i = self.pick(ready)
            self.decisions.append(i)
        trace = self.trace
        if trace is not None:
            trace.append(self.label(ready[i]))
        return i

    def label(self, task: Task[Any]) -> str:
        """``"<n>:<name>"``: a name for ``task`` that is stable across runs."""
        ids = self._ids
        n = ids.get(task)
        if n is None:
            n = ids[task] = len(ids)
        return f"{n}:{task.name}"

    def token(self) -> str:
        """The replay token of the schedule recorded so far."""
        return encode_token(self.decisions)


class RandomScheduler(RecordingScheduler):
    """Pick uniformly at random among the ready tasks, from ``seed``: the
    same seed gives the same interleaving (on a :class:`VirtualClock`, with
    no real I/O or threads deciding the order). ``steps`` is not counted."""

    __slots__ = ("_next", "_record", "seed")

    def __init__(self, seed: int, *, trace: bool = False, max_steps: int | None = None) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"RandomScheduler needs an int seed, got {seed!r}")
        super().__init__(trace=trace, max_steps=max_steps)
        self.seed = seed
        # Random 32-bit numbers, made in blocks: drawing one is a single C
        # call, which matters at one draw per step.
        self._next = itertools.chain.from_iterable(_random_blocks(seed)).__next__
        self._record = self.decisions.append
        if trace:
            self.__class__ = _TracedRandomScheduler

    def pick(self, ready: Sequence[Task[Any]]) -> int:
        """A uniformly random index (modulo bias below ``len(ready) / 2**32``)."""
        return self._next() % len(ready)

    def choose(self, ready: Sequence[Task[Any]]) -> int:
        """Record and return a random choice (the base's logic, made lean:
        it runs before every step; with ``trace=True`` the instance is a
        :class:`_TracedRandomScheduler`, which also traces)."""
        n = len(ready)
        if n == 1:
            return 0
        i = self._next() % n
        self._record(i)
        return i

    def __repr__(self) -> str:
        return f"RandomScheduler({self.seed!r})"


class _TracedRandomScheduler(RandomScheduler):
    """A :class:`RandomScheduler` made with ``trace=True``."""

    __slots__ = ()

    def choose(self, ready: Sequence[Task[Any]]) -> int:
        """Record, trace and return a random choice."""
        i = RandomScheduler.choose(self, ready)
        assert self.trace is not None
        self.trace.append(self.label(ready[i]))
        return i


class PCTScheduler(RecordingScheduler):
    """Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010).

    Every task gets a random priority when first seen; the ready task with
    the highest priority always runs. At ``depth - 1`` steps chosen at random
    among the first ``steps`` (an estimate of the run's length), the task
    running is demoted below every initial priority. A bug that needs ``d``
    ordering constraints is found by one run with probability at least
    ``1 / (n * steps**(d-1))`` for ``n`` tasks - far better than uniform
    random choices for bugs that need one task to run a long stretch alone.

    A task that stays highest for ``starve_after`` steps in a row while
    others are ready (a loop of checkpoints waiting for the others) is
    demoted too, so such programs still finish.
    """

    __slots__ = (
        "_change_points",
        "_last",
        "_low",
        "_prio",
        "_random",
        "_streak",
        "depth",
        "seed",
        "starve_after",
    )

    def __init__(
        self,
        seed: int,
        *,
        depth: int = 3,
        steps: int = 1000,
        starve_after: int = 1000,
        trace: bool = False,
        max_steps: int | None = None,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"PCTScheduler needs an int seed, got {seed!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an int >= 1, got {depth!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        super().__init__(trace=trace, max_steps=max_steps)
        self.seed = seed
        self.depth = depth
        self.starve_after = starve_after
        rng = random.Random(seed)
        self._random = rng.random
        self._change_points = set(rng.sample(range(1, steps + 1), min(depth - 1, steps)))
        self._prio: dict[Task[Any], float] = {}
        self._low = 0.0  # demoted priorities go below every initial one (all > 1)
        self._last: Task[Any] | None = None
        self._streak = 0

    def pick(self, ready: Sequence[Task[Any]]) -> int:
        """The index of the ready task with the highest priority."""
        prio = self._prio
        key = prio.__getitem__
        try:
            chosen = max(ready, key=key)
        except KeyError:  # a task seen for the first time: give it a priority
            for task in ready:
                if task not in prio:
                    prio[task] = 1.0 + self._random()
            chosen = max(ready, key=key)
        if chosen is self._last:
            self._streak += 1
            if self._streak >= self.starve_after:
                self._demote(chosen)
                return self.pick(ready)
        else:
            self._last = chosen
            self._streak = 0
        return ready.index(chosen)

    def _demote(self, task: Task[Any]) -> None:
        self._low -= 1.0
        self._prio[task] = self._low
        self._last = None
        self._streak = 0

    def choose(self, ready: Sequence[Task[Any]]) -> int:
        """Record and return the choice; demote the running task at a
        change point."""
        i = super().choose(ready)
        if self.steps in self._change_points:
            self._demote(ready[i])
        return i

    def __repr__(self) -> str:
        return f"PCTScheduler({self.seed!r}, depth={self.depth!r})"


class ReplayScheduler(RecordingScheduler):
    """Play back a schedule: the ``k``-th decision point takes the ``k``-th
    recorded index (clamped to the tasks that are ready); past the end of
    the record, or where it holds nothing, FIFO (index 0)."""

    __slots__ = ("_script",)

    def __init__(
        self,
        schedule: str | Sequence[int],
        *,
        trace: bool = False,
        max_steps: int | None = None,
    ) -> None:
        super().__init__(trace=trace, max_steps=max_steps)
        self._script = decode_token(schedule) if isinstance(schedule, str) else list(schedule)

    def pick(self, ready: Sequence[Task[Any]]) -> int:
        """The recorded index for this decision point."""
        k = len(self.decisions)
        script = self._script
        if k < len(script):
            return min(script[k], len(ready) - 1)
        return 0

    def __repr__(self) -> str:
        return f"ReplayScheduler({encode_token(self._script)!r})"


def _random_blocks(seed: int) -> Iterator[array.array[int]]:
    rng = random.Random(seed)
    while True:
        yield array.array("I", rng.randbytes(4 * 4096))


def encode_token(decisions: Sequence[int]) -> str:
    """A compact text for a schedule: only the decision points that did not
    take the FIFO choice, as ``skip=index`` pairs, where ``skip`` counts the
    FIFO decisions before it (``"yl1:4=1,0=2"``: decisions 4 and 5 took
    the second and third ready task); long ones are zipped (``"yl1z:..."``)."""
    parts: list[str] = []
    skip = 0
    for v in decisions:
        if v:
            parts.append(f"{skip}={v}")
            skip = 0
        else:
            skip += 1
    plain = ",".join(parts)
    if len(plain) > 120:
        packed = base64.urlsafe_b64encode(zlib.compress(plain.encode(), 9)).decode()
        if len(packed) < len(plain):
            return _ZIPPED_PREFIX + packed
    return _TOKEN_PREFIX + plain


def decode_token(token: str) -> list[int]:
    """The decisions a token stands for (see :func:`encode_token`)."""
    if not isinstance(token, str):
        raise TypeError(f"a replay token is a str, got {token!r}")
    token = token.strip()
    if token.startswith(_ZIPPED_PREFIX):
        try:
            body = zlib.decompress(base64.urlsafe_b64decode(token[len(_ZIPPED_PREFIX) :])).decode()
        except (ValueError, zlib.error) as exc:
            raise ValueError(f"not a valid replay token: {token!r}") from exc
    elif token.startswith(_TOKEN_PREFIX):
        body = token[len(_TOKEN_PREFIX) :]
    else:
        raise ValueError(f"not a replay token (they start with {_TOKEN_PREFIX!r}): {token!r}")
    out: list[int] = []
    if not body:
        return out
    for part in body.split(","):
        skip_s, sep, val_s = part.partition("=")
        try:
            skip, val = int(skip_s), int(val_s)
        except ValueError:
            raise ValueError(f"not a valid replay token: {token!r} (at {part!r})") from None
        if not sep or skip < 0 or val < 1:
            raise ValueError(f"not a valid replay token: {token!r} (at {part!r})")
        out.extend([0] * skip)
        out.append(val)
    return out
