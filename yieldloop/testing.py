"""Helpers for testing yieldloop programs.

* :class:`VirtualClock` - pass it as ``run(main, clock=VirtualClock())``:
  time only moves when every task is blocked, straight to the next deadline,
  so sleeps and timeouts take no real time and happen in a reproducible order.
"""

from __future__ import annotations

from ._kernel._clock import VirtualClock

__all__ = ["VirtualClock"]
