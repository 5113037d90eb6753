"""open_file / wrap_file / AsyncFile: real files in tmp_path, real pipes and FIFOs."""

from __future__ import annotations

import io
import os
import pathlib
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import pytest

import yieldloop
from yieldloop import CancelScope, Event, TaskGroup
from yieldloop._os._files import AsyncFile, open_file, wrap_file

WAIT = 30  # generous: waits that must never time out in practice


@pytest.fixture(autouse=True)
def no_thread_leak() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + WAIT
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(threading.enumerate()) - before == set()


def run(fn: Any, *args: Any) -> Any:
    return yieldloop.run(fn, *args)


# ------------------------------------------------------------ text files


def test_text_write_then_read(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "a.txt"

    async def main() -> tuple[int, str, str, str]:
        async with await open_file(path, "w", encoding="utf-8") as f:
            n = await f.write("héllo\n")
            await f.writelines(["second\n", "third"])
        async with await open_file(path, encoding="utf-8") as f:
            first = await f.readline()
            rest = await f.read()
            end = await f.read()
        return n, first, rest, end

    assert run(main) == (6, "héllo\n", "second\nthird", "")
    assert path.read_text(encoding="utf-8") == "héllo\nsecond\nthird"


def test_text_iteration_and_readlines(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"line {i}\n" for i in range(100)) + "no newline")

    async def main() -> tuple[list[str], list[str]]:
        seen = []
        async with await open_file(path) as f:
            async for line in f:
                seen.append(line)
        async with await open_file(path) as f:
            await f.readline()
            lines = await f.readlines()
        return seen, lines

    seen, lines = run(main)
    assert seen == [f"line {i}\n" for i in range(100)] + ["no newline"]
    assert lines == seen[1:]


def test_text_options_encoding_errors_newline(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "opts.txt"
    path.write_bytes(b"a\r\nb\xff\r\n")

    async def main() -> tuple[str, Any, str, str | None, str]:
        async with await open_file(path, "r", encoding="ascii", errors="replace") as f:
            text = await f.read()
            newlines = f.newlines
            encoding = f.encoding
            errors = f.errors
        async with await open_file(path, "r", encoding="latin-1", newline="") as f:
            raw = await f.read()
        return text, newlines, encoding, errors, raw

    text, newlines, encoding, errors, raw = run(main)
    assert text == "a\nb\ufffd\n"
    assert newlines == "\r\n"
    assert (encoding, errors) == ("ascii", "replace")
    assert raw == "a\r\nb\xff\r\n"


def test_text_decode_error_propagates(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"\xff\xfe\xfa")

    async def main() -> None:
        async with await open_file(path, encoding="utf-8") as f:
            await f.read()

    with pytest.raises(UnicodeDecodeError):
        run(main)


# ---------------------------------------------------------- binary files


def test_binary_read_write_seek_tell_truncate(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data.bin"

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with await open_file(path, "w+b") as f:
            out["written"] = await f.write(b"0123456789")
            out["tell_after_write"] = await f.tell()
            out["seek"] = await f.seek(2)
            out["read3"] = await f.read(3)
            out["seek_cur"] = await f.seek(1, os.SEEK_CUR)
            out["read1"] = await f.read1(2)
            out["seek_end"] = await f.seek(-1, os.SEEK_END)
            out["last"] = await f.read()
            out["truncate"] = await f.truncate(4)
            await f.seek(0)
            buf = bytearray(10)
            out["readinto"] = await f.readinto(buf)
            out["buf"] = bytes(buf)
        return out

    assert run(main) == {
        "written": 10,
        "tell_after_write": 10,
        "seek": 2,
        "read3": b"234",
        "seek_cur": 6,
        "read1": b"67",
        "seek_end": 9,
        "last": b"9",
        "truncate": 4,
        "readinto": 4,
        "buf": b"0123" + bytes(6),
    }
    assert path.read_bytes() == b"0123"


def test_flush_makes_data_visible(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "flush.bin"

    async def main() -> tuple[bytes, bytes]:
        async with await open_file(path, "wb") as f:
            await f.write(b"buffered")
            before = path.read_bytes()  # still in the file object's buffer
            await f.flush()
            after = path.read_bytes()
        return before, after

    assert run(main) == (b"", b"buffered")


def test_large_binary_round_trip(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)

    async def main() -> bytes:
        async with await open_file(path, "wb") as f:
            await f.write(data)
        chunks = []
        async with await open_file(path, "rb") as f:
            while chunk := await f.read(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    assert run(main) == data


def test_yield_from_in_a_generator_coroutine(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "gen.txt"
    path.write_text("from a generator")

    def main() -> Generator[Any, Any, str]:
        f = yield from open_file(path)
        try:
            text: str = yield from f.read()
        finally:
            yield from f.aclose()
        return text

    assert run(main) == "from a generator"


# ----------------------------------------------------------- path kinds


@pytest.mark.parametrize("kind", ["str", "bytes", "pathlib", "pathlike"])
def test_path_kinds(tmp_path: pathlib.Path, kind: str) -> None:
    path = tmp_path / "kind.txt"
    path.write_text("content")

    class MyPath:
        def __fspath__(self) -> str:
            return str(path)

    arg: Any = {
        "str": str(path),
        "bytes": os.fsencode(path),
        "pathlib": path,
        "pathlike": MyPath(),
    }[kind]

    async def main() -> tuple[str, Any]:
        async with await open_file(arg) as f:
            return await f.read(), f.name

    text, name = run(main)
    assert text == "content"
    assert os.fsdecode(os.fspath(name)) == str(path)


def test_file_descriptor_and_closefd(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "fd.txt"
    path.write_text("by fd")
    fd = os.open(path, os.O_RDONLY)
    try:

        async def main() -> str:
            async with await open_file(fd, closefd=False) as f:
                assert f.fileno() == fd
                return await f.read()

        assert run(main) == "by fd"
        os.fstat(fd)  # still open: closefd=False
    finally:
        os.close(fd)


def test_opener(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "opener.txt"
    calls: list[tuple[str, int]] = []

    def opener(name: str, flags: int) -> int:
        calls.append((name, flags))
        return os.open(name, flags, 0o600)

    async def main() -> None:
        async with await open_file(path, "w", opener=opener) as f:
            await f.write("x")

    run(main)
    assert path.read_text() == "x"
    assert [name for name, _ in calls] == [str(path)]
    assert path.stat().st_mode & 0o777 == 0o600


# ------------------------------------------------------------ attributes


def test_sync_attributes(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "attrs.bin"
    path.write_bytes(b"x")

    async def main() -> None:
        f = await open_file(path, "rb")
        assert isinstance(f, AsyncFile)
        assert f.name == str(path) or f.name == path
        assert f.mode == "rb"
        assert f.closed is False
        assert f.readable() and not f.writable() and f.seekable()
        assert f.isatty() is False
        assert isinstance(f.fileno(), int)
        assert isinstance(f.wrapped, io.BufferedReader)
        assert "AsyncFile" in repr(f)
        with pytest.raises(AttributeError):
            f.encoding  # noqa: B018 - a binary file has no encoding
        await f.aclose()
        assert f.closed is True
        assert f.wrapped.closed

    run(main)


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        await open_file(tmp_path / "missing.txt")

    with pytest.raises(FileNotFoundError):
        run(main)


def test_directory(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        await open_file(tmp_path, "w")

    with pytest.raises(IsADirectoryError):
        run(main)


def test_write_to_a_file_opened_for_reading(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "ro.txt"
    path.write_text("keep")

    async def main() -> None:
        async with await open_file(path, "r") as f:
            with pytest.raises(io.UnsupportedOperation):
                await f.write("no")
            assert await f.read() == "keep"  # still usable

    run(main)
    assert path.read_text() == "keep"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to read-only files")
def test_open_read_only_file_for_writing(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "ro.txt"
    path.write_text("keep")
    path.chmod(0o444)

    async def main() -> None:
        await open_file(path, "w")

    with pytest.raises(PermissionError):
        run(main)
    assert path.read_text() == "keep"


def test_read_only_file_system_object(tmp_path: pathlib.Path) -> None:
    # A real read-only resource that refuses writes for root too: /proc/self/cmdline.
    async def main() -> None:
        async with await open_file("/proc/self/cmdline", "rb") as f:
            with pytest.raises(io.UnsupportedOperation):
                await f.write(b"x")

    if not os.path.exists("/proc/self/cmdline"):
        pytest.skip("no /proc")
    run(main)


def test_bad_arguments() -> None:
    async def main() -> None:
        bad: Any
        for bad in (3.5, None, True, ["a"]):
            with pytest.raises(TypeError, match=r"path \(str, bytes or os.PathLike\).*got"):
                await open_file(bad)
        with pytest.raises(TypeError, match="mode to be a str"):
            await open_file("x", b"r")  # type: ignore[call-overload]
        with pytest.raises(ValueError, match="mode"):
            await open_file("x", "rz")

    run(main)


def test_text_file_has_no_read1(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("t")

    async def main() -> None:
        async with await open_file(path) as f:
            with pytest.raises(AttributeError, match=r"read1\(\)"):
                await f.read1()
            with pytest.raises(AttributeError, match=r"readinto\(\)"):
                await f.readinto(bytearray(1))

    run(main)


def test_close_twice_and_use_after_close(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("abc")

    async def main() -> None:
        f = await open_file(path)
        await f.aclose()
        await f.aclose()  # does nothing
        assert f.closed
        for call in (f.read, f.readline, f.tell, f.readlines, f.flush):
            with pytest.raises(ValueError, match="closed file"):
                await call()
        with pytest.raises(ValueError, match="closed file"):
            await f.seek(0)
        with pytest.raises(ValueError, match="closed file"):
            await f.write("x")
        with pytest.raises(ValueError, match="closed file"):
            async for _ in f:
                pass
        with pytest.raises(ValueError):
            f.fileno()
        async with f:  # entering and leaving a closed file is fine
            pass

    run(main)


# --------------------------------------------------------------- wrap_file


def test_wrap_file_of_an_open_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "w.txt"
    raw = open(path, "w+")  # noqa: SIM115 - closed by the AsyncFile

    async def main() -> str:
        async with wrap_file(raw) as f:
            await f.write("wrapped")
            await f.seek(0)
            return await f.read()

    assert run(main) == "wrapped"
    assert raw.closed


def test_wrap_file_of_bytes_io() -> None:
    buf = io.BytesIO(b"one\ntwo\n")

    async def main() -> list[bytes]:
        f = wrap_file(buf)
        lines = [line async for line in f]
        await f.write(b"three")
        await f.seek(0)
        lines.append(await f.read())
        return lines

    assert run(main) == [b"one\n", b"two\n", b"one\ntwo\nthree"]


def test_wrap_file_bad_input(tmp_path: pathlib.Path) -> None:
    bad: Any
    for bad in (None, 42, "path", object()):
        with pytest.raises(TypeError, match="file object.*got"):
            wrap_file(bad)
    path = tmp_path / "x"
    path.write_text("x")

    async def main() -> None:
        async with await open_file(path) as f:
            with pytest.raises(TypeError, match="got an AsyncFile"):
                wrap_file(f)  # type: ignore[arg-type]

    run(main)


# ------------------------------------------------------------ cancellation


def test_cancelled_read_waits_for_the_thread_and_keeps_the_data() -> None:
    r, w = os.pipe()
    try:

        async def main() -> tuple[list[str], bytes]:
            log: list[str] = []
            f = await open_file(r, "rb", buffering=0, closefd=False)
            scope = CancelScope()
            reading = Event()

            async def reader() -> None:
                with scope:
                    reading.set()
                    log.append(await f.read(100))  # the data is not lost...
                    await yieldloop.checkpoint()  # ...and Cancelled comes here
                    log.append("not reached")
                log.append(f"caught={scope.cancelled_caught}")

            async with TaskGroup() as tg:
                tg.spawn(reader)
                await reading.wait()
                scope.cancel()
                for _ in range(20):
                    await yieldloop.sleep(0)
                assert log == []  # the read is still blocked in its thread
                os.write(w, b"lost")  # ends the read in the thread
            os.write(w, b"next")
            after = await f.read(100)
            await f.aclose()
            return log, after

        log, after = run(main)
        assert log == [b"lost", "caught=True"]
        assert after == b"next"
    finally:
        os.close(r)
        os.close(w)


def test_cancelled_write_waits_for_the_thread_then_cancels() -> None:
    r, w = os.pipe()
    data = os.urandom(1024 * 1024)  # far more than a pipe holds: the write blocks
    try:

        async def main() -> tuple[list[str], int]:
            log: list[str] = []
            f = await open_file(w, "wb", buffering=0, closefd=False)
            scope = CancelScope()
            writing = Event()

            async def writer() -> None:
                with scope:
                    writing.set()
                    log.append(f"wrote {await f.write(data)}")
                    await yieldloop.checkpoint()
                    log.append("not reached")
                log.append(f"caught={scope.cancelled_caught}")

            def drain() -> int:
                total = 0
                while total < len(data):
                    total += len(os.read(r, 65536))
                return total

            async with TaskGroup() as tg:
                tg.spawn(writer)
                await writing.wait()
                scope.cancel()
                for _ in range(20):
                    await yieldloop.sleep(0)
                assert log == []  # the write is still blocked in its thread
                drained = await yieldloop.to_thread(drain)
            await f.aclose()
            return log, drained

        log, drained = run(main)
        assert log == [f"wrote {len(data)}", "caught=True"]
        assert drained == len(data)  # it was all written before Cancelled came
    finally:
        os.close(r)
        os.close(w)


def test_aclose_closes_even_when_cancelled(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "cancel-close.txt"

    async def main() -> tuple[bool, bool]:
        f = await open_file(path, "w")
        await f.write("flushed on close")
        with CancelScope() as scope:
            scope.cancel()
            await f.aclose()
            raise AssertionError("not reached: aclose raises Cancelled after closing")
        return scope.cancelled_caught, f.closed

    assert run(main) == (True, True)
    assert path.read_text() == "flushed on close"


def test_async_with_keeps_the_body_exception_in_a_cancelled_scope(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "body.txt"
    path.write_text("x")

    opened: list[AsyncFile[str]] = []

    async def main() -> None:
        f = await open_file(path)
        opened.append(f)
        with CancelScope() as scope:
            scope.cancel()
            async with f:
                raise KeyError("from the body")
        raise AssertionError("not reached")

    with pytest.raises(KeyError, match="from the body"):
        run(main)
    assert opened[0].closed


def test_async_with_in_a_cancelled_scope_closes_and_raises(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "cancelled.txt"
    path.write_text("x")
    opened: list[AsyncFile[str]] = []

    async def main() -> bool:
        f = await open_file(path)
        opened.append(f)
        with CancelScope() as scope:
            async with f:
                scope.cancel()
        return scope.cancelled_caught

    assert run(main) is True
    assert opened[0].closed


def test_already_cancelled_open_does_not_open(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "never.txt"

    async def main() -> bool:
        with CancelScope() as scope:
            scope.cancel()
            await open_file(path, "w")
        return scope.cancelled_caught

    assert run(main) is True
    assert not path.exists()


def test_cancelled_open_closes_the_file(tmp_path: pathlib.Path) -> None:
    # Opening a FIFO for reading blocks until a writer opens it: a real open
    # that is still running when the task is cancelled.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    async def main() -> tuple[bool, type[BaseException] | None]:
        scope = CancelScope()
        opening = Event()
        result: list[Any] = []

        async def opener() -> None:
            with scope:
                opening.set()
                result.append(await open_file(fifo, "rb"))

        async with TaskGroup() as tg:
            tg.spawn(opener)
            await opening.wait()
            scope.cancel()
            for _ in range(20):
                await yieldloop.sleep(0)
            # Open the writing end: the blocked open in the thread completes.
            wfd = await yieldloop.to_thread(os.open, fifo, os.O_WRONLY)
        try:
            # The reading end was closed again: writing now fails.
            error: type[BaseException] | None = None
            try:
                os.write(wfd, b"x")
            except BrokenPipeError as exc:
                error = type(exc)
        finally:
            os.close(wfd)
        assert result == []
        return scope.cancelled_caught, error

    assert run(main) == (True, BrokenPipeError)


def test_many_files_concurrently(tmp_path: pathlib.Path) -> None:
    async def one(i: int) -> None:
        path = tmp_path / f"f{i}.txt"
        async with await open_file(path, "w") as f:
            await f.write(f"file {i}\n" * 100)
        async with await open_file(path) as f:
            lines = [line async for line in f]
        assert lines == [f"file {i}\n"] * 100

    async def main() -> None:
        async with TaskGroup() as tg:
            for i in range(50):
                tg.spawn(one, i)

    run(main)
    assert len(list(tmp_path.iterdir())) == 50
