"""Unix-socket servers: open_unix_listeners and serve_unix, on real sockets."""

from __future__ import annotations

import errno
import functools
import logging
import os
import pathlib
import resource
import shutil
import signal
import socket as stdlib_socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _leaks import no_leaks

import yieldloop as yl
from yieldloop import CancelScope, TaskGroup
from yieldloop._io._connect import open_unix_stream
from yieldloop._io._server import (
    SocketListener,
    open_unix_listeners,
    serve_listeners,
    serve_unix,
)
from yieldloop._io._streams import BufferedReceiveStream, SocketStream

pytestmark = pytest.mark.timeout(60)

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def sock_dir() -> Iterator[str]:
    # Short: a Unix socket path must fit in 108 bytes (pytest's tmp_path may not).
    path = tempfile.mkdtemp(prefix="yl-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def echo_handler(stream: SocketStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)


async def roundtrip(path: str | bytes, msg: bytes) -> bytes:
    async with await open_unix_stream(path) as stream:
        await stream.send_all(msg)
        return await BufferedReceiveStream(stream).receive_exactly(len(msg))


def is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def make_stale_socket(path: str) -> None:
    """A socket file whose process died without removing it."""
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, socket, sys\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "s.bind(sys.argv[1])\n"
            "s.listen()\n"
            "os._exit(0)\n",
            path,
        ],
        check=True,
        timeout=30,
    )


def test_serve_unix_echo_and_cleanup(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "echo.sock")

    async def main() -> None:
        async with TaskGroup() as tg:
            listeners = await tg.start(functools.partial(serve_unix, echo_handler, path))
            assert len(listeners) == 1 and isinstance(listeners[0], SocketListener)
            assert listeners[0].socket.family == stdlib_socket.AF_UNIX
            assert is_socket(path)
            msgs = [b"msg %d" % i for i in range(20)]
            assert await yl.gather(*(roundtrip(path, m) for m in msgs)) == msgs
            tg.cancel_scope.cancel()
        assert listeners[0].socket.closed
        assert not os.path.exists(path)  # removed when the listener closed
        with pytest.raises(OSError):
            await open_unix_stream(path)

    with no_leaks(settle=0):
        yl.run(main)


def test_path_like_and_bytes_paths(sock_dir: str) -> None:
    async def main() -> None:
        for path in (pathlib.Path(sock_dir) / "p.sock", os.path.join(sock_dir, "b.sock").encode()):
            listeners = await open_unix_listeners(path)
            async with TaskGroup() as tg:
                tg.spawn(serve_listeners, echo_handler, listeners)
                assert await roundtrip(os.fspath(path), b"hi") == b"hi"
                tg.cancel_scope.cancel()
            assert not os.path.exists(path)

    with no_leaks(settle=0):
        yl.run(main)


def test_handler_error_is_logged_and_the_server_goes_on(
    sock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = os.path.join(sock_dir, "s")

    async def handler(stream: SocketStream) -> None:
        data = await stream.receive_some()
        if data == b"boom":
            raise ValueError("unix handler failed on purpose")
        await stream.send_all(data)

    async def main() -> None:
        async with TaskGroup() as tg:
            await tg.start(functools.partial(serve_unix, handler, path))
            async with await open_unix_stream(path) as stream:
                await stream.send_all(b"boom")
                assert await stream.receive_some() == b""
            assert await roundtrip(path, b"still here") == b"still here"
            tg.cancel_scope.cancel()

    with caplog.at_level(logging.ERROR, logger="yieldloop.server"):
        yl.run(main)
    records = [r for r in caplog.records if r.name == "yieldloop.server"]
    assert len(records) == 1
    assert "a unix-socket client" in records[0].getMessage()
    assert records[0].exc_info is not None and isinstance(records[0].exc_info[1], ValueError)
    assert "Traceback" in caplog.text


def test_stale_socket_file_is_replaced(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "stale.sock")
    make_stale_socket(path)
    assert is_socket(path)
    probe = stdlib_socket.socket(stdlib_socket.AF_UNIX)
    with probe, pytest.raises(ConnectionRefusedError):  # nobody listens there
        probe.connect(path)

    async def main() -> None:
        async with TaskGroup() as tg:
            await tg.start(functools.partial(serve_unix, echo_handler, path))
            assert await roundtrip(path, b"fresh") == b"fresh"  # ours now
            tg.cancel_scope.cancel()
        assert not os.path.exists(path)

    with no_leaks(settle=0):
        yl.run(main)


def test_live_server_socket_is_an_error(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "live.sock")
    other = stdlib_socket.socket(stdlib_socket.AF_UNIX)
    try:
        other.bind(path)
        other.listen()
        inode = os.lstat(path).st_ino

        async def main() -> None:
            with pytest.raises(OSError, match="a server is listening") as info:
                await open_unix_listeners(path)
            assert info.value.errno == errno.EADDRINUSE
            with pytest.raises(OSError, match="a server is listening"):
                await serve_unix(echo_handler, path)

        with no_leaks(settle=0):
            yl.run(main)
        assert os.lstat(path).st_ino == inode  # left alone, and still serving
        probe = stdlib_socket.socket(stdlib_socket.AF_UNIX)
        probe.connect(path)
        probe.close()
    finally:
        other.close()


def test_live_yieldloop_server_is_not_replaced(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "twice.sock")

    async def main() -> None:
        async with TaskGroup() as tg:
            await tg.start(functools.partial(serve_unix, echo_handler, path))
            with pytest.raises(OSError, match="a server is listening"):
                await open_unix_listeners(path)
            assert await roundtrip(path, b"first one") == b"first one"
            tg.cancel_scope.cancel()

    with no_leaks(settle=0):
        yl.run(main)


def test_non_socket_file_is_an_error(sock_dir: str) -> None:
    regular = os.path.join(sock_dir, "data.txt")
    with open(regular, "w") as f:
        f.write("precious")
    directory = os.path.join(sock_dir, "dir")
    os.mkdir(directory)
    link = os.path.join(sock_dir, "link")
    os.symlink(regular, link)

    async def main() -> None:
        for path in (regular, directory, link):
            with pytest.raises(FileExistsError, match="not a socket") as info:
                await open_unix_listeners(path)
            assert info.value.errno == errno.EEXIST

    with no_leaks(settle=0):
        yl.run(main)
    with open(regular) as f:
        assert f.read() == "precious"
    assert os.path.isdir(directory) and os.path.islink(link)


@pytest.mark.parametrize("mode", [0o600, 0o660, 0o777])
def test_mode_sets_the_permissions(sock_dir: str, mode: int) -> None:
    path = os.path.join(sock_dir, "m.sock")

    async def main() -> None:
        async with TaskGroup() as tg:
            await tg.start(functools.partial(serve_unix, echo_handler, path, mode=mode))
            assert stat.S_IMODE(os.lstat(path).st_mode) == mode
            assert await roundtrip(path, b"x") == b"x"
            tg.cancel_scope.cancel()

    with no_leaks(settle=0):
        yl.run(main)


@pytest.mark.skipif(os.geteuid() == 0, reason="root connects whatever the permissions")
def test_mode_keeps_others_out(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "closed.sock")

    async def main() -> None:
        listeners = await open_unix_listeners(path, mode=0o000)
        try:
            with pytest.raises(PermissionError):
                await open_unix_stream(path)
        finally:
            listeners[0].close()

    yl.run(main)


def test_bad_arguments(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "bad.sock")

    async def main() -> None:
        with pytest.raises(TypeError, match="mode"):
            await open_unix_listeners(path, mode="600")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="mode"):
            await open_unix_listeners(path, mode=True)
        with pytest.raises(ValueError, match="mode"):
            await open_unix_listeners(path, mode=0o10000)
        with pytest.raises(ValueError, match="mode"):
            await open_unix_listeners(path, mode=-1)
        with pytest.raises(TypeError, match="backlog"):
            await open_unix_listeners(path, backlog="5")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="path"):
            await open_unix_listeners(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="empty"):
            await open_unix_listeners("")
        with pytest.raises(ValueError, match="abstract"):
            await open_unix_listeners("\0yieldloop-abstract", mode=0o600)
        with pytest.raises(TypeError, match="handler"):
            await serve_unix(42, path)  # type: ignore[arg-type]
        with pytest.raises(OSError, match="cannot listen"):
            await open_unix_listeners(os.path.join(sock_dir, "x" * 200))
        with pytest.raises(OSError, match="cannot listen"):
            await open_unix_listeners(os.path.join(sock_dir, "no-such-dir", "s.sock"))
        assert not os.path.exists(path)

    with no_leaks(settle=0):
        yl.run(main)


def test_abstract_socket(sock_dir: str) -> None:
    name = f"\0yieldloop-test-{os.getpid()}-{time.monotonic_ns()}"

    async def main() -> None:
        async with TaskGroup() as tg:
            await tg.start(functools.partial(serve_unix, echo_handler, name))
            assert await roundtrip(name, b"abstract") == b"abstract"
            tg.cancel_scope.cancel()
        assert os.listdir(sock_dir) == []

    with no_leaks(settle=0):
        yl.run(main)


def test_close_leaves_a_replaced_file_alone(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "r.sock")

    async def main() -> None:
        # Someone removed our socket file and put another socket there.
        listeners = await open_unix_listeners(path)
        os.unlink(path)
        other = stdlib_socket.socket(stdlib_socket.AF_UNIX)
        other.bind(path)
        listeners[0].close()
        assert is_socket(path)  # not ours: kept
        other.close()
        os.unlink(path)
        # Someone removed it and put a regular file there.
        listeners = await open_unix_listeners(path)
        os.unlink(path)
        with open(path, "w") as f:
            f.write("data")
        await listeners[0].aclose()
        assert os.path.isfile(path)
        os.unlink(path)
        # It is gone already: closing does not fail; closing twice is fine.
        listeners = await open_unix_listeners(path)
        os.unlink(path)
        listeners[0].close()
        listeners[0].close()

    with no_leaks(settle=0):
        yl.run(main)


def test_relative_path_is_removed_after_a_chdir(
    sock_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(sock_dir)

    async def main() -> None:
        listeners = await open_unix_listeners("rel.sock")
        monkeypatch.chdir("/")
        listeners[0].close()

    yl.run(main)
    assert os.listdir(sock_dir) == []


def test_out_of_fds_backs_off_and_recovers(
    sock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    # As for TCP: with no fd left, accept() fails with EMFILE; the server logs
    # once, waits, and serves again once fds are free.
    path = os.path.join(sock_dir, "fds.sock")
    served: list[int] = []

    async def handler(stream: SocketStream) -> None:
        served.append(1)
        await stream.send_all(b"ok")

    async def main() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        async with TaskGroup() as tg:
            await tg.start(functools.partial(serve_unix, handler, path))
            client = stdlib_socket.socket(stdlib_socket.AF_UNIX)
            filler: list[int] = []
            try:
                client.connect(path)  # queued: the server's accept() comes later
                highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
                resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
                try:
                    try:
                        while True:
                            filler.append(os.open("/dev/null", os.O_RDONLY))
                    except OSError:
                        pass
                    await yl.sleep(0.35)  # several back-off rounds, no spinning
                finally:
                    for fd in filler:
                        os.close(fd)
                    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
                while not served:
                    await yl.sleep(0.01)
            finally:
                client.close()
            tg.cancel_scope.cancel()

    with caplog.at_level(logging.INFO, logger="yieldloop.server"):
        yl.run(main)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert "retrying" in errors[0].getMessage()
    assert any("works again" in r.getMessage() for r in caplog.records)


async def start_stoppable(tg: TaskGroup, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Start server ``fn`` in ``tg`` inside a scope of its own; return
    ``(scope, what it started with)``: ``scope.cancel()`` stops it alone."""
    scope = CancelScope()

    async def run(task_status: Any = yl.TASK_STATUS_IGNORED) -> None:
        with scope:
            await fn(*args, task_status=task_status, **kwargs)

    return scope, await tg.start(run)


def test_grace_period_over_a_unix_socket(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "g.sock")
    log: list[str] = []

    async def handler(stream: SocketStream) -> None:
        await stream.receive_some()
        await yl.sleep(0.2)
        await stream.send_all(b"finished")
        log.append("handler done")

    async def main() -> None:
        async with TaskGroup() as tg:
            scope, _ = await start_stoppable(tg, serve_unix, handler, path, grace_period=10)
            async with await open_unix_stream(path) as client:
                await client.send_all(b"go")
                await yl.sleep(0.05)
                scope.cancel()
                await yl.sleep(0)
                # Shutdown started: the file is gone, nobody can connect.
                assert not os.path.exists(path)
                with pytest.raises(OSError):
                    await open_unix_stream(path)
                assert await BufferedReceiveStream(client).receive_exactly(8) == b"finished"
        assert log == ["handler done"]
        assert scope.cancelled_caught

    with no_leaks(settle=0):
        yl.run(main)


def test_second_ctrl_c_during_the_grace_period_stops_at_once(sock_dir: str) -> None:
    # A handler that would run for minutes, a grace period of 60 s: the first
    # Ctrl-C starts the grace period, the second one ends the run now, and the
    # socket file is still removed on the way out.
    path = os.path.join(sock_dir, "ki.sock")
    script = textwrap.dedent(
        """
        import functools, os, signal, sys, threading, time
        import yieldloop

        path = sys.argv[1]

        async def handler(stream):
            try:
                await yieldloop.sleep(600)
            finally:
                print("handler finally", flush=True)

        def interrupt_twice():
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.3)
            print("socket file after the first:", os.path.exists(path), flush=True)
            os.kill(os.getpid(), signal.SIGINT)

        async def main():
            async with yieldloop.TaskGroup() as tg:
                await tg.start(functools.partial(
                    yieldloop.serve_unix, handler, path, grace_period=60))
                client = await yieldloop.open_unix_stream(path)
                threading.Thread(target=interrupt_twice, daemon=True).start()
                await yieldloop.sleep(600)

        t0 = time.monotonic()
        try:
            yieldloop.run(main)
        except KeyboardInterrupt:
            print(f"elapsed {time.monotonic() - t0:.3f}", flush=True)
            print("socket file at the end:", os.path.exists(path), flush=True)
            raise
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, path],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    lines = proc.stdout.splitlines()
    assert "socket file after the first: False" in lines, proc.stdout + proc.stderr
    assert "handler finally" in lines
    elapsed = float(next(x for x in lines if x.startswith("elapsed")).split()[1])
    assert elapsed < 10
    assert "socket file at the end: False" in lines
    assert proc.stderr.rstrip().splitlines()[-1] == "KeyboardInterrupt"
    assert proc.returncode in (-signal.SIGINT, 128 + signal.SIGINT)


def test_open_unix_listeners_in_a_generator_coroutine(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "gen.sock")

    def main() -> Any:
        listeners = yield from open_unix_listeners(path)
        listeners[0].close()
        return os.path.exists(path)

    assert yl.run(main) is False
