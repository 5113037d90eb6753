"""Helpers for testing yieldloop programs: virtual time, chosen schedules,
schedule exploration with replay, and a pytest plugin.

* :class:`VirtualClock` - ``run(main, clock=VirtualClock())``: time only
  moves when every task is blocked, straight to the next deadline, so sleeps
  and timeouts take no real time and happen in a reproducible order. If no
  task can ever be woken, the run raises :class:`Deadlock` naming every task
  and what it waits on.
* :class:`Scheduler` and its kinds - ``run(main, scheduler=...)`` picks who
  runs next: :class:`RandomScheduler` (seeded), :class:`PCTScheduler`,
  :class:`ReplayScheduler` (a recorded schedule).
* :func:`explore` runs a test under many schedules and reports the first
  failing one, shrunk, as a replay token; :func:`replay` runs it again.
  :func:`explore_cancellation` cancels the code under test at each of its
  await points in turn.
* The pytest plugin (loaded automatically once yieldloop is installed) runs
  tests marked ``@pytest.mark.yieldloop``; see :mod:`yieldloop.testing.pytest_plugin`.
"""

from __future__ import annotations

from .._kernel._clock import VirtualClock
from .._kernel._errors import Deadlock, TooManySteps
from .._kernel._scheduler import Scheduler
from ._explore import (
    ExploreResult,
    ScheduleFailure,
    explore,
    explore_cancellation,
    replay,
)
from ._schedulers import (
    PCTScheduler,
    RandomScheduler,
    RecordingScheduler,
    ReplayScheduler,
    decode_token,
    encode_token,
)

__all__ = [
    "Deadlock",
    "ExploreResult",
    "PCTScheduler",
    "RandomScheduler",
    "RecordingScheduler",
    "ReplayScheduler",
    "ScheduleFailure",
    "Scheduler",
    "TooManySteps",
    "VirtualClock",
    "decode_token",
    "encode_token",
    "explore",
    "explore_cancellation",
    "replay",
]
