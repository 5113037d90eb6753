"""``ps`` and ``pstree``: ask a running yieldloop program what its tasks do.

Layer 5 (tools), the client side of ``yieldloop/_kernel/_monitor.py``. The
program must run with a :class:`~yieldloop._kernel._monitor.Monitor`
installed; :func:`query` connects to its Unix socket, sends ``ps`` or
``pstree`` and returns the JSON snapshot; :func:`ps_main` prints it as a
table (one line per task: id, the task whose group it is in, state, name,
what it waits on) or as an indented tree of tasks by group, optionally with
each task's stack.

Command-line use (once wired into ``python -m yieldloop``): :func:`add_arguments`
and :func:`main` / :func:`main_tree` have the shape of a command module.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from typing import Any, TextIO

from .._kernel._monitor import build_tree, monitor_dirs, socket_paths

__all__ = [
    "NoMonitorError",
    "add_arguments",
    "format_ps",
    "format_tree",
    "main",
    "main_tree",
    "ps_main",
    "query",
]

#: Seconds to wait for a monitor's answer.
DEFAULT_TIMEOUT = 10.0
_MAX_REPLY = 1 << 30


class NoMonitorError(RuntimeError):
    """No monitor answers for that process (no socket, or nobody behind it)."""


def _check_pid(pid: int) -> int:
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, got {pid!r}")
    if pid <= 0:
        raise ValueError(f"pid must be a positive process id, got {pid}")
    return pid


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, it is someone else's
        return True
    return True


def _ask(path: str, command: str, timeout: float) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_REPLY:
                raise ValueError(f"the monitor at {path} sent more than {_MAX_REPLY} bytes")
    data = b"".join(chunks)
    if not data:
        raise ConnectionError(f"the monitor at {path} closed the connection without answering")
    reply = json.loads(data)
    if not isinstance(reply, dict):
        raise ValueError(f"the monitor at {path} sent {type(reply).__name__}, not an object")
    return reply


def query(pid: int, command: str = "ps", timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
    """Send ``command`` (``"ps"`` or ``"pstree"``) to every monitor of
    process ``pid`` (usually one; one per run that has a monitor) and
    return their JSON answers.

    Raises :class:`NoMonitorError` (with the reason in words) if the
    process does not exist, has no monitor socket, or nothing answers on
    it; ``RuntimeError`` if a monitor answers with an error.
    """
    _check_pid(pid)
    if command not in ("ps", "pstree"):
        raise ValueError(f"command must be 'ps' or 'pstree', got {command!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    paths = socket_paths(pid)
    if not paths:
        if not _process_exists(pid):
            raise NoMonitorError(f"no process with pid {pid}")
        where = ", ".join(monitor_dirs())
        raise NoMonitorError(
            f"no yieldloop monitor runs in process {pid} (no socket {pid}.sock in {where}); "
            "run the program with a monitor (yieldloop.run(main, monitor=True))"
        )
    replies: list[dict[str, Any]] = []
    problems: list[str] = []
    for path in paths:
        try:
            reply = _ask(path, command, timeout)
        except (ConnectionRefusedError, FileNotFoundError):
            problems.append(f"{path}: nothing answers (a leftover of a run that ended)")
            continue
        except TimeoutError:
            problems.append(f"{path}: no answer within {timeout:g} s")
            continue
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        if "error" in reply:
            raise RuntimeError(f"the monitor of process {pid} answered: {reply['error']}")
        replies.append(reply)
    if not replies:
        raise NoMonitorError(
            f"no yieldloop monitor answers for process {pid}: " + "; ".join(problems)
        )
    return replies


# ================================================================ text


def _loop_line(snap: dict[str, Any], ntasks: int) -> str:
    loop = snap.get("loop") or {}
    state = loop.get("state")
    if state == "running":
        what = f"running task {loop.get('task')} (a step is in progress)"
    elif state == "idle":
        what = "idle, waiting for I/O, timers or threads"
    elif state == "finished":
        what = "finished"
    else:
        what = "scheduling"
    t = snap.get("time")
    clock = f", clock {t:.3f}" if isinstance(t, (int, float)) else ""
    plural = "s" if ntasks != 1 else ""
    return f"process {snap.get('pid')}: {ntasks} task{plural}; loop {what}{clock}"


def _wait_text(task: dict[str, Any]) -> str:
    text = str(task.get("wait", ""))
    deadline = task.get("deadline")
    if deadline:
        text += f" (deadline in {deadline['in']:.3g} s)"
    if task.get("cancelled"):
        text += " (cancelled)"
    return text


def _stack_lines(task: dict[str, Any], indent: str) -> list[str]:
    return [
        f"{indent}{frame['file']}:{frame['line']} in {frame['function']}"
        for frame in task.get("stack") or []
    ]


def format_ps(snap: dict[str, Any], stacks: bool = False) -> str:
    """A ``ps`` snapshot as a table: one line per task (PARENT: the task
    whose group it is in); with ``stacks``, each task's frames below it
    (outermost first)."""
    tasks: list[dict[str, Any]] = snap.get("tasks") or []
    lines = [_loop_line(snap, len(tasks))]
    id_w = max([2, *(len(str(t["id"])) for t in tasks)])
    name_w = min(40, max([4, *(len(str(t["name"])) for t in tasks)]))
    lines.append(f"{'ID':>{id_w}} {'PARENT':>{id_w + 4}}  {'STATE':<8}  {'NAME':<{name_w}}  WAIT")
    for t in tasks:
        name = str(t["name"])
        if len(name) > name_w:
            name = name[: name_w - 3] + "..."
        parent = t.get("parent")
        group = f"{parent}" if parent is not None else "-"
        lines.append(
            f"{t['id']:>{id_w}} {group:>{id_w + 4}}  {t['state']:<8}  {name:<{name_w}}  "
            f"{_wait_text(t)}"
        )
        if stacks:
            lines += _stack_lines(t, " " * (id_w + 4))
    return "\n".join(lines)


def _count(nodes: list[dict[str, Any]]) -> int:
    n = 0
    stack = list(nodes)
    while stack:
        node = stack.pop()
        n += 1
        for g in node.get("groups") or []:
            stack.extend(g["tasks"])
    return n


def format_tree(snap: dict[str, Any], stacks: bool = True) -> str:
    """A snapshot as a tree: each task, then (indented) each of its groups
    and the tasks in it. Takes a ``pstree`` answer (``"tree"``) or a ``ps``
    one (``"tasks"``, nested here)."""
    roots = snap.get("tree")
    if roots is None:
        roots = build_tree(snap.get("tasks") or [])
    lines = [_loop_line(snap, _count(roots))]

    def walk(node: dict[str, Any], indent: str) -> None:
        lines.append(f"{indent}[{node['id']}] {node['name']}: {_wait_text(node)}")
        if stacks:
            lines.extend(_stack_lines(node, indent + "      "))
        for group in node.get("groups") or []:
            kind = group["kind"]
            label = "TaskGroup" if kind == "TaskGroup" else f"{kind} tasks"
            lines.append(f"{indent}  {label} ({len(group['tasks'])}):")
            for child in group["tasks"]:
                walk(child, indent + "    ")

    for root in roots:
        walk(root, "")
    return "\n".join(lines)


# ================================================================ main


def ps_main(
    pid: int,
    tree: bool = False,
    json_out: bool = False,
    stacks: bool | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print what the tasks of process ``pid`` are doing; return the exit
    status (0, or 1 with a message on ``err`` if no monitor answers).

    ``tree`` prints the ``pstree`` view (tasks indented under their group's
    task), else the ``ps`` table. ``json_out`` prints the monitor's JSON
    as it is. ``stacks`` shows each task's stack (default: in the tree
    only). ``out``/``err`` default to ``sys.stdout``/``sys.stderr``.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    _check_pid(pid)
    if stacks is None:
        stacks = tree
    try:
        replies = query(pid, "pstree" if tree else "ps", timeout=timeout)
    except (NoMonitorError, RuntimeError) as exc:
        print(f"yieldloop {'pstree' if tree else 'ps'}: {exc}", file=err)
        return 1
    for i, snap in enumerate(replies):
        if i:
            print(file=out)
        if json_out:
            print(json.dumps(snap, indent=2), file=out)
        elif tree:
            print(format_tree(snap, stacks=stacks), file=out)
        else:
            print(format_ps(snap, stacks=stacks), file=out)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ps`` and ``pstree``: a pid, ``--json``, ``--stacks``."""
    parser.add_argument("pid", type=int, help="the process id of the yieldloop program")
    parser.add_argument("--json", action="store_true", help="print the monitor's JSON as it is")
    parser.add_argument(
        "--stacks",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show each task's stack (default: in pstree only)",
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for an answer"
    )


def main(args: argparse.Namespace) -> int:
    """``ps PID``: the task table."""
    return ps_main(args.pid, tree=False, json_out=args.json, stacks=args.stacks,
                   timeout=args.timeout)


def main_tree(args: argparse.Namespace) -> int:
    """``pstree PID``: the task tree."""
    return ps_main(args.pid, tree=True, json_out=args.json, stacks=args.stacks,
                   timeout=args.timeout)
