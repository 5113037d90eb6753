"""Child processes: :func:`run_process`, :func:`open_process` and :class:`Process`.

Layer 4. A child is started with :class:`subprocess.Popen` (the fork/exec is
synchronous, as in trio). Its pipes are our own non-blocking pipe ends,
wrapped in a small stream class over ``os.read``/``os.write`` and
``wait_readable``/``wait_writable``.

Waiting for the exit: on Linux >= 5.3, ``os.pidfd_open`` gives an fd that
becomes readable when the child exits, so waiting is one ``wait_readable``.
Elsewhere a worker thread blocks in ``os.waitid(..., WNOWAIT)`` (which
leaves the child for ``Popen.poll`` to reap). Either way the child is reaped
with ``Popen.poll``, which sets ``returncode``.

Cancellation: cancelling :func:`run_process`, or :meth:`Process.aclose`
while it waits, terminates the child (SIGTERM), waits up to ``kill_grace``
seconds for it to exit, then kills it (SIGKILL), and always reaps it before
``Cancelled`` propagates: no child is left running, no zombie is left behind.
:meth:`Process.wait` alone does not kill the child when cancelled (so
``with move_on_after(1): await proc.wait()`` just stops waiting); use
``async with`` or :meth:`Process.aclose` to make sure it is gone.
"""

from __future__ import annotations

import math
import os
import subprocess
import types
from collections.abc import Generator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, TypeAlias, cast

from .._io._socket import Buffer
from .._io._streams import Stream
from .._kernel._errors import BrokenResourceError, Cancelled, ClosedResourceError
from .._kernel._kernel import CHECKPOINT
from .._kernel._requests import Awaitable, checkpoint, wait_readable
from .._kernel._scope import CancelScope
from .._kernel._state import current_kernel, running_kernel
from .._structured._group import TaskGroup
from .._structured._timeouts import move_on_after
from .._sync._event import Event
from .._sync._lock import CapacityLimiter
from ._threads import to_thread

if TYPE_CHECKING:
    from .._kernel._kernel import Kernel

__all__ = ["Process", "open_process", "run_process"]

_StrOrBytesPath: TypeAlias = "str | bytes | os.PathLike[str] | os.PathLike[bytes]"
Command: TypeAlias = "_StrOrBytesPath | Sequence[_StrOrBytesPath]"
_Redirect: TypeAlias = "int | IO[Any] | None"

PIPE = subprocess.PIPE
STDOUT = subprocess.STDOUT
DEVNULL = subprocess.DEVNULL

#: Seconds between SIGTERM and SIGKILL when a child must be stopped.
DEFAULT_KILL_GRACE = 5.0

_RECEIVE_SIZE = 65536
_HAVE_PIDFD = hasattr(os, "pidfd_open")


def _check_cancelled() -> Kernel:
    kernel = current_kernel()
    task = kernel.current_task
    if task is None:
        raise RuntimeError("this must be called from inside a task")
    if task._scope._eff:
        raise Cancelled()
    return kernel


class _PipeStream(Stream):
    """One end of a pipe to a child process, as an async byte stream.

    ``receive_some`` / ``send_all`` try the system call first and wait for
    the fd only when it would block. Each call is a cancellation point at its
    start, never after data moved (so no data is lost to a cancellation).
    A :class:`~yieldloop.Stream`, so it can be wrapped (``receive_until`` on
    a child's output through :class:`~yieldloop.BufferedReceiveStream`); the
    child's stdin only sends, its stdout and stderr only receive.
    """

    __slots__ = ("_busy", "_fd", "_what", "_writable")

    def __init__(self, fd: int, what: str, *, writable: bool) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._what = what
        self._busy = False
        self._writable = writable

    def fileno(self) -> int:
        """The fd, or -1 once closed."""
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def _check_open(self) -> int:
        fd = self._fd
        if fd < 0:
            raise ClosedResourceError(f"{self._what} is closed")
        return fd

    def _check_direction(self, op: str, sends: bool) -> None:
        if self._writable != sends:
            direction = "sending" if self._writable else "receiving"
            raise RuntimeError(f"{self._what} is for {direction} only (not {op})")

    def _enter(self, op: str) -> int:
        self._check_direction(op, op == "send_all")
        fd = self._check_open()
        if self._busy:
            raise RuntimeError(f"another task is already using {self._what} ({op})")
        return fd

    @types.coroutine
    def _receive_some(self, max_bytes: int) -> Generator[Any, Any, bytes]:
        fd = self._enter("receive_some")
        _check_cancelled()
        self._busy = True
        try:
            while True:
                try:
                    data = os.read(fd, max_bytes)
                except BlockingIOError:
                    yield ("wait_readable", fd)
                    fd = self._check_open()
                    continue
                break
        finally:
            self._busy = False
        yield ("reschedule",)  # let others run; not a cancellation point
        return data

    def receive_some(self, max_bytes: int | None = None) -> Awaitable[bytes]:
        """Read up to ``max_bytes`` (default 64 KiB); ``b""`` at end of file."""
        if max_bytes is None:
            max_bytes = _RECEIVE_SIZE
        elif isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
        return cast("Awaitable[bytes]", self._receive_some(max_bytes))

    @types.coroutine
    def _send_all(self, data: Buffer) -> Generator[Any, Any, None]:
        fd = self._enter("send_all")
        _check_cancelled()
        self._busy = True
        try:
            view = memoryview(data).cast("B")
            pos = 0
            total = len(view)
            while pos < total:
                try:
                    pos += os.write(fd, view[pos:])
                except BlockingIOError:
                    yield ("wait_writable", fd)
                    fd = self._check_open()
                except (BrokenPipeError, ConnectionResetError) as exc:
                    raise BrokenResourceError(
                        f"{self._what}: the child closed its end of the pipe"
                    ) from exc
        finally:
            self._busy = False
        yield ("reschedule",)

    def send_all(self, data: Buffer) -> Awaitable[None]:
        """Write all of ``data``; :class:`~yieldloop.BrokenResourceError` if
        the child closed its end."""
        return cast("Awaitable[None]", self._send_all(data))

    def close(self) -> None:
        """Close the fd now (tasks waiting on it get ClosedResourceError)."""
        fd = self._fd
        if fd < 0:
            return
        self._fd = -1
        kernel = running_kernel()
        if kernel is not None:
            kernel.notify_closing(fd)
        os.close(fd)

    @types.coroutine
    def _aclose(self) -> Generator[Any, Any, None]:
        self.close()
        yield ("reschedule",)  # not a cancellation point: closing always succeeds

    def aclose(self) -> Awaitable[None]:
        """Close the stream (idempotent)."""
        return cast("Awaitable[None]", self._aclose())

    def send_eof(self) -> Awaitable[None]:
        """For the child's stdin: signal end of input (closes the pipe)."""
        self._check_direction("send_eof", True)
        return self.aclose()

    async def __aenter__(self) -> _PipeStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<pipe stream {self._what} fd={self._fd}>"


class Process:
    """A child process started by :func:`open_process`.

    ``stdin``, ``stdout`` and ``stderr`` are async streams
    (:class:`~yieldloop.Stream`) when they were opened with ``PIPE``
    (``send_all``/``send_eof``/``aclose`` on stdin, ``receive_some``/``aclose``
    on the others; wrap stdout in a :class:`~yieldloop.BufferedReceiveStream`
    to read lines), else None. Use it as
    ``async with``: leaving the block calls :meth:`aclose`, which closes the
    pipes and waits for the child to exit (stopping it if cancelled).
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdin: _PipeStream | None,
        stdout: _PipeStream | None,
        stderr: _PipeStream | None,
        kill_grace: float,
    ) -> None:
        self._popen = popen
        self.args = popen.args
        self.pid: int = popen.pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        #: Seconds between SIGTERM and SIGKILL when :meth:`aclose` must stop the child.
        self.kill_grace = kill_grace
        self._pidfd = -1
        if _HAVE_PIDFD:
            try:
                self._pidfd = os.pidfd_open(popen.pid)
            except OSError:  # an old kernel, or a seccomp filter: use a thread
                self._pidfd = -1
        self._waiting = False
        self._exited: Event | None = None
        kernel = running_kernel()
        if kernel is not None:
            kernel.track_resource(self, "a child process (never waited for)")

    @property
    def returncode(self) -> int | None:
        """The exit status once the child has exited (and been reaped), else
        None. Negative: killed by that signal."""
        return self._popen.poll()

    def _wait_for_exit_blocking(self) -> None:
        waitid = getattr(os, "waitid", None)
        if waitid is None:  # pragma: no cover - platforms without waitid
            self._popen.wait()
            return
        try:
            waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:  # already reaped
            pass

    async def wait(self) -> int:
        """Wait for the child to exit and return its exit status. A
        cancellation point; being cancelled here does not stop the child."""
        popen = self._popen
        while popen.poll() is None:
            if self._waiting:  # another task watches the pidfd: wait for its news
                assert self._exited is not None
                await self._exited.wait()
                continue
            self._waiting = True
            exited = self._exited = Event()
            try:
                if self._pidfd >= 0:
                    await wait_readable(self._pidfd)
                else:
                    await to_thread(
                        self._wait_for_exit_blocking,
                        limiter=CapacityLimiter(math.inf),
                        abandon_on_cancel=True,
                    )
            finally:
                self._waiting = False
                exited.set()
        self._close_pidfd()
        kernel = running_kernel()
        if kernel is not None:
            kernel.untrack_resource(self)
        await checkpoint()
        returncode = popen.returncode
        assert returncode is not None
        return returncode

    def _close_pidfd(self) -> None:
        fd = self._pidfd
        if fd >= 0 and not self._waiting:
            self._pidfd = -1
            kernel = running_kernel()
            if kernel is not None:
                kernel.notify_closing(fd)
            os.close(fd)

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the child (nothing if it has already been reaped)."""
        self._popen.send_signal(sig)

    def terminate(self) -> None:
        """Ask the child to exit (SIGTERM)."""
        self._popen.terminate()

    def kill(self) -> None:
        """Kill the child (SIGKILL)."""
        self._popen.kill()

    async def _stop(self, grace: float) -> None:
        """Terminate, wait ``grace`` seconds, kill; always reap. Shielded."""
        with CancelScope(shield=True):
            if self._popen.poll() is None:
                self.terminate()
                with move_on_after(grace):
                    await self.wait()
                if self._popen.poll() is None:
                    self.kill()
                    await self.wait()

    def _close_pipes(self) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()

    async def aclose(self) -> None:
        """Close the pipes (so the child sees end of input, or a broken pipe
        if it still writes), then wait for it to exit. If cancelled while
        waiting, stop it (SIGTERM, ``kill_grace`` seconds, SIGKILL) and reap
        it before re-raising."""
        self._close_pipes()
        try:
            await self.wait()
        except BaseException:
            await self._stop(self.kill_grace)
            raise
        finally:
            self._close_pidfd()

    async def __aenter__(self) -> Process:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        rc = self._popen.returncode
        state = "running" if rc is None else f"exited with {rc}"
        return f"<yieldloop.Process {self.args!r}: pid {self.pid}, {state}>"


def _check_grace(kill_grace: float) -> float:
    if (
        isinstance(kill_grace, bool)
        or not isinstance(kill_grace, (int, float))
        or not (kill_grace >= 0)
    ):
        raise ValueError(f"kill_grace must be a number of seconds >= 0, got {kill_grace!r}")
    return float(kill_grace)


def _spawn(
    cmd: Command,
    stdin: _Redirect,
    stdout: _Redirect,
    stderr: _Redirect,
    cwd: _StrOrBytesPath | None,
    env: Mapping[str, str] | None,
    kill_grace: float,
    popen_options: Mapping[str, Any],
) -> Process:
    parent_fds: list[int] = []
    child_fds: list[int] = []
    ends: dict[str, int] = {}

    def pipe(name: str, parent_reads: bool) -> int:
        r, w = os.pipe()  # not inheritable: the child gets only what Popen dup2()s
        parent, child = (r, w) if parent_reads else (w, r)
        parent_fds.append(parent)
        child_fds.append(child)
        ends[name] = parent
        return child

    try:
        c_in = pipe("stdin", False) if stdin == PIPE else stdin
        c_out = pipe("stdout", True) if stdout == PIPE else stdout
        c_err = pipe("stderr", True) if stderr == PIPE else stderr
        popen = subprocess.Popen(
            cmd, stdin=c_in, stdout=c_out, stderr=c_err, cwd=cwd, env=env, **popen_options
        )
    except BaseException:
        for fd in parent_fds:
            os.close(fd)
        raise
    finally:
        for fd in child_fds:
            os.close(fd)
    try:
        streams = {
            name: _PipeStream(fd, f"the {name} pipe of pid {popen.pid}", writable=name == "stdin")
            for name, fd in ends.items()
        }
        return Process(
            popen,
            streams.get("stdin"),
            streams.get("stdout"),
            streams.get("stderr"),
            kill_grace,
        )
    except BaseException:  # pragma: no cover - only on a failing pidfd_open/fcntl
        popen.kill()
        popen.wait()
        for fd in parent_fds:
            os.close(fd)
        raise


@types.coroutine
def _open_process(
    cmd: Command,
    stdin: _Redirect,
    stdout: _Redirect,
    stderr: _Redirect,
    cwd: _StrOrBytesPath | None,
    env: Mapping[str, str] | None,
    kill_grace: float,
    popen_options: Mapping[str, Any],
) -> Generator[Any, Any, Process]:
    kill_grace = _check_grace(kill_grace)
    popen_options = _check_popen_options(popen_options)
    yield CHECKPOINT  # raises Cancelled here, before anything is started
    return _spawn(cmd, stdin, stdout, stderr, cwd, env, kill_grace, popen_options)


#: Popen arguments that would change what the pipes carry (text instead of
#: bytes) or that yieldloop sets itself.
_POPEN_OWN = frozenset(
    {"stdin", "stdout", "stderr", "cwd", "env", "text", "universal_newlines", "encoding",
     "errors", "bufsize"}
)


def _check_popen_options(options: Mapping[str, Any]) -> dict[str, Any]:
    bad = sorted(set(options) & _POPEN_OWN)
    if bad:
        raise TypeError(
            f"open_process() does not take {', '.join(bad)} as extra Popen options "
            "(the pipes are byte streams; stdin/stdout/stderr/cwd/env are its own arguments)"
        )
    return dict(options)


def open_process(
    cmd: Command,
    *,
    stdin: _Redirect = None,
    stdout: _Redirect = None,
    stderr: _Redirect = None,
    cwd: _StrOrBytesPath | None = None,
    env: Mapping[str, str] | None = None,
    kill_grace: float = DEFAULT_KILL_GRACE,
    **popen_options: Any,
) -> Awaitable[Process]:
    """Start ``cmd`` (a program and its arguments, as for
    :class:`subprocess.Popen`) and return a :class:`Process` at once::

        async with await open_process(["sort"], stdin=PIPE, stdout=PIPE) as proc:
            await proc.stdin.send_all(b"b\\na\\n")
            await proc.stdin.send_eof()
            print(await proc.stdout.receive_some())

    ``stdin``/``stdout``/``stderr``: ``subprocess.PIPE`` (an async stream on
    the process), ``DEVNULL``, ``STDOUT`` (stderr only), an fd or a file
    object, or None (inherit ours). ``cwd`` and ``env`` as for Popen.
    ``kill_grace``: seconds between SIGTERM and SIGKILL when :meth:`Process.aclose`
    is cancelled. Other keyword arguments go to :class:`subprocess.Popen`
    (``start_new_session``, ``pass_fds``, ``user``, ``umask``, ``shell``...);
    options that would make the pipes carry text are refused. Raises
    ``OSError`` (e.g. ``FileNotFoundError``) if the program cannot be started.
    """
    return cast(
        "Awaitable[Process]",
        _open_process(cmd, stdin, stdout, stderr, cwd, env, kill_grace, popen_options),
    )


async def _read_all(stream: _PipeStream, chunks: list[bytes]) -> None:
    while True:
        data = await stream.receive_some()
        if not data:
            return
        chunks.append(data)


async def _feed(stream: _PipeStream, data: bytes | bytearray | memoryview) -> None:
    try:
        if data:
            await stream.send_all(data)
    except BrokenResourceError:
        pass  # the child exited (or closed stdin) without reading it all
    finally:
        stream.close()


async def _run_process(
    cmd: Command,
    input: bytes | bytearray | memoryview | None,
    capture_stdout: bool,
    capture_stderr: bool,
    check: bool,
    cwd: _StrOrBytesPath | None,
    env: Mapping[str, str] | None,
    kill_grace: float,
) -> subprocess.CompletedProcess[bytes]:
    if isinstance(input, str):
        raise TypeError("run_process() input must be bytes, not str (encode it first)")
    proc = await _open_process(
        cmd,
        DEVNULL if input is None else PIPE,
        PIPE if capture_stdout else None,
        PIPE if capture_stderr else None,
        cwd,
        env,
        kill_grace,
        {},
    )
    out: list[bytes] = []
    err: list[bytes] = []
    try:
        async with TaskGroup() as tg:
            if proc.stdin is not None:
                tg.spawn(_feed, proc.stdin, input)
            if proc.stdout is not None:
                tg.spawn(_read_all, proc.stdout, out)
            if proc.stderr is not None:
                tg.spawn(_read_all, proc.stderr, err)
            await proc.wait()
    except BaseException:
        proc._close_pipes()
        await proc._stop(kill_grace)
        raise
    finally:
        proc._close_pipes()
        proc._close_pidfd()
    returncode = proc._popen.returncode
    assert returncode is not None
    stdout = b"".join(out) if capture_stdout else None
    stderr = b"".join(err) if capture_stderr else None
    if check and returncode:
        raise subprocess.CalledProcessError(returncode, proc.args, stdout, stderr)
    return subprocess.CompletedProcess(proc.args, returncode, stdout, stderr)


@types.coroutine
def _run_process_gen(*args: Any) -> Generator[Any, Any, subprocess.CompletedProcess[bytes]]:
    coro = cast("Generator[Any, Any, subprocess.CompletedProcess[bytes]]", _run_process(*args))
    return (yield from coro)


def run_process(
    cmd: Command,
    *,
    input: bytes | bytearray | memoryview | None = None,
    capture_stdout: bool = False,
    capture_stderr: bool = False,
    check: bool = True,
    cwd: _StrOrBytesPath | None = None,
    env: Mapping[str, str] | None = None,
    kill_grace: float = DEFAULT_KILL_GRACE,
) -> Awaitable[subprocess.CompletedProcess[bytes]]:
    """Run ``cmd`` to completion and return a :class:`subprocess.CompletedProcess`.

    ``input``: bytes for the child's stdin (then closed); without it stdin is
    ``/dev/null``. ``capture_stdout``/``capture_stderr``: collect that output
    into ``.stdout``/``.stderr`` (bytes; else they are inherited and None).
    ``check``: raise :class:`subprocess.CalledProcessError` (with the
    output) for a non-zero exit status. Input and output flow concurrently,
    so large amounts in both directions cannot deadlock.

    Cancelled, it terminates the child, waits up to ``kill_grace`` seconds,
    kills it, reaps it, and re-raises :class:`~yieldloop.Cancelled`.
    """
    return cast(
        "Awaitable[subprocess.CompletedProcess[bytes]]",
        _run_process_gen(
            cmd, input, capture_stdout, capture_stderr, check, cwd, env, _check_grace(kill_grace)
        ),
    )
