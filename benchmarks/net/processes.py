"""Child processes of a run - servers, wrk, echo clients - and how they end.

Every child is started through a :class:`Processes` in a session of its
own (so a Ctrl-C in the terminal reaches only the parent, which then stops
the children in order) and is stopped by :meth:`Processes.stop`: SIGINT
first (a server writes its profile and exits), SIGKILL to its whole process
group if it is still there after the grace period. :meth:`Processes.close`
stops whatever is left; the command line calls it in a ``finally``, so no
server outlives the run, whether it ends normally, on an error or on
Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

__all__ = [
    "ROOT",
    "Processes",
    "machine_busy_seconds",
    "pinned",
    "process_cpu_seconds",
    "process_cpu_times",
    "read_line",
]

#: The folder that holds the ``benchmarks`` package; children run from here.
ROOT = Path(__file__).resolve().parents[2]

_PIN_AND_EXEC = (
    "import os, sys; "
    "os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(',')}); "
    "os.execvp(sys.argv[2], sys.argv[2:])"
)


def pinned(cmd: Sequence[str], cpus: Sequence[int] | None) -> list[str]:
    """``cmd`` run on ``cpus`` only (the affinity is set, then ``cmd`` is
    exec'd in the same process, so it and its threads inherit it)."""
    if not cpus:
        return list(cmd)
    return [sys.executable, "-c", _PIN_AND_EXEC, ",".join(map(str, cpus)), *cmd]


def process_cpu_times(pid: int) -> tuple[float, float] | None:
    """``(user, system)`` CPU seconds of process ``pid`` and all its threads
    so far, from ``/proc`` (None where that is not available)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 of proc(5): utime is field 14, stime 15.
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (see
    :func:`process_cpu_times`)."""
    times = process_cpu_times(pid)
    return None if times is None else times[0] + times[1]


def machine_busy_seconds() -> float | None:
    """CPU time all CPUs of the machine have been busy so far (every
    process, the kernel's interrupt work included), from ``/proc/stat``;
    None where that is not available."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            first = f.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice]:
    # guest time is already part of user time.
    ticks = [int(x) for x in first[1:9]]
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]
    return busy / os.sysconf("SC_CLK_TCK")


def read_line(stream: IO[bytes], deadline: float) -> bytes:
    """One line from a child's stdout pipe, waiting until ``deadline``
    (``time.monotonic()``); TimeoutError if none came, ``b""`` at EOF."""
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no line from the child process in time")
            if sel.select(left):
                return stream.readline()


class Processes:
    """The live children of a run; see the module docstring."""

    def __init__(self) -> None:
        self._live: list[subprocess.Popen[Any]] = []

    def start(self, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` (from the project root, in a new session) and track it."""
        proc: subprocess.Popen[Any] = subprocess.Popen(
            list(cmd), cwd=ROOT, start_new_session=True, **kwargs
        )
        self._live.append(proc)
        return proc

    def live(self) -> list[subprocess.Popen[Any]]:
        """The children that have not been stopped yet."""
        return list(self._live)

    def stop(self, proc: subprocess.Popen[Any], grace: float = 5.0) -> int:
        """Stop ``proc``: SIGINT, then after ``grace`` seconds SIGKILL to its
        process group. Returns its exit status (negative: killed by that
        signal). Its pipes are closed."""
        try:
            if proc.poll() is None:
                self._signal(proc, signal.SIGINT)
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    pass
            # Whatever is left of its group (the leader, or helpers it started).
            self._signal(proc, signal.SIGKILL)
            return proc.wait()
        finally:
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    try:
                        pipe.close()
                    except OSError:
                        pass
            if proc in self._live:
                self._live.remove(proc)

    @staticmethod
    def _signal(proc: subprocess.Popen[Any], sig: int) -> None:
        # The child leads its own session, so its pid is its process group.
        # Only signal while the leader is not reaped: after that the number
        # may belong to someone else. (No child here forks helpers that
        # would outlive it: servers use threads, the pin wrapper execs.)
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self, grace: float = 2.0) -> None:
        """Stop every child still running (SIGINT, then SIGKILL)."""
        while self._live:
            self.stop(self._live[-1], grace)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
