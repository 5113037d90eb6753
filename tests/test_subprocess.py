"""run_process, open_process and Process: real child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

import yieldloop
from yieldloop import BrokenResourceError, ClosedResourceError, TaskGroup, move_on_after
from yieldloop._os import Process, open_process, run_process
from yieldloop._os import _subprocess as subprocess_module

PY = sys.executable
PIPE = subprocess.PIPE

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX subprocesses")


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set()


def py(code: str) -> list[str]:
    return [PY, "-c", code]


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # not running, and not a zombie either: it was reaped
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@pytest.fixture(autouse=True)
def no_leaks() -> Generator[None, None, None]:
    fds = open_fds()
    threads = threading.active_count()
    yield
    assert open_fds() == fds
    deadline = time.monotonic() + 30
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == threads


@pytest.fixture(params=["pidfd", "thread"])
def wait_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "pidfd":
        if not subprocess_module._HAVE_PIDFD:
            pytest.skip("no os.pidfd_open")
    else:
        monkeypatch.setattr(subprocess_module, "_HAVE_PIDFD", False)
    return str(request.param)


def test_capture_and_input(wait_mode: str) -> None:
    code = (
        "import sys; data = sys.stdin.buffer.read(); "
        "sys.stdout.buffer.write(data.upper()); sys.stderr.write('err')"
    )

    async def main() -> subprocess.CompletedProcess[bytes]:
        return await run_process(py(code), input=b"hello", capture_stdout=True, capture_stderr=True)

    result = yieldloop.run(main)
    assert result.returncode == 0
    assert result.stdout == b"HELLO"
    assert result.stderr == b"err"
    assert result.args == py(code)


def test_not_captured_is_none() -> None:
    async def main() -> subprocess.CompletedProcess[bytes]:
        return await run_process(py("pass"))

    result = yieldloop.run(main)
    assert (result.stdout, result.stderr) == (None, None)


def test_stdin_is_empty_without_input() -> None:
    async def main() -> bytes:
        r = await run_process(py("import sys; print(repr(sys.stdin.read()))"), capture_stdout=True)
        return r.stdout

    assert yieldloop.run(main).strip() == b"''"


def test_check_and_exit_codes() -> None:
    async def main() -> None:
        with pytest.raises(subprocess.CalledProcessError) as info:
            await run_process(py("import sys; print('out'); sys.exit(3)"), capture_stdout=True)
        assert info.value.returncode == 3
        assert info.value.stdout.strip() == b"out"
        r = await run_process(py("import sys; sys.exit(7)"), check=False)
        assert r.returncode == 7
        r = await run_process(
            py("import os, signal; os.kill(os.getpid(), signal.SIGTERM)"), check=False
        )
        assert r.returncode == -signal.SIGTERM

    yieldloop.run(main)


def test_missing_program() -> None:
    async def main() -> None:
        with pytest.raises(FileNotFoundError):
            await run_process(["/nonexistent/program"], input=b"x", capture_stdout=True)

    yieldloop.run(main)


def test_cwd_and_env(tmp_path: Path) -> None:
    code = "import os; print(os.getcwd()); print(os.environ['YL_TEST'])"

    async def main() -> bytes:
        env = dict(os.environ, YL_TEST="value")
        r = await run_process(py(code), cwd=tmp_path, env=env, capture_stdout=True)
        return r.stdout

    lines = yieldloop.run(main).decode().split()
    assert Path(lines[0]).resolve() == tmp_path.resolve()
    assert lines[1] == "value"


def test_big_output_both_ways(wait_mode: str) -> None:
    data = os.urandom(1 << 20)  # far more than a pipe buffer (64 KiB)
    code = (
        "import sys; d = sys.stdin.buffer.read(); sys.stdout.buffer.write(d); "
        "sys.stderr.buffer.write(d[:300000])"
    )

    async def main() -> subprocess.CompletedProcess[bytes]:
        return await run_process(py(code), input=data, capture_stdout=True, capture_stderr=True)

    result = yieldloop.run(main)
    assert result.stdout == data
    assert result.stderr == data[:300000]


def test_child_not_reading_input() -> None:
    async def main() -> int:
        r = await run_process(py("pass"), input=b"x" * (1 << 20))
        return r.returncode

    assert yieldloop.run(main) == 0


def test_cancel_run_process_kills_child(tmp_path: Path, wait_mode: str) -> None:
    pidfile = tmp_path / "pid"
    code = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)"

    async def main() -> int:
        async def wait_for_pid() -> int:
            while not pidfile.exists() or not pidfile.read_text():
                await yieldloop.sleep(0.01)
            return int(pidfile.read_text())

        with move_on_after(30) as outer:
            async with TaskGroup() as tg:
                tg.spawn(run_process, py(code))
                pid = await wait_for_pid()
                tg.cancel_scope.cancel()
        assert not outer.cancelled_caught
        return pid

    pid = yieldloop.run(main)
    assert_gone(pid)


def test_cancel_kills_child_ignoring_sigterm(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    code = (
        "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )

    async def main() -> int:
        with move_on_after(30):
            async with TaskGroup() as tg:
                tg.spawn(lambda: run_process(py(code), capture_stdout=True, kill_grace=0.2))
                while not pidfile.exists() or not pidfile.read_text():
                    await yieldloop.sleep(0.01)
                tg.cancel_scope.cancel()
        return int(pidfile.read_text())

    pid = yieldloop.run(main)
    assert_gone(pid)


def test_open_process_interactive(wait_mode: str) -> None:
    code = (
        "import sys\n"
        "for line in sys.stdin:\n"
        "    sys.stdout.write(line.upper()); sys.stdout.flush()\n"
        "sys.exit(5)\n"
    )

    async def main() -> tuple[Process, list[bytes]]:
        got = []
        async with await open_process(py(code), stdin=PIPE, stdout=PIPE) as proc:
            assert isinstance(proc.pid, int)
            assert proc.returncode is None
            assert proc.stderr is None
            assert proc.stdin is not None and proc.stdout is not None
            for word in (b"one\n", b"two\n"):
                await proc.stdin.send_all(word)
                line = b""
                while not line.endswith(b"\n"):
                    chunk = await proc.stdout.receive_some(1)
                    assert chunk
                    line += chunk
                got.append(line)
            await proc.stdin.send_eof()
            assert await proc.stdout.receive_some() == b""
            assert await proc.wait() == 5
            assert proc.returncode == 5
            with pytest.raises(ClosedResourceError):
                await proc.stdin.send_all(b"more")
        return proc, got

    proc, got = yieldloop.run(main)
    assert got == [b"ONE\n", b"TWO\n"]
    assert proc.returncode == 5
    assert_gone(proc.pid)


def test_pipes_are_streams_a_buffered_reader_can_wrap() -> None:
    # Line by line from a child's stdout, with receive_until, and each pipe
    # used the wrong way round says which way it goes.
    code = (
        "import sys\n"
        "for line in sys.stdin:\n"
        "    sys.stdout.write(line.upper()); sys.stdout.flush()\n"
    )

    async def main() -> list[bytes]:
        got = []
        async with await open_process(py(code), stdin=PIPE, stdout=PIPE, stderr=PIPE) as proc:
            assert proc.stdin is not None and proc.stdout is not None
            assert proc.stderr is not None
            assert isinstance(proc.stdout, yieldloop.Stream)
            lines = yieldloop.BufferedReceiveStream(proc.stdout)
            await proc.stdin.send_all(b"one\ntwo\nthr")
            got.append(await lines.receive_until(b"\n"))
            got.append(await lines.receive_until(b"\n"))
            await proc.stdin.send_all(b"ee\n")
            got.append(await lines.receive_until(b"\n"))
            with pytest.raises(RuntimeError, match="stdout pipe .* is for receiving only"):
                await proc.stdout.send_all(b"x")
            with pytest.raises(RuntimeError, match="stderr pipe .* for receiving only"):
                await proc.stderr.send_eof()
            with pytest.raises(RuntimeError, match="stdin pipe .* is for sending only"):
                await proc.stdin.receive_some()
            await proc.stdin.send_eof()
            with pytest.raises(yieldloop.IncompleteRead):
                await lines.receive_until(b"\n")
            assert await proc.wait() == 0
        return got

    assert yieldloop.run(main) == [b"ONE", b"TWO", b"THREE"]


def test_signals_to_process() -> None:
    async def main() -> list[int]:
        codes = []
        for method in ("terminate", "kill", "send_signal"):
            proc = await open_process(py("import time; time.sleep(60)"))
            async with proc:
                if method == "send_signal":
                    proc.send_signal(signal.SIGUSR1)
                else:
                    getattr(proc, method)()
                codes.append(await proc.wait())
            proc.kill()  # after exit: does nothing
        return codes

    assert yieldloop.run(main) == [-signal.SIGTERM, -signal.SIGKILL, -signal.SIGUSR1]


def test_aclose_cancelled_stops_child() -> None:
    async def main() -> Process:
        proc = await open_process(
            py(
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)"
            ),
            stdout=PIPE,
            kill_grace=0.2,
        )
        assert proc.stdout is not None
        line = b""
        while not line.endswith(b"\n"):  # the line may come in pieces
            line += await proc.stdout.receive_some()
        assert line == b"ready\n"
        with move_on_after(0.1) as scope:
            await proc.aclose()
        assert scope.cancelled_caught
        assert proc.returncode == -signal.SIGKILL
        return proc

    proc = yieldloop.run(main)
    assert_gone(proc.pid)


def test_wait_cancelled_does_not_kill() -> None:
    async def main() -> None:
        async with await open_process(py("import time; time.sleep(60)")) as proc:
            with move_on_after(0.1):
                await proc.wait()
            assert proc.returncode is None
            proc.terminate()

    yieldloop.run(main)


def test_several_waiters(wait_mode: str) -> None:
    async def main() -> list[int]:
        codes: list[int] = []

        async def waiter(p: Process) -> None:
            codes.append(await p.wait())

        async with await open_process(py("import time; time.sleep(0.2)")) as proc:
            async with TaskGroup() as tg:
                for _ in range(3):
                    tg.spawn(waiter, proc)
        return codes

    assert yieldloop.run(main) == [0, 0, 0]


def test_broken_pipe_on_stdin() -> None:
    async def main() -> None:
        async with await open_process(py("pass"), stdin=PIPE) as proc:
            await proc.wait()
            assert proc.stdin is not None
            with pytest.raises(BrokenResourceError):
                await proc.stdin.send_all(b"x" * (1 << 20))

    yieldloop.run(main)


def test_close_while_receiving() -> None:
    async def main() -> None:
        async with await open_process(py("import time; time.sleep(60)"), stdout=PIPE) as proc:
            stdout = proc.stdout
            assert stdout is not None

            async def reader() -> None:
                with pytest.raises(ClosedResourceError):
                    await stdout.receive_some()

            async with TaskGroup() as tg:
                tg.spawn(reader)
                await yieldloop.sleep(0.02)
                with pytest.raises(RuntimeError, match="already using"):
                    await stdout.receive_some()
                await stdout.aclose()
            proc.kill()

    yieldloop.run(main)


def test_yield_from_style() -> None:
    def main() -> Generator[Any, Any, bytes]:
        r = yield from run_process(py("print('gen')"), capture_stdout=True)
        proc = yield from open_process(py("pass"))
        yield from proc.aclose().__await__()
        return r.stdout

    assert yieldloop.run(main).strip() == b"gen"


def test_no_zombies_and_no_fd_leaks_over_many_runs() -> None:
    async def main() -> None:
        async with TaskGroup() as tg:
            for i in range(10):
                tg.spawn(
                    lambda i=i: run_process(
                        py(f"import sys; sys.exit({i % 2})"), check=False, capture_stdout=True
                    )
                )

    before = _children()
    yieldloop.run(main)
    assert _children() - before == set()  # a zombie stays a child until reaped


def _children() -> set[int]:
    """The pids of this process's children (zombies included), from /proc;
    helpers started by other tests (e.g. multiprocessing's resource
    tracker) are in both the before and after sets."""
    pids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids.update(int(p) for p in f.read().split())
        except FileNotFoundError:  # the thread ended meanwhile
            pass
    return pids


def test_bad_arguments() -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="bytes"):
            await run_process(py("pass"), input="text")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="kill_grace"):
            await run_process(py("pass"), kill_grace=-1)

    yieldloop.run(main)
