"""The live task monitor: what every task of a running program is doing, on
request, from outside the process (``python -m yieldloop ps PID``).

Layer 1 (an :class:`Instrument`, only kernel concepts). A :class:`Monitor`
serves a Unix socket from a daemon thread of its own, so it answers while the
loop thread waits for I/O *and* while it is stuck in a step that blocks (a
``time.sleep`` in a task, a long computation). A client connects, sends one
line - ``ps`` or ``pstree`` - and reads one JSON document back; the
connection is then closed.

Where the socket lives: ``<dir>/<pid>.sock`` (a second monitor in the same
process gets ``<pid>-2.sock``, and so on), where ``<dir>`` is the first of
:func:`monitor_dirs`: ``$YIELDLOOP_MONITOR_DIR`` if set, else
``$XDG_RUNTIME_DIR/yieldloop`` if that variable is set, else
``<tempdir>/yieldloop-<uid>``. The directory is made with mode 0700 (and
refused if another user owns it or others can write to it), the socket file
has mode 0600, it is removed when the run finishes, and sockets left behind
by processes that no longer exist are removed when a monitor starts.

The snapshot (``ps``) is a JSON object::

    {"version": 1, "pid": 1234, "time": 12.5,          # the run's clock
     "loop": {"state": "running" | "idle" | "scheduling",
              "task": 7 | null,                          # id of the running task
              "thread": "MainThread"},
     "tasks": [{"id": 7, "name": "handler for ...",
                "state": "running" | "ready" | "waiting" | "sleeping",
                "wait": "waiting for fd 9 to be readable",   # describe_wait()
                "fd": 9,                                     # only for fd waits
                "deadline": {"at": 42.0, "in": 29.5} | null, # nearest enclosing
                "cancelled": false,                          # a cancel is pending
                "parent": 3 | null,                          # the group's task
                "group": {"id": 2, "kind": "TaskGroup"},
                "stack": [{"file": "...", "line": 12, "function": "handler"}]},
               ...]}

``stack`` lists the frames of the task's await chain, outermost first: for a
waiting task, its coroutine and every coroutine or generator it awaits; for
the running task, the loop thread's real frames from the task's coroutine
down (so a blocking call shows the line it is blocked on). ``deadline`` is
the earliest finite deadline among the cancel scopes around the task (up to
the first shielded one), ``in`` seconds from ``time``. ``group.kind`` is
``"TaskGroup"``, ``"starting"`` (inside ``TaskGroup.start`` until
``started()``), ``"run"`` (``main`` and tasks spawned beside it) or
``"system"``. ``pstree`` returns the same object with a ``"tree"`` in
place of ``"tasks"``: the tasks nested under their group's task (see
:func:`build_tree`). An unknown command gets ``{"version": 1, "error": "..."}``.

How the snapshot stays safe across threads: the loop thread keeps a registry
of live tasks (``task_spawned`` / ``task_exited`` hooks) under a lock it
holds for one dict operation; the server thread copies the registry under
that lock, then reads each task without it, defensively (a task read while
it changes is read again, and any error only marks that task as
``"unknown"``). A snapshot may be a few steps stale; it never disturbs the
run. The monitor hooks no step, so its cost while nobody asks is one dict
insert and delete per task.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import logging
import math
import os
import re
import select
import selectors
import socket
import stat
import sys
import tempfile
import threading
import types
from typing import TYPE_CHECKING, Any

from ._instruments import Instrument
from ._state import running_kernel

if TYPE_CHECKING:
    from ._kernel import Kernel
    from ._scope import CancelScope
    from ._task import Task

__all__ = [
    "ENV_DIR",
    "Monitor",
    "PROTOCOL_VERSION",
    "build_tree",
    "monitor_dir",
    "monitor_dirs",
    "socket_paths",
]

logger = logging.getLogger("yieldloop")

#: The version of the JSON snapshot (the ``"version"`` field).
PROTOCOL_VERSION = 1

#: Environment variable: the directory for monitor sockets (overrides the default).
ENV_DIR = "YIELDLOOP_MONITOR_DIR"

#: The commands a monitor answers (one line each).
COMMANDS = ("ps", "pstree")

# A client gets this long to send its command, and to read the answer.
_CLIENT_TIMEOUT = 5.0
_MAX_COMMAND = 1024
_MAX_DEPTH = 256  # frames walked per task, at most
_SOCK_NAME = re.compile(r"^(\d+)(?:-(\d+))?\.sock$")
_AF_UNIX_MAX = 107  # sun_path holds 108 bytes, with the terminating NUL

# Socket paths served by monitors of this process.
_active_paths: set[str] = set()
_active_lock = threading.Lock()


# ================================================================ where


def monitor_dirs() -> list[str]:
    """The directories where monitor sockets may be, in the order a new
    monitor picks them: ``$YIELDLOOP_MONITOR_DIR``, ``$XDG_RUNTIME_DIR/yieldloop``,
    ``<tempdir>/yieldloop-<uid>`` (only those whose variable is set)."""
    dirs: list[str] = []
    override = os.environ.get(ENV_DIR)
    if override:
        dirs.append(os.path.abspath(override))
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        dirs.append(os.path.join(os.path.abspath(runtime), "yieldloop"))
    dirs.append(os.path.join(tempfile.gettempdir(), f"yieldloop-{os.getuid()}"))
    return dirs


def monitor_dir() -> str:
    """The directory a new :class:`Monitor` puts its socket in (the first of
    :func:`monitor_dirs`)."""
    return monitor_dirs()[0]


def socket_paths(pid: int) -> list[str]:
    """The monitor sockets of process ``pid`` that exist now, in every
    directory of :func:`monitor_dirs` (usually one: ``<dir>/<pid>.sock``)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ValueError(f"pid must be a positive int, got {pid!r}")
    found: list[str] = []
    seen: set[str] = set()
    for directory in monitor_dirs():
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        matches: list[tuple[int, str]] = []
        for name in names:
            m = _SOCK_NAME.match(name)
            if m is not None and int(m.group(1)) == pid:
                matches.append((int(m.group(2) or 1), name))
        for _, name in sorted(matches):
            path = os.path.join(directory, name)
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                found.append(path)
    return found


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    except OSError:
        return True
    return True


def _prepare_dir(directory: str) -> None:
    """Make ``directory`` (mode 0700) if needed, and check it is ours and
    nobody else can write to it."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(directory, 0o700, exist_ok=True)
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeError(f"monitor directory {directory!r} is not a directory")
    if st.st_uid != os.getuid():
        raise RuntimeError(
            f"monitor directory {directory!r} belongs to uid {st.st_uid}, not to this "
            f"user (uid {os.getuid()}); remove it or set ${ENV_DIR}"
        )
    if st.st_mode & 0o022:
        raise RuntimeError(
            f"monitor directory {directory!r} is writable by others "
            f"(mode {stat.S_IMODE(st.st_mode):o}); make it 0700 or set ${ENV_DIR}"
        )


def _clean_stale(directory: str) -> None:
    """Remove the sockets of processes that no longer exist (and leftovers
    of this process that no monitor serves)."""
    me = os.getpid()
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        m = _SOCK_NAME.match(name)
        if m is None:
            continue
        pid = int(m.group(1))
        path = os.path.join(directory, name)
        if pid == me:
            with _active_lock:
                stale = path not in _active_paths
        else:
            stale = not _pid_alive(pid)
        if stale:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _claim_path(directory: str) -> str:
    pid = os.getpid()
    with _active_lock:
        for n in itertools.count(1):
            name = f"{pid}.sock" if n == 1 else f"{pid}-{n}.sock"
            path = os.path.join(directory, name)
            if path not in _active_paths:
                _active_paths.add(path)
                return path
    raise AssertionError("unreachable")  # pragma: no cover


def _release_path(path: str) -> None:
    with _active_lock:
        _active_paths.discard(path)


# ================================================================ snapshot


def _frame_entry(frame: types.FrameType) -> dict[str, Any]:
    code = frame.f_code
    line = frame.f_lineno
    return {
        "file": code.co_filename,
        "line": line if line is not None else code.co_firstlineno,
        "function": getattr(code, "co_qualname", code.co_name),
    }


_WRAPPERS = ("coroutine_wrapper", "async_generator_asend", "async_generator_athrow")


def _await_chain(coro: Any) -> list[types.FrameType]:
    """The frames of ``coro`` and of what it awaits, outermost first."""
    frames: list[types.FrameType] = []
    obj = coro
    for _ in range(_MAX_DEPTH):
        if isinstance(obj, types.CoroutineType):
            frame, nxt = obj.cr_frame, obj.cr_await
        elif isinstance(obj, types.GeneratorType):
            frame, nxt = obj.gi_frame, obj.gi_yieldfrom
        elif isinstance(obj, types.AsyncGeneratorType):
            frame, nxt = obj.ag_frame, obj.ag_await
        elif type(obj).__name__ in _WRAPPERS:
            # ``x.__await__()`` of a coroutine (or an async generator's
            # ``__anext__()``): the object it wraps is its only referent.
            obj = next(
                (
                    r
                    for r in gc.get_referents(obj)
                    if isinstance(
                        r, (types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType)
                    )
                ),
                None,
            )
            continue
        else:
            break
        if frame is None:
            break
        frames.append(frame)
        if nxt is None:
            break
        obj = nxt
    return frames


def _own_frame(coro: Any) -> types.FrameType | None:
    return getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)


def _thread_frames(ident: int | None) -> list[types.FrameType]:
    """The frames of thread ``ident`` now, outermost first."""
    if ident is None:
        return []
    frame = sys._current_frames().get(ident)
    chain: list[types.FrameType] = []
    while frame is not None and len(chain) < 4 * _MAX_DEPTH:
        chain.append(frame)
        frame = frame.f_back
    chain.reverse()
    return chain


def _running_stack(task: Task[Any], loop_frames: list[types.FrameType]) -> list[types.FrameType]:
    """The running task's frames, from the loop thread's real stack: from its
    coroutine's frame down to the innermost (a blocking call's caller)."""
    top = _own_frame(task._coro)
    if top is not None:
        for i, frame in enumerate(loop_frames):
            if frame is top:
                return loop_frames[i:]
    return _await_chain(task._coro)  # the step ended meanwhile


def _deadline(task: Task[Any]) -> float:
    """The earliest finite deadline of the scopes around ``task``, up to the
    first shielded scope (outer deadlines cannot reach inside it)."""
    best = math.inf
    scope: CancelScope | None = task._scope
    for _ in range(10_000):
        if scope is None:
            break
        best = min(best, scope._deadline)
        if scope._shield:
            break
        scope = scope._parent
    return best


def _state_of(wait: str) -> str:
    if wait == "running":
        return "running"
    if wait == "ready to run":
        return "ready"
    if wait.startswith("sleeping"):
        return "sleeping"
    return "waiting"


_OWNER_KINDS = {"TaskGroup": "TaskGroup", "_Gather": "TaskGroup", "TaskStatus": "starting",
                "_RunOwner": "run", "_SystemOwner": "system"}


def _owner_info(owner: Any) -> tuple[Any, Task[Any] | None, str]:
    """(group object, its task, kind) for a task's owner (duck-typed: the
    group classes live in higher layers)."""
    kind = _OWNER_KINDS.get(type(owner).__name__, type(owner).__name__)
    parent = getattr(owner, "_parent_task", None)
    if parent is None:
        parent = getattr(owner, "_caller", None)  # TaskStatus: the task calling start()
    return owner, parent, kind


def _task_info(
    kernel: Kernel,
    task: Task[Any],
    tid: int,
    now: float,
    describe: Any,
    loop_frames: list[types.FrameType],
    groups: dict[int, int],
    ids: dict[Task[Any], int],
) -> dict[str, Any] | None:
    """One task's entry of the snapshot (None if it has finished). Read from
    another thread than the loop's: retried if the task changes under us."""
    last: Exception | None = None
    for _ in range(3):
        try:
            if task._next is None:
                return None
            wait = describe(kernel, task)
            if wait == "finished":
                return None
            state = _state_of(wait)
            info: dict[str, Any] = {"id": tid, "name": task.name, "state": state, "wait": wait}
            if wait.startswith("waiting for fd "):
                info["fd"] = int(wait.split()[3])
            deadline = _deadline(task)
            info["deadline"] = (
                None if deadline == math.inf else {"at": deadline, "in": deadline - now}
            )
            info["cancelled"] = bool(task._scope._eff)
            owner, parent, kind = _owner_info(task._owner)
            gid = groups.setdefault(id(owner), len(groups) + 1)
            info["parent"] = ids.get(parent) if parent is not None else None
            info["group"] = {"id": gid, "kind": kind}
            if state == "running":
                frames = _running_stack(task, loop_frames)
            else:
                frames = _await_chain(task._coro)
            info["stack"] = [_frame_entry(f) for f in frames]
            return info
        except Exception as exc:  # the task moved on while we read it
            last = exc
    try:
        name = task.name
    except Exception:
        name = "?"
    return {
        "id": tid, "name": name, "state": "unknown",
        "wait": f"(could not be read: {type(last).__name__}: {last})",
        "deadline": None, "cancelled": False, "parent": None,
        "group": {"id": 0, "kind": "unknown"}, "stack": [],
    }


def build_tree(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nest the flat task list of a snapshot: each node is a task's entry
    plus ``"groups"``: ``[{"id", "kind", "tasks": [nodes]}]``, the groups
    whose task it is, in order. Tasks whose group has no task in the list
    (``main``, system tasks) are the roots."""
    by_id = {t["id"]: {**t, "groups": []} for t in tasks}
    group_lists: dict[tuple[int, int], dict[str, Any]] = {}
    roots: list[dict[str, Any]] = []
    for t in tasks:
        node = by_id[t["id"]]
        parent = by_id.get(t.get("parent", -1))
        if parent is None or parent is node:
            roots.append(node)
            continue
        group = t.get("group") or {"id": 0, "kind": "unknown"}
        key = (parent["id"], group["id"])
        entry = group_lists.get(key)
        if entry is None:
            entry = group_lists[key] = {"id": group["id"], "kind": group["kind"], "tasks": []}
            parent["groups"].append(entry)
        entry["tasks"].append(node)
    # A parent chain that loops (a snapshot torn by a move) would hide its
    # tasks: put every task not reachable from a root at the top.
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        seen.add(node["id"])
        for g in node["groups"]:
            stack.extend(g["tasks"])
    for t in tasks:
        if t["id"] not in seen:
            node = by_id[t["id"]]
            roots.append(node)
            node_stack = [node]
            while node_stack:
                n = node_stack.pop()
                seen.add(n["id"])
                for g in n["groups"]:
                    node_stack.extend(c for c in g["tasks"] if c["id"] not in seen)
    return roots


# ================================================================ monitor


class Monitor(Instrument):
    """An :class:`Instrument` that answers ``ps`` / ``pstree`` on a Unix
    socket, from a daemon thread of its own (see the module docstring).

    Install it with ``yieldloop.run(main, instruments=[Monitor()])`` or,
    during a run, ``current_kernel().add_instrument(Monitor())``: it starts
    serving at its first hook (a task spawned or exiting, or the loop going
    idle), or when :meth:`start` is called from inside the run (do that
    right after adding it during a run), and stops, removing its socket,
    when the run finishes. If it is removed from a run before the end, call
    :meth:`close`. ``kernel`` may be given up front; otherwise it is the
    run whose hook comes first. A monitor serves one run at a time, and
    can serve a later run again.

    If the socket cannot be made (a directory owned by someone else, a path
    too long), the error is logged (logger ``"yieldloop"``) once and the
    program runs on unwatched; :meth:`start` raises it instead.
    """

    def __init__(self, kernel: Kernel | None = None) -> None:
        from ._kernel import Kernel

        if kernel is not None and not isinstance(kernel, Kernel):
            raise TypeError(f"kernel must be a yieldloop Kernel or None, got {kernel!r}")
        self._kernel: Kernel | None = kernel
        #: The socket's path while serving, else None.
        self.path: str | None = None
        self._lock = threading.Lock()
        self._tasks: dict[Task[Any], int] = {}
        self._ids = itertools.count(1)
        self._started = False  # start() ran (or failed) for this run
        self._failed = False
        self._in_io_wait = False
        self._loop_ident: int | None = None
        self._loop_name = ""
        self._listener: socket.socket | None = None
        self._stop_r: socket.socket | None = None
        self._stop_w: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self.path if self.path is not None else "not serving"
        return f"<yieldloop Monitor {where}>"

    # ------------------------------------------------------------ control

    def start(self) -> str:
        """Start serving (from the loop thread, inside the run); returns the
        socket's path. Does nothing more if already serving. Raises
        ``RuntimeError``/``OSError`` if the socket cannot be made."""
        if self.path is not None:
            return self.path
        kernel = running_kernel()
        if kernel is None:
            raise RuntimeError("Monitor.start() must be called from inside yieldloop.run()")
        if self._kernel is not None and self._kernel is not kernel and not self._kernel.closed:
            raise RuntimeError("this Monitor already watches another yieldloop run")
        self._kernel = kernel
        self._started = True
        self._loop_ident = threading.get_ident()
        self._loop_name = threading.current_thread().name
        with self._lock:  # tasks that exist before we were installed
            for task in kernel.all_tasks():
                if task not in self._tasks:
                    self._tasks[task] = next(self._ids)
        directory = monitor_dir()
        _prepare_dir(directory)
        _clean_stale(directory)
        path = _claim_path(directory)
        if len(os.fsencode(path)) > _AF_UNIX_MAX:
            _release_path(path)
            raise OSError(
                f"monitor socket path {path!r} is too long for a Unix socket; "
                f"set ${ENV_DIR} to a shorter directory"
            )
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a leftover of this process (checked by _clean_stale)
            listener.bind(path)
            os.chmod(path, 0o600)
            listener.listen(16)
            listener.setblocking(False)
            stop_r, stop_w = socket.socketpair()
        except BaseException:
            listener.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
            _release_path(path)
            raise
        self._listener = listener
        self._stop_r, self._stop_w = stop_r, stop_w
        self.path = path
        thread = threading.Thread(
            target=self._serve, name=f"yieldloop-monitor {os.path.basename(path)}", daemon=True
        )
        self._thread = thread
        thread.start()
        return path

    def close(self) -> None:
        """Stop serving: end the server thread, remove the socket. Called
        when the run finishes; safe to call again, from any thread."""
        thread = self._thread
        stop_w = self._stop_w
        if stop_w is not None:
            with contextlib.suppress(OSError):
                stop_w.send(b"x")
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._thread = None
        for sock in (self._listener, self._stop_r, self._stop_w):
            if sock is not None:
                sock.close()
        self._listener = self._stop_r = self._stop_w = None
        path = self.path
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)
            _release_path(path)
        self.path = None
        with self._lock:
            self._tasks.clear()
        self._started = False
        self._failed = False
        self._in_io_wait = False

    def _first_hook(self) -> None:
        # The first hook of a run, on the loop thread: start serving.
        self._started = True
        try:
            self.start()
        except Exception as exc:
            self._failed = True
            logger.error("the yieldloop monitor could not start: %s", exc)

    # ------------------------------------------------------------ hooks

    def task_spawned(self, task: Task[Any]) -> None:
        """Register the task (and start serving, the first time)."""
        if not self._started:
            self._first_hook()  # registers every live task, this one too
            if task in self._tasks:
                return
        with self._lock:
            self._tasks[task] = next(self._ids)

    def task_exited(self, task: Task[Any]) -> None:
        """Forget the task."""
        if not self._started:
            self._first_hook()
        with self._lock:
            self._tasks.pop(task, None)

    def before_io_wait(self, timeout: float) -> None:
        """Note that the loop is idle (waiting for I/O, timers or threads)."""
        if not self._started:
            self._first_hook()
        self._in_io_wait = True

    def after_io_wait(self, timeout: float) -> None:
        """The loop is busy again."""
        self._in_io_wait = False

    def run_finished(self) -> None:
        """Stop serving and remove the socket."""
        self.close()
        self._kernel = None

    # ------------------------------------------------------------ snapshot

    def snapshot(self, tree: bool = False) -> dict[str, Any]:
        """What every task is doing now: the JSON object described in the
        module docstring, with ``"tasks"`` (a flat list) or, with ``tree``,
        ``"tree"`` (:func:`build_tree` of that list) instead. Safe to call
        from any thread, also while the loop thread is blocked."""
        from ._kernel import describe_wait

        kernel = self._kernel
        with self._lock:
            items = list(self._tasks.items())
        result: dict[str, Any] = {"version": PROTOCOL_VERSION, "pid": os.getpid()}
        if kernel is None:
            result["time"] = None
            result["loop"] = {"state": "finished", "task": None, "thread": ""}
            result["tree" if tree else "tasks"] = []
            return result
        now = kernel.now()
        current = kernel.current_task
        loop_frames = _thread_frames(self._loop_ident) if current is not None else []
        ids = dict(items)
        groups: dict[int, int] = {}
        tasks: list[dict[str, Any]] = []
        for task, tid in sorted(items, key=lambda item: item[1]):
            info = _task_info(kernel, task, tid, now, describe_wait, loop_frames, groups, ids)
            if info is not None:
                tasks.append(info)
        if current is not None:
            state = "running"
        elif self._in_io_wait:
            state = "idle"
        else:
            state = "scheduling"
        result["time"] = now
        result["loop"] = {
            "state": state,
            "task": ids.get(current) if current is not None else None,
            "thread": self._loop_name,
        }
        if tree:
            result["tree"] = build_tree(tasks)
        else:
            result["tasks"] = tasks
        return result

    # ------------------------------------------------------------ server

    def _serve(self) -> None:
        listener, stop_r = self._listener, self._stop_r
        assert listener is not None and stop_r is not None
        with selectors.DefaultSelector() as sel:
            sel.register(listener, selectors.EVENT_READ)
            sel.register(stop_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    if key.fileobj is stop_r:
                        return
                    try:
                        conn, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as exc:
                        logger.error("the yieldloop monitor stopped: accept() failed: %s", exc)
                        return
                    with conn:
                        self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        stop_r = self._stop_r
        assert stop_r is not None
        try:
            conn.setblocking(True)
            conn.settimeout(_CLIENT_TIMEOUT)
            data = b""
            while b"\n" not in data and len(data) < _MAX_COMMAND:
                # Wait for the client, but not past close(): a client that
                # connects and says nothing cannot hold up the run's end.
                readable, _, _ = select.select([conn, stop_r], [], [], _CLIENT_TIMEOUT)
                if conn not in readable:
                    return
                chunk = conn.recv(_MAX_COMMAND)
                if not chunk:
                    break
                data += chunk
            command = data.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
            reply: dict[str, Any]
            if command in COMMANDS:
                try:
                    reply = self.snapshot(tree=command == "pstree")
                except Exception as exc:
                    logger.error("the yieldloop monitor failed to take a snapshot", exc_info=exc)
                    reply = {
                        "version": PROTOCOL_VERSION,
                        "error": f"the snapshot failed: {type(exc).__name__}: {exc}",
                    }
            else:
                reply = {
                    "version": PROTOCOL_VERSION,
                    "error": f"unknown command {command!r}; send one of: {', '.join(COMMANDS)}",
                }
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError as exc:  # the client went away or stalled: keep serving
            logger.debug("the yieldloop monitor could not answer a client: %s", exc)
