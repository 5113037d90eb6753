"""Async files: :func:`open_file`, :func:`wrap_file` and :class:`AsyncFile`.

Layer 4. Disk files are always "ready" for ``epoll``, so the only way not to
block the loop on a slow disk (or a network file system) is to do the I/O in
another thread. :class:`AsyncFile` wraps an ordinary file object; each of its
blocking methods (``read``, ``write``, ``seek``, ``flush``, ``aclose``...)
calls the file's method in a worker thread with :func:`~yieldloop.to_thread`,
and returns an awaitable that works with ``await`` and ``yield from``.
Attributes that never block (``name``, ``mode``, ``closed``, ``fileno()``...)
are read from the file directly.

Cancellation: once a thread is running an operation it cannot be stopped, so a
cancelled read or write waits for it to finish and returns its result (what
was read is not lost, and the file position matches what happened);
:class:`~yieldloop.Cancelled` comes at the task's next checkpoint. An
operation cancelled before its thread starts (while waiting for a
thread-limiter token) does nothing. :meth:`AsyncFile.aclose` closes the file
even when cancelled. :func:`open_file` cancelled while its thread opens the
file closes the file again and raises ``Cancelled``.

Like the file object it wraps, an ``AsyncFile`` is not meant for use by two
tasks at once: start one operation only after the previous one is done.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable, Generator, Iterable
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, AnyStr, Generic, cast, overload

from .._kernel._kernel import CHECKPOINT
from .._kernel._requests import Awaitable
from .._kernel._scope import CancelScope
from .._kernel._state import running_kernel
from .._sync._common import AsyncResource
from ._threads import to_thread

if TYPE_CHECKING:
    from _typeshed import OpenBinaryMode, OpenTextMode, ReadableBuffer, WriteableBuffer

__all__ = ["AsyncFile", "open_file", "wrap_file"]

_Opener = Callable[[str, int], int]


@types.coroutine
def _call(afile: AsyncFile[Any], name: str, args: tuple[Any, ...]) -> Generator[Any, Any, Any]:
    """Run the wrapped file's method ``name`` in a worker thread."""
    fn = afile._method(name)
    return (yield from to_thread(fn, *args))


@types.coroutine
def _close(afile: AsyncFile[Any], then_checkpoint: bool) -> Generator[Any, Any, None]:
    """Close the wrapped file in a worker thread, shielded from cancellation;
    then (if asked) a checkpoint, which raises Cancelled in a cancelled scope."""
    file = afile._file
    kernel = running_kernel()
    if kernel is not None:
        kernel.untrack_resource(afile)
    if not file.closed:
        with CancelScope(shield=True):
            yield from to_thread(file.close)
    if then_checkpoint:
        yield CHECKPOINT


class AsyncFile(AsyncResource, Generic[AnyStr]):
    """An open file whose blocking methods run in worker threads.

    Made by :func:`open_file` or :func:`wrap_file`. Every blocking method
    returns an awaitable (``await f.read()``, or ``yield from f.read()`` in a
    generator coroutine) with the same arguments and result as the method of
    the wrapped file; the attributes that do not block are plain attributes.
    ``async with f:`` closes the file, ``async for line in f:`` reads it line
    by line. The wrapped file object is :attr:`wrapped`.

    A method the wrapped file does not have (``read1`` on a text file) raises
    ``AttributeError``; any method of a closed file raises ``ValueError``,
    like a closed file object does.
    """

    __slots__ = ("__weakref__", "_file")

    def __init__(self, file: IO[AnyStr]) -> None:
        self._file: IO[AnyStr] = file

    # ---------------------------------------------------- attributes (no I/O)

    @property
    def wrapped(self) -> IO[AnyStr]:
        """The file object this wraps."""
        return self._file

    @property
    def name(self) -> Any:
        """The wrapped file's ``name`` (the path or file descriptor it was opened with)."""
        return self._file.name

    @property
    def mode(self) -> str:
        """The wrapped file's ``mode`` (``"r"``, ``"wb"``...)."""
        return self._file.mode

    @property
    def closed(self) -> bool:
        """True once the file is closed."""
        return self._file.closed

    @property
    def encoding(self) -> str:
        """The text encoding (text files only; ``AttributeError`` for a binary file)."""
        return cast(str, getattr(self._file, "encoding"))  # noqa: B009

    @property
    def errors(self) -> str | None:
        """The text encoding's error handler (text files only)."""
        return cast("str | None", getattr(self._file, "errors"))  # noqa: B009

    @property
    def newlines(self) -> Any:
        """The newlines seen so far when reading (text files only): ``None``, a
        string or a tuple of strings."""
        return getattr(self._file, "newlines")  # noqa: B009

    def fileno(self) -> int:
        """The file descriptor of the wrapped file."""
        return self._file.fileno()

    def readable(self) -> bool:
        """True if the file was opened for reading."""
        return self._file.readable()

    def writable(self) -> bool:
        """True if the file was opened for writing."""
        return self._file.writable()

    def seekable(self) -> bool:
        """True if the file supports :meth:`seek` and :meth:`tell`."""
        return self._file.seekable()

    def isatty(self) -> bool:
        """True if the file is a terminal."""
        return self._file.isatty()

    def __repr__(self) -> str:
        return f"<yieldloop.AsyncFile wrapping {self._file!r}>"

    # ----------------------------------------------------- blocking methods

    def _method(self, name: str) -> Callable[..., Any]:
        file = self._file
        try:
            fn: Callable[..., Any] = getattr(file, name)
        except AttributeError:
            raise AttributeError(
                f"{type(file).__name__} object has no {name}() method "
                f"(the wrapped file is {file!r})"
            ) from None
        if file.closed:
            raise ValueError(f"I/O operation on closed file: {name}() on {file!r}")
        return fn

    def _run(self, name: str, *args: Any) -> Awaitable[Any]:
        return cast("Awaitable[Any]", _call(self, name, args))

    def read(self, size: int | None = -1) -> Awaitable[AnyStr]:
        """Read up to ``size`` characters or bytes; all that is left if
        ``size`` is negative or None. Returns an empty string at the end of the
        file."""
        return self._run("read", size)

    def read1(self, size: int = -1) -> Awaitable[AnyStr]:
        """Read up to ``size`` bytes with at most one call to the raw file
        (binary buffered files only)."""
        return self._run("read1", size)

    def readline(self, size: int | None = -1) -> Awaitable[AnyStr]:
        """Read one line (at most ``size`` characters or bytes), with its line
        ending; an empty string at the end of the file."""
        return self._run("readline", size)

    def readlines(self, hint: int = -1) -> Awaitable[list[AnyStr]]:
        """Read the lines that are left (stopping once they total more than
        ``hint`` characters or bytes, if ``hint`` is positive)."""
        return self._run("readlines", hint)

    def readinto(self, buffer: WriteableBuffer) -> Awaitable[int]:
        """Read into ``buffer`` (a writable bytes-like object, binary files
        only); returns how many bytes were read, 0 at the end of the file."""
        return self._run("readinto", buffer)

    def write(self, data: AnyStr | ReadableBuffer) -> Awaitable[int]:
        """Write ``data`` (``str`` for a text file, a bytes-like object for a
        binary one); returns how many characters or bytes were written."""
        return self._run("write", data)

    def writelines(self, lines: Iterable[AnyStr]) -> Awaitable[None]:
        """Write each item of ``lines`` (no line endings are added). The
        iterable is consumed in the worker thread."""
        return self._run("writelines", lines)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> Awaitable[int]:
        """Move to ``offset`` (from ``whence``: ``os.SEEK_SET``, ``SEEK_CUR``
        or ``SEEK_END``); returns the new position."""
        return self._run("seek", offset, whence)

    def tell(self) -> Awaitable[int]:
        """The current position in the file."""
        return self._run("tell")

    def truncate(self, size: int | None = None) -> Awaitable[int]:
        """Resize the file to ``size`` bytes (default: the current position);
        returns the new size."""
        return self._run("truncate", size)

    def flush(self) -> Awaitable[None]:
        """Write out the file's buffer."""
        return self._run("flush")

    def aclose(self) -> Awaitable[None]:
        """Close the file (flushing it first), in a worker thread. Closing
        twice does nothing. The file is closed even if the task is cancelled;
        then this raises :class:`~yieldloop.Cancelled` after closing."""
        return cast("Awaitable[None]", _close(self, True))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the file. When the block raised, the file is closed and that
        exception propagates (a pending cancellation does not replace it)."""
        await cast("Awaitable[None]", _close(self, exc is None))

    # ------------------------------------------------------------- iteration

    def __aiter__(self) -> AsyncFile[AnyStr]:
        """``async for line in f:`` reads the file line by line."""
        return self

    async def __anext__(self) -> AnyStr:
        """The next line (read in a worker thread); ``StopAsyncIteration`` at
        the end of the file."""
        line: AnyStr = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line


def wrap_file(file: IO[AnyStr]) -> AsyncFile[AnyStr]:
    """Wrap an already open file object (anything with ``close()`` and
    ``read()`` or ``write()``, such as what :func:`open` returns, or an
    :class:`io.BytesIO`) in an :class:`AsyncFile`. Closing the ``AsyncFile``
    closes ``file``."""
    if isinstance(file, AsyncFile):
        raise TypeError(f"wrap_file() needs a plain file object, got an AsyncFile: {file!r}")
    if not callable(getattr(file, "close", None)) or not (
        callable(getattr(file, "read", None)) or callable(getattr(file, "write", None))
    ):
        raise TypeError(
            "wrap_file() needs a file object (with close() and read() or write()), "
            f"got {file!r} of type {type(file).__name__}"
        )
    return AsyncFile(file)


def _check_file_arg(file: object) -> None:
    if isinstance(file, bool) or not isinstance(file, str | bytes | int | os.PathLike):
        raise TypeError(
            "open_file() needs a path (str, bytes or os.PathLike) or a file descriptor "
            f"(int), got {file!r} of type {type(file).__name__}"
        )


@types.coroutine
def _open_file(
    file: Any,
    mode: str,
    buffering: int,
    encoding: str | None,
    errors: str | None,
    newline: str | None,
    closefd: bool,
    opener: _Opener | None,
) -> Generator[Any, Any, AsyncFile[Any]]:
    _check_file_arg(file)
    if not isinstance(mode, str):
        raise TypeError(f"open_file() needs mode to be a str, got {mode!r}")
    opened: list[IO[Any]] = []

    def do_open() -> IO[Any]:
        f = open(file, mode, buffering, encoding, errors, newline, closefd, opener)  # noqa: SIM115
        opened.append(f)
        return f

    try:
        f = yield from to_thread(do_open)
        # Cancelled while the thread opened the file? Then this raises, and
        # the file nobody will get is closed again.
        yield CHECKPOINT
    except BaseException:
        for leftover in opened:
            leftover.close()
        raise
    afile = AsyncFile(f)
    kernel = running_kernel()
    if kernel is not None:
        kernel.track_resource(afile, "a file")
    return afile


@overload
def open_file(
    file: str | bytes | os.PathLike[str] | os.PathLike[bytes] | int,
    mode: OpenTextMode = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: _Opener | None = None,
) -> Awaitable[AsyncFile[str]]: ...


@overload
def open_file(
    file: str | bytes | os.PathLike[str] | os.PathLike[bytes] | int,
    mode: OpenBinaryMode,
    buffering: int = -1,
    encoding: None = None,
    errors: None = None,
    newline: None = None,
    closefd: bool = True,
    opener: _Opener | None = None,
) -> Awaitable[AsyncFile[bytes]]: ...


@overload
def open_file(
    file: str | bytes | os.PathLike[str] | os.PathLike[bytes] | int,
    mode: str,
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: _Opener | None = None,
) -> Awaitable[AsyncFile[Any]]: ...


def open_file(
    file: str | bytes | os.PathLike[str] | os.PathLike[bytes] | int,
    mode: str = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: _Opener | None = None,
) -> Awaitable[AsyncFile[Any]]:
    """Open a file like :func:`open` does, in a worker thread, and return an
    :class:`AsyncFile` (awaitable)::

        async with await open_file(path, "w") as f:
            await f.write("hello\\n")

    ``file`` is a path (``str``, ``bytes`` or ``os.PathLike``) or a file
    descriptor; the other arguments are those of :func:`open`. Raises what
    ``open`` raises (``FileNotFoundError``, ``PermissionError``, ``ValueError``
    for a bad mode...) and ``TypeError`` for a ``file`` of another type. If
    the task is cancelled while the thread opens the file, the file is closed
    and :class:`~yieldloop.Cancelled` is raised.
    """
    return cast(
        "Awaitable[AsyncFile[Any]]",
        _open_file(file, mode, buffering, encoding, errors, newline, closefd, opener),
    )
