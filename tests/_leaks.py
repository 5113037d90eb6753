"""Leak checks for tests: open file descriptors, threads and child processes.

``with no_leaks():`` takes a :class:`Snapshot` of what the process holds,
runs the block, then waits (up to ``settle`` seconds) for everything that
appeared meanwhile to go away, and raises :class:`AssertionError` naming each
fd (with what it points to), thread and child process still there.

Used around ``yieldloop.run(...)``, the kernel's own fds (its poller and its
wake-up socket pair) are gone by the time the block ends, so they do not
count. Inside a run, compare two snapshots with :func:`leaks_since`.

Linux only: fds are read from ``/proc/self/fd`` and children from
``/proc/<pid>/stat``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["Snapshot", "leaks_since", "no_leaks", "snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """What the process holds at one moment."""

    #: Open file descriptors: fd number -> what it points to
    #: (``"socket:[1234]"``, ``"pipe:[99]"``, a path...).
    fds: dict[int, str]
    #: Live threads.
    threads: frozenset[threading.Thread]
    #: Child processes (zombies included: not reaped is leaked): pid -> ``"name (state)"``.
    children: dict[int, str]


def _open_fds() -> dict[int, str]:
    fds: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:  # the fd listdir() itself used, closed by now
            continue
    return fds


def _children() -> dict[int, str]:
    me = os.getpid()
    found: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        head, _, tail = stat.rpartition(")")
        fields = tail.split()
        if len(fields) >= 2 and int(fields[1]) == me:
            comm = head.partition("(")[2]
            found[int(name)] = f"{comm} ({fields[0]})"
    return found


def snapshot() -> Snapshot:
    """Record the open fds, live threads and child processes of this process."""
    return Snapshot(
        fds=_open_fds(),
        threads=frozenset(t for t in threading.enumerate() if t.is_alive()),
        children=_children(),
    )


def leaks_since(before: Snapshot, after: Snapshot | None = None) -> list[str]:
    """What ``after`` (default: now) holds that ``before`` did not, one line
    per fd, thread or child process; empty if nothing leaked.

    An fd counts as new if its number was not open before *or* it now points
    to something else (a leaked socket that reused the number of a closed one).
    """
    if after is None:
        after = snapshot()
    problems: list[str] = []
    for fd, target in sorted(after.fds.items()):
        if before.fds.get(fd) != target:
            problems.append(f"fd {fd} -> {target}")
    for thread in sorted(after.threads - before.threads, key=lambda t: t.name):
        problems.append(f"thread {thread.name!r} (daemon={thread.daemon})")
    for pid, what in sorted(after.children.items()):
        if pid not in before.children:
            problems.append(f"child process {pid}: {what}")
    return problems


@contextmanager
def no_leaks(settle: float = 10.0) -> Iterator[Snapshot]:
    """Fail if the block leaves fds, threads or child processes behind.

    Things that are on their way out (a worker thread finishing, a child
    being reaped) get up to ``settle`` seconds to go; whatever is still
    there then is reported in the :class:`AssertionError`. Yields the
    snapshot taken before the block.
    """
    if not settle >= 0:
        raise ValueError(f"settle must be a number of seconds >= 0, got {settle!r}")
    before = snapshot()
    yield before
    deadline = time.monotonic() + settle
    while True:
        problems = leaks_since(before)
        if not problems or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    if problems:
        raise AssertionError(
            f"leaked {len(problems)} resource(s) (still there after {settle:g} s):\n  "
            + "\n  ".join(problems)
        )
