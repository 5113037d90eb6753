"""yieldloop.run(): what it accepts, what it returns and raises, the tutorial
programs, the on_emit hook, bad requests, Ctrl-C, SystemExit, contextvars and
async generator finalization."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import inspect
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import warnings
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import yieldloop
from yieldloop import (
    Cancelled,
    CancelScope,
    Clock,
    RunFinishedError,
    TaskGroup,
    current_task,
    current_time,
    gather,
    move_on_after,
    sleep,
)
from yieldloop.lowlevel import KNOWN_REQUESTS
from yieldloop.testing import VirtualClock


def vrun(main: Any, *args: Any, **kwargs: Any) -> Any:
    return yieldloop.run(main, *args, clock=VirtualClock(), **kwargs)


@contextmanager
def no_unawaited_warnings() -> Iterator[None]:
    """Fail if a coroutine created inside the block is finalized without
    being closed ("coroutine ... was never awaited")."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    bad = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert bad == []


def is_closed(obj: Any) -> bool:
    if inspect.iscoroutine(obj):
        return inspect.getcoroutinestate(obj) == inspect.CORO_CLOSED
    return inspect.getgeneratorstate(obj) == inspect.GEN_CLOSED


# ================================================================ tutorial


def get_page(name: str) -> Generator[Any, Any, str]:
    print(f"{name}: downloading page")
    yield ("sleep", 1)
    print(f"{name}: page downloaded")
    return f"<html>{name}</html>"


def save_to_db(name: str) -> Generator[Any, Any, str]:
    print(f"{name}: connecting to db")
    yield ("sleep", 0.5)
    print(f"{name}: connected to db")
    print(f"{name}: writing page to db")
    yield ("sleep", 1)
    print(f"{name}: page written")
    return f"saved {name}"


def worker(name: str) -> Generator[Any, Any, tuple[str, str]]:
    page = yield from get_page(name)
    data = yield from save_to_db(name)
    print(f"{name}: got {page} and {data}")
    return page, data


async def get_page_async(name: str) -> str:
    print(f"{name}: downloading page")
    await sleep(1)
    print(f"{name}: page downloaded")
    return f"<html>{name}</html>"


async def save_to_db_async(name: str) -> str:
    print(f"{name}: connecting to db")
    await sleep(0.5)
    print(f"{name}: connected to db")
    print(f"{name}: writing page to db")
    await sleep(1)
    print(f"{name}: page written")
    return f"saved {name}"


async def worker_async(name: str) -> tuple[str, str]:
    page = await get_page_async(name)
    data = await save_to_db_async(name)
    print(f"{name}: got {page} and {data}")
    return page, data


NAMES = ("A", "B", "C")

# The lesson's workers: download a page (1 s), connect to a database (0.5 s),
# write the page to it (1 s). Each takes 2.5 s; run together all finish at 2.5.
CONCURRENT_LINES = (
    [f"{n}: downloading page" for n in NAMES]
    + [line for n in NAMES for line in (f"{n}: page downloaded", f"{n}: connecting to db")]
    + [line for n in NAMES for line in (f"{n}: connected to db", f"{n}: writing page to db")]
    + [
        line
        for n in NAMES
        for line in (f"{n}: page written", f"{n}: got <html>{n}</html> and saved {n}")
    ]
)

SEQUENTIAL_LINES = [
    line
    for n in NAMES
    for line in (
        f"{n}: downloading page",
        f"{n}: page downloaded",
        f"{n}: connecting to db",
        f"{n}: connected to db",
        f"{n}: writing page to db",
        f"{n}: page written",
        f"{n}: got <html>{n}</html> and saved {n}",
    )
]

EXPECTED_RESULTS = [(f"<html>{n}</html>", f"saved {n}") for n in NAMES]


def printed_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_tutorial_generators_gathered_take_the_longest_worker_not_the_sum(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def main() -> Generator[Any, Any, Any]:
        results = yield from gather(*(worker(n) for n in NAMES))
        now = yield ("current_time",)
        print(f"total: {now}")
        return results

    assert vrun(main) == EXPECTED_RESULTS
    assert printed_lines(capsys) == [*CONCURRENT_LINES, "total: 2.5"]


def test_tutorial_gather_passed_straight_to_run(capsys: pytest.CaptureFixture[str]) -> None:
    clock = VirtualClock()
    assert yieldloop.run(gather(*(worker(n) for n in NAMES)), clock=clock) == EXPECTED_RESULTS
    assert clock.current_time() == 2.5
    assert printed_lines(capsys) == CONCURRENT_LINES


def test_tutorial_generators_one_after_another_take_the_sum(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def main() -> Generator[Any, Any, Any]:
        results = []
        for n in NAMES:
            results.append((yield from worker(n)))
        print(f"total: {(yield ('current_time',))}")
        return results

    assert vrun(main) == EXPECTED_RESULTS
    assert printed_lines(capsys) == [*SEQUENTIAL_LINES, "total: 7.5"]


def test_tutorial_async_workers_gathered(capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> Any:
        results = await gather(*(worker_async(n) for n in NAMES))
        print(f"total: {current_time()}")
        return results

    assert vrun(main) == EXPECTED_RESULTS
    assert printed_lines(capsys) == [*CONCURRENT_LINES, "total: 2.5"]


def test_tutorial_async_workers_in_a_task_group(capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> Any:
        async with TaskGroup() as tg:
            tasks = [tg.spawn(worker_async, n) for n in NAMES]
        print(f"total: {current_time()}")
        return [t.result() for t in tasks]

    assert vrun(main) == EXPECTED_RESULTS
    assert printed_lines(capsys) == [*CONCURRENT_LINES, "total: 2.5"]


def test_tutorial_generator_and_async_workers_mixed(capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> Any:
        return await gather(worker("A"), worker_async("B"), worker("C"))

    assert vrun(main) == EXPECTED_RESULTS
    assert printed_lines(capsys) == CONCURRENT_LINES


def test_tutorial_on_the_real_clock_runs_concurrently() -> None:
    unit = 0.1

    def short_worker(i: int) -> Generator[Any, Any, int]:
        yield ("sleep", unit)
        yield ("sleep", unit / 2)
        yield ("sleep", unit)
        return i

    n = 4
    per_worker = 2.5 * unit
    t0 = time.monotonic()
    assert yieldloop.run(gather(*(short_worker(i) for i in range(n)))) == list(range(n))
    elapsed = time.monotonic() - t0
    assert elapsed >= per_worker - 0.001
    assert elapsed < n * per_worker  # well under the sum of every sleep (1.0 s)


def test_emitted_values_go_to_on_emit_and_the_generator_gets_none(
    capsys: pytest.CaptureFixture[str],
) -> None:
    received = []

    def numbers(tag: str) -> Generator[Any, Any, str]:
        for value in (1, "two", 3.0):
            received.append((tag, (yield value)))
        return tag

    def main() -> Generator[Any, Any, Any]:
        return (yield from gather(numbers("x"), numbers("y")))

    result = yieldloop.run(main, on_emit=lambda v: print(f"Got: {v!r}"))
    assert result == ["x", "y"]
    assert printed_lines(capsys) == [
        "Got: 1",
        "Got: 1",
        "Got: 'two'",
        "Got: 'two'",
        "Got: 3.0",
        "Got: 3.0",
    ]
    assert received == [(tag, None) for _ in range(3) for tag in "xy"]


def test_on_emit_does_not_swallow_real_requests_or_checkpoints() -> None:
    emitted: list[Any] = []

    def gen() -> Generator[Any, Any, Any]:
        yield ("sleep", 2)
        yield None
        yield ("not-a-request", 1)
        yield 7
        now = yield ("current_time",)
        return now

    assert vrun(gen, on_emit=emitted.append) == 2.0
    assert emitted == [("not-a-request", 1), 7]


def test_on_emit_error_is_raised_in_the_emitting_task() -> None:
    def on_emit(value: Any) -> None:
        raise LookupError(f"cannot take {value!r}")

    def gen() -> Generator[Any, Any, Any]:
        try:
            yield "hello"
        except LookupError as exc:
            return str(exc)
        return "not raised"

    assert yieldloop.run(gen, on_emit=on_emit) == "cannot take 'hello'"


def test_on_emit_must_be_callable() -> None:
    def gen() -> Generator[Any, Any, None]:
        yield 1

    g = gen()
    with pytest.raises(TypeError, match="on_emit"):
        yieldloop.run(g, on_emit=42)  # type: ignore[arg-type]
    assert is_closed(g)


# ========================================================= what run accepts


async def add(a: int, b: int) -> int:
    await sleep(1)
    return a + b


def gen_add(a: int, b: int) -> Generator[Any, Any, int]:
    yield ("sleep", 1)
    return a + b


class CustomAwaitable:
    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, Any, Any]:
        yield ("sleep", 1)
        return self.value


@pytest.mark.parametrize(
    ("make_main", "args"),
    [
        pytest.param(lambda: add, (2, 3), id="async-function-with-args"),
        pytest.param(lambda: add(2, 3), (), id="coroutine-object"),
        pytest.param(lambda: gen_add, (2, 3), id="generator-function-with-args"),
        pytest.param(lambda: gen_add(2, 3), (), id="generator-object"),
        pytest.param(lambda: CustomAwaitable(5), (), id="custom-awaitable"),
    ],
)
def test_run_accepts(make_main: Any, args: tuple[Any, ...]) -> None:
    clock = VirtualClock()
    assert yieldloop.run(make_main(), *args, clock=clock) == 5
    assert clock.current_time() == 1.0


class Adder:
    async def method(self, a: int, b: int) -> int:
        await sleep(1)
        return a + b

    def __call__(self, a: int, b: int) -> Any:
        return self.method(a, b)


@pytest.mark.parametrize(
    "make_main",
    [
        pytest.param(lambda: Adder().method, id="bound-method"),
        pytest.param(lambda: functools.partial(add, 2), id="partial"),
        pytest.param(lambda: Adder(), id="callable-object"),
        pytest.param(lambda: lambda a, b: add(a, b), id="lambda-returning-coroutine"),
    ],
)
def test_run_accepts_other_callables_returning_coroutines(make_main: Any) -> None:
    main = make_main()
    args = (3,) if isinstance(main, functools.partial) else (2, 3)
    clock = VirtualClock()
    assert yieldloop.run(main, *args, clock=clock) == 5
    assert clock.current_time() == 1.0


def test_run_rejects_an_async_generator_function() -> None:
    async def agen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="async_generator"):
        yieldloop.run(agen)


def test_run_accepts_gather_and_returns_results_in_order() -> None:
    clock = VirtualClock()
    result = yieldloop.run(gather(add(1, 1), gen_add(2, 2), CustomAwaitable(9)), clock=clock)
    assert result == [2, 4, 9]
    assert clock.current_time() == 1.0


def test_run_returns_none_and_any_object_unchanged() -> None:
    sentinel = object()

    async def nothing() -> None:
        pass

    async def obj() -> object:
        return sentinel

    assert yieldloop.run(nothing) is None
    assert yieldloop.run(obj) is sentinel


def test_run_raises_the_same_exception_object_with_the_user_frame() -> None:
    raised = []

    async def failing_main_function() -> None:
        await sleep(0)
        err = KeyError("boom")
        raised.append(err)
        raise err

    with pytest.raises(KeyError) as excinfo:
        yieldloop.run(failing_main_function)
    assert excinfo.value is raised[0]
    names = [frame.name for frame in traceback.extract_tb(excinfo.value.__traceback__)]
    assert "failing_main_function" in names
    assert names[-1] == "failing_main_function"


def test_run_raises_from_a_generator_main_with_its_frame() -> None:
    def failing_generator_main() -> Generator[Any, Any, None]:
        yield ("sleep", 0)
        raise ZeroDivisionError("nope")

    with pytest.raises(ZeroDivisionError, match="nope") as excinfo:
        yieldloop.run(failing_generator_main)
    names = [frame.name for frame in traceback.extract_tb(excinfo.value.__traceback__)]
    assert names[-1] == "failing_generator_main"


def test_run_raises_an_exception_group_from_a_failing_group() -> None:
    async def fail(exc: Exception) -> None:
        await sleep(1)
        raise exc

    errors = [ValueError("a"), TypeError("b")]

    async def main() -> None:
        async with TaskGroup() as tg:
            for e in errors:
                tg.spawn(fail, e)

    with pytest.raises(ExceptionGroup) as excinfo:
        vrun(main)
    assert list(excinfo.value.exceptions) == errors


def regular_function(x: int = 0) -> int:
    return x + 1


@pytest.mark.parametrize(
    ("main", "args", "pattern"),
    [
        pytest.param(42, (), "42", id="int"),
        pytest.param("main", (), "main", id="str"),
        pytest.param(None, (), "None", id="none"),
        pytest.param(regular_function, (), "regular function", id="regular-function"),
        pytest.param(regular_function, (3,), "returned 4", id="regular-function-args"),
        pytest.param(lambda: 5, (), "returned 5", id="lambda"),
        pytest.param(42, (1,), "42", id="int-with-args"),
    ],
)
def test_run_rejects_what_is_not_a_coroutine(main: Any, args: Any, pattern: str) -> None:
    with no_unawaited_warnings(), pytest.raises(TypeError, match=pattern):
        yieldloop.run(main, *args)


def test_run_rejects_arguments_with_a_coroutine_object_and_closes_it() -> None:
    with no_unawaited_warnings():
        coro = add(1, 2)
        with pytest.raises(TypeError, match=r"already a coroutine.*run\(fn, \*args\)"):
            yieldloop.run(coro, 1)
        assert is_closed(coro)
        del coro


def test_run_rejects_arguments_with_a_generator_object_and_closes_it() -> None:
    gen = gen_add(1, 2)
    with pytest.raises(TypeError, match="already a coroutine"):
        yieldloop.run(gen, 1)
    assert is_closed(gen)


def test_run_rejects_arguments_with_an_awaitable_object() -> None:
    with pytest.raises(TypeError, match="not callable"):
        yieldloop.run(CustomAwaitable(1), 2)


def test_run_inside_run_is_refused_and_the_inner_coroutine_closed() -> None:
    inner_coros = []

    async def inner() -> int:
        return 1

    async def main() -> str:
        coro = inner()
        inner_coros.append(coro)
        with pytest.raises(RuntimeError, match="already active") as excinfo:
            yieldloop.run(coro)
        # the outer run goes on normally
        await sleep(1)
        return str(excinfo.value)

    with no_unawaited_warnings():
        message = vrun(main)
        assert is_closed(inner_coros[0])
        inner_coros.clear()
    assert "await" in message


def test_run_inside_run_with_a_function_is_refused_too() -> None:
    async def inner() -> int:
        return 1

    async def main() -> None:
        with pytest.raises(RuntimeError, match="already active"):
            yieldloop.run(inner)
        with pytest.raises(RuntimeError, match="already active"):
            yieldloop.run(inner, clock=VirtualClock())

    with no_unawaited_warnings():
        yieldloop.run(main)


def test_run_works_again_after_a_failed_run() -> None:
    async def fail() -> None:
        raise ValueError

    with pytest.raises(ValueError):
        yieldloop.run(fail)
    assert yieldloop.run(add, 1, 2, clock=VirtualClock()) == 3


def test_runs_in_two_threads_at_once_are_independent() -> None:
    results: dict[str, Any] = {}

    def thread_main(name: str) -> None:
        async def main() -> str:
            await sleep(0.05)
            return name

        results[name] = yieldloop.run(main)

    threads = [threading.Thread(target=thread_main, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {"a": "a", "b": "b"}


# ================================================================== clocks


@pytest.mark.parametrize(
    "bad_clock",
    [
        pytest.param("virtual", id="str"),
        pytest.param(time.monotonic, id="function"),
        pytest.param(VirtualClock, id="class-not-instance"),
        pytest.param(0, id="int"),
    ],
)
def test_clock_of_the_wrong_type(bad_clock: Any) -> None:
    with no_unawaited_warnings():
        with pytest.raises(TypeError, match="clock"):
            yieldloop.run(add, 1, 2, clock=bad_clock)
        coro = add(1, 2)
        with pytest.raises(TypeError, match="clock"):
            yieldloop.run(coro, clock=bad_clock)
        assert is_closed(coro)
        del coro


class JumpingClock(Clock):
    """A clock of our own: starts at 100 and jumps straight to the next
    deadline whenever the program is idle."""

    def __init__(self) -> None:
        self.now = 100.0
        self.started = 0
        self.idle_calls: list[float] = []

    def start_clock(self) -> None:
        self.started += 1

    def current_time(self) -> float:
        return self.now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return 0.0

    def idle(self, deadline: float) -> None:
        self.idle_calls.append(deadline)
        if deadline != math.inf:
            self.now = max(self.now, deadline)


def test_custom_clock_subclass() -> None:
    clock = JumpingClock()
    seen = []

    async def main() -> None:
        seen.append(current_time())
        await sleep(3)
        seen.append(current_time())
        with move_on_after(2) as scope:
            await sleep(10)
        assert scope.cancelled_caught
        seen.append(current_time())

    yieldloop.run(main, clock=clock)
    assert seen == [100.0, 103.0, 105.0]
    assert clock.started == 1
    assert clock.idle_calls == [103.0, 105.0]


def test_monotonic_clock_instance_is_accepted() -> None:
    async def main() -> float:
        return current_time()

    t = yieldloop.run(main, clock=yieldloop.MonotonicClock())
    assert abs(t - time.monotonic()) < 5


def test_virtual_clock_time_is_exact() -> None:
    async def main() -> list[float]:
        out = []
        for step in (0.1, 0.2, 0.3):
            await sleep(step)
            out.append(current_time())
        return out

    assert vrun(main) == [0.1, 0.1 + 0.2, 0.1 + 0.2 + 0.3]


# ============================================================ bad requests


def test_yielding_a_plain_value_without_on_emit_raises_in_that_task() -> None:
    def producer_of_values() -> Generator[Any, Any, None]:
        yield 42

    with pytest.raises(TypeError) as excinfo:
        yieldloop.run(producer_of_values)
    message = str(excinfo.value)
    assert "42" in message
    assert "producer_of_values" in message
    for name in KNOWN_REQUESTS:
        assert name in message


def test_a_task_can_catch_its_bad_request_error_and_continue() -> None:
    def gen() -> Generator[Any, Any, str]:
        try:
            yield "just a string"
        except TypeError as exc:
            assert "'just a string'" in str(exc)
        yield ("sleep", 1)
        return "recovered"

    clock = VirtualClock()
    assert yieldloop.run(gen, clock=clock) == "recovered"
    assert clock.current_time() == 1.0


def test_bad_request_names_the_task_that_made_it() -> None:
    def bad() -> Generator[Any, Any, None]:
        yield 42

    async def main() -> None:
        async with TaskGroup() as tg:
            tg.spawn(sleep, 1)
            tg.spawn(bad, name="the-bad-one")

    with pytest.raises(ExceptionGroup) as excinfo:
        vrun(main)
    (err,) = excinfo.value.exceptions
    assert isinstance(err, TypeError)
    assert "'the-bad-one'" in str(err)


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(("frobnicate", 1), id="tuple"),
        pytest.param(("frobnicate",), id="tuple-1"),
    ],
)
def test_unknown_request_is_named(request_: Any) -> None:
    def gen() -> Generator[Any, Any, None]:
        yield request_

    with pytest.raises(TypeError, match="unknown request 'frobnicate'"):
        yieldloop.run(gen)


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param((), id="empty-tuple"),
        pytest.param(("",), id="empty-name"),
        pytest.param(([1],), id="unhashable-name"),
        pytest.param({"sleep": 1}, id="dict"),
        pytest.param(object(), id="object"),
        pytest.param(b"sleep", id="bytes"),
    ],
)
def test_odd_yielded_values_give_a_type_error_in_the_task(request_: Any) -> None:
    def gen() -> Generator[Any, Any, str]:
        try:
            yield request_
        except TypeError as exc:
            return str(exc)
        return "no error"

    message = yieldloop.run(gen)
    assert "not a yieldloop request" in message
    assert repr(request_) in message


async def await_it(awaitable: Any) -> Any:
    # (a neutral name: the task name appears in the error message)
    return await awaitable


def test_awaiting_an_asyncio_future_is_a_type_error_mentioning_asyncio() -> None:
    loop = asyncio.new_event_loop()
    try:
        fut = loop.create_future()
        with pytest.raises(TypeError) as excinfo:
            yieldloop.run(await_it, fut)
        assert "'await_it'" in str(excinfo.value)
        assert "asyncio" in str(excinfo.value)
    finally:
        loop.close()


def test_awaiting_asyncio_sleep_gives_an_error_mentioning_asyncio() -> None:
    with no_unawaited_warnings():
        with pytest.raises((TypeError, RuntimeError)) as excinfo:
            yieldloop.run(await_it, asyncio.sleep(1))
        text = "\n".join([str(excinfo.value), *getattr(excinfo.value, "__notes__", [])])
        assert "asyncio" in text


@pytest.mark.parametrize(
    ("request_", "exc_type", "pattern"),
    [
        pytest.param(("sleep", "x"), TypeError, "'x'", id="sleep-str"),
        pytest.param(("sleep", None), TypeError, "None", id="sleep-none"),
        pytest.param(("sleep", True), TypeError, "True", id="sleep-bool"),
        pytest.param(("sleep", math.nan), ValueError, "NaN", id="sleep-nan"),
        pytest.param(("sleep",), TypeError, "sleep", id="sleep-no-arg"),
        pytest.param(("sleep_until", "x"), TypeError, "'x'", id="sleep-until-str"),
        pytest.param(("sleep_until", math.nan), ValueError, "NaN", id="sleep-until-nan"),
        pytest.param(("park",), TypeError, "abort", id="park-no-arg"),
        pytest.param(("park", 5), TypeError, "5", id="park-int"),
        pytest.param(("spawn",), TypeError, "spawn", id="spawn-no-arg"),
        pytest.param(("spawn", 5), TypeError, "5", id="spawn-int"),
    ],
)
def test_bad_arguments_to_known_requests_raise_at_the_yield(
    request_: Any, exc_type: type[Exception], pattern: str
) -> None:
    def gen() -> Generator[Any, Any, Any]:
        try:
            yield request_
        except exc_type as exc:
            caught = exc
        else:
            raise AssertionError("no error raised at the yield")
        yield ("sleep", 1)  # the task goes on normally afterwards
        now = yield ("current_time",)
        return caught, now

    caught, now = vrun(gen)
    assert type(caught) is exc_type
    assert pattern in str(caught)
    assert now == 1.0


def test_bad_request_error_not_caught_ends_the_run_with_it() -> None:
    def gen() -> Generator[Any, Any, None]:
        yield ("sleep", "soon")

    with pytest.raises(TypeError, match="'soon'"):
        yieldloop.run(gen)


def test_negative_and_infinite_sleeps() -> None:
    async def main() -> list[float]:
        out = []
        await sleep(-5)
        out.append(current_time())
        with move_on_after(3) as scope:
            await sleep(math.inf)
        assert scope.cancelled_caught
        out.append(current_time())
        return out

    assert vrun(main) == [0.0, 3.0]


# ===================================================== generator coroutines


def test_bare_yield_lets_other_tasks_run() -> None:
    order = []

    def ping(name: str) -> Generator[Any, Any, None]:
        for i in range(3):
            order.append(f"{name}{i}")
            yield

    vrun(gather(ping("a"), ping("b")))
    assert order == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_bare_yield_delivers_cancellation() -> None:
    steps = []

    def gen() -> Generator[Any, Any, Any]:
        with CancelScope() as scope:
            scope.cancel()
            steps.append("before")
            yield
            steps.append("after yield")  # not reached
        return scope.cancelled_caught

    assert yieldloop.run(gen) is True
    assert steps == ["before"]


def test_bare_yield_in_a_task_cancelled_by_a_deadline() -> None:
    def spinner() -> Generator[Any, Any, Any]:
        n = 0
        with move_on_after(1) as scope:
            while True:
                n += 1
                yield
                if n == 3:
                    yield ("sleep", 5)
        return scope.cancelled_caught, n, (yield ("current_time",))

    assert vrun(spinner) == (True, 3, 1.0)


def test_reschedule_request_is_not_a_cancel_point() -> None:
    def gen() -> Generator[Any, Any, list[str]]:
        log = []
        with CancelScope() as scope:
            scope.cancel()
            yield ("reschedule",)
            log.append("rescheduled")
            yield ("checkpoint",)
            log.append("not reached")
        log.append(f"caught={scope.cancelled_caught}")
        return log

    assert yieldloop.run(gen) == ["rescheduled", "caught=True"]


def test_coroutine_decorator_makes_a_generator_awaitable() -> None:
    @yieldloop.coroutine
    def fetch(x: int) -> Generator[Any, Any, int]:
        yield ("sleep", 1)
        return x * 2

    async def from_async() -> int:
        return await fetch(4)

    def from_generator() -> Generator[Any, Any, int]:
        return (yield from fetch(5))

    assert vrun(from_async) == 8
    assert vrun(from_generator) == 10
    assert fetch.__name__ == "fetch"


def test_coroutine_decorator_on_async_def_and_bad_input() -> None:
    async def already() -> int:
        return 1

    assert yieldloop.coroutine(already) is already
    with pytest.raises(TypeError, match="function"):
        yieldloop.coroutine(42)  # type: ignore[type-var]


def test_public_awaitables_work_with_yield_from() -> None:
    def gen() -> Generator[Any, Any, Any]:
        yield from sleep(1)
        yield from yieldloop.sleep_until(3)
        yield from yieldloop.checkpoint()
        task = yield ("current_task",)
        return (yield ("current_time",)), task

    clock = VirtualClock()
    now, task = yieldloop.run(gen, clock=clock)
    assert now == 3.0
    assert isinstance(task, yieldloop.Task)
    assert task.done()


# ================================================================== Ctrl-C


def run_script(source: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )


def test_ctrl_c_from_a_task_runs_every_finally_and_exits_with_keyboard_interrupt() -> None:
    proc = run_script(
        """
        import signal
        import yieldloop

        async def sleeper(i):
            try:
                await yieldloop.sleep(1000)
            finally:
                print(f"finally {i}", flush=True)

        async def main():
            try:
                async with yieldloop.TaskGroup() as tg:
                    for i in range(3):
                        tg.spawn(sleeper, i)
                    await yieldloop.sleep(0.05)
                    signal.raise_signal(signal.SIGINT)
                    await yieldloop.sleep(1000)
            finally:
                print("finally main", flush=True)

        yieldloop.run(main)
        print("not reached")
        """
    )
    assert sorted(proc.stdout.splitlines()) == [
        "finally 0",
        "finally 1",
        "finally 2",
        "finally main",
    ]
    assert "Traceback" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1] == "KeyboardInterrupt"
    assert proc.returncode in (-signal.SIGINT, 128 + signal.SIGINT)


def test_ctrl_c_from_another_thread_wakes_a_long_sleep() -> None:
    proc = run_script(
        """
        import os, signal, threading, time
        import yieldloop

        def interrupt():
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGINT)

        async def main():
            threading.Thread(target=interrupt, daemon=True).start()
            try:
                await yieldloop.sleep(600)
            finally:
                print("finally", flush=True)

        t0 = time.monotonic()
        try:
            yieldloop.run(main)
        except KeyboardInterrupt:
            print(f"elapsed {time.monotonic() - t0:.3f}", flush=True)
            raise
        """
    )
    lines = proc.stdout.splitlines()
    assert lines[0] == "finally"
    assert lines[1].startswith("elapsed ")
    assert float(lines[1].split()[1]) < 10
    assert proc.stderr.rstrip().splitlines()[-1] == "KeyboardInterrupt"
    assert proc.returncode in (-signal.SIGINT, 128 + signal.SIGINT)


def test_second_ctrl_c_stops_a_cleanup_that_takes_too_long() -> None:
    proc = run_script(
        """
        import os, signal, threading, time
        import yieldloop

        def interrupt_twice():
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGINT)

        async def main():
            threading.Thread(target=interrupt_twice, daemon=True).start()
            try:
                try:
                    await yieldloop.sleep(600)
                finally:
                    print("cleanup starts", flush=True)
                    with yieldloop.CancelScope(shield=True):
                        await yieldloop.sleep(600)
                    print("cleanup finished", flush=True)
            finally:
                print("outer finally", flush=True)

        t0 = time.monotonic()
        try:
            yieldloop.run(main)
        except KeyboardInterrupt:
            print(f"elapsed {time.monotonic() - t0:.3f}", flush=True)
            raise
        """
    )
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["cleanup starts", "outer finally"]
    assert float(lines[2].split()[1]) < 10
    assert proc.stderr.rstrip().splitlines()[-1] == "KeyboardInterrupt"
    assert proc.returncode in (-signal.SIGINT, 128 + signal.SIGINT)


def test_ctrl_c_in_process_cancels_everything_and_restores_the_handler() -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finished = []

    async def sleeper(i: int) -> None:
        try:
            await sleep(1000)
        finally:
            finished.append(i)

    async def main() -> None:
        try:
            async with TaskGroup() as tg:
                for i in range(3):
                    tg.spawn(sleeper, i)
                await sleep(1)
                signal.raise_signal(signal.SIGINT)
                await sleep(1000)
        finally:
            finished.append("main")

    with pytest.raises(KeyboardInterrupt):
        vrun(main)
    assert sorted(map(str, finished)) == ["0", "1", "2", "main"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_cleanup_can_await_in_a_shielded_scope() -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    log = []

    async def main() -> None:
        try:
            signal.raise_signal(signal.SIGINT)
            await sleep(10)
        except Cancelled:
            with CancelScope(shield=True):
                await sleep(2)
                log.append(current_time())
            raise

    with pytest.raises(KeyboardInterrupt):
        vrun(main)
    assert log == [2.0]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_handler_is_restored_after_a_normal_and_a_failing_run() -> None:
    async def ok() -> None:
        await sleep(0)

    async def fail() -> None:
        raise ValueError

    yieldloop.run(ok)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(ValueError):
        yieldloop.run(fail)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_custom_sigint_handler_is_left_alone() -> None:
    got = []

    def handler(signum: int, frame: Any) -> None:
        got.append(signum)

    old = signal.signal(signal.SIGINT, handler)
    try:

        async def main() -> float:
            signal.raise_signal(signal.SIGINT)
            await sleep(1)
            return current_time()

        assert vrun(main) == 1.0
        assert got == [signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        signal.signal(signal.SIGINT, old)


def test_keyboard_interrupt_raised_in_a_task_cancels_the_rest() -> None:
    finished = []

    async def sleeper() -> None:
        try:
            await sleep(100)
        finally:
            finished.append(current_time())

    async def interrupter() -> None:
        await sleep(1)
        raise KeyboardInterrupt

    async def main() -> None:
        async with TaskGroup() as tg:
            tg.spawn(sleeper)
            tg.spawn(interrupter)
            tg.spawn(sleeper)

    with pytest.raises(KeyboardInterrupt):
        vrun(main)
    assert finished == [1.0, 1.0]


# =============================================================== SystemExit


def test_system_exit_in_a_child_cancels_siblings_and_ends_the_run() -> None:
    log = []

    async def sibling(i: int) -> None:
        try:
            await sleep(100)
        finally:
            log.append((f"sibling {i}", current_time()))

    async def exiter() -> None:
        await sleep(2)
        raise SystemExit(3)

    async def main() -> None:
        try:
            async with TaskGroup() as tg:
                tg.spawn(sibling, 0)
                tg.spawn(exiter)
                tg.spawn(sibling, 1)
        finally:
            log.append(("main", current_time()))

    with pytest.raises(SystemExit) as excinfo:
        vrun(main)
    assert excinfo.value.code == 3
    assert log == [("sibling 0", 2.0), ("sibling 1", 2.0), ("main", 2.0)]


def test_system_exit_in_a_task_spawned_beside_main() -> None:
    log = []

    def exiter() -> Generator[Any, Any, None]:
        yield ("sleep", 1)
        raise SystemExit("bye")

    def main() -> Generator[Any, Any, None]:
        yield ("spawn", exiter)
        try:
            yield ("sleep", 100)
        finally:
            log.append(("main finally", (yield ("current_time",))))

    with pytest.raises(SystemExit, match="bye"):
        vrun(main)
    assert log == [("main finally", 1.0)]


# =============================================================== contextvars


VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


def test_each_task_runs_in_a_copy_of_its_spawners_context() -> None:
    seen = {}

    async def child(name: str) -> None:
        seen[f"{name} start"] = VAR.get()
        VAR.set(f"set by {name}")
        await sleep(1)
        seen[f"{name} end"] = VAR.get()

    async def main() -> None:
        VAR.set("main 1")
        async with TaskGroup() as tg:
            tg.spawn(child, "a")
            VAR.set("main 2")
            tg.spawn(child, "b")
            await sleep(0.5)
            seen["main during"] = VAR.get()
        seen["main after"] = VAR.get()

    token = VAR.set("outside")
    try:
        vrun(main)
        assert VAR.get() == "outside"
    finally:
        VAR.reset(token)
    assert seen == {
        "a start": "main 1",
        "b start": "main 2",
        "main during": "main 2",
        "a end": "set by a",
        "b end": "set by b",
        "main after": "main 2",
    }


def test_main_task_sees_the_callers_context_but_cannot_change_it() -> None:
    async def main() -> str:
        value = VAR.get()
        VAR.set("changed inside")
        return value

    token = VAR.set("caller")
    try:
        assert yieldloop.run(main) == "caller"
        assert VAR.get() == "caller"
    finally:
        VAR.reset(token)


def test_spawn_request_copies_the_spawning_tasks_context() -> None:
    seen = []

    def child() -> Generator[Any, Any, None]:
        seen.append(VAR.get())
        yield ("sleep", 0)

    def main() -> Generator[Any, Any, None]:
        VAR.set("set in main")
        task = yield ("spawn", child)
        yield from task

    yieldloop.run(main)
    assert seen == ["set in main"]


# ========================================================== async generators


def test_abandoned_async_generator_is_finalized_on_the_loop() -> None:
    log = []

    async def numbers() -> Any:
        try:
            for i in range(10):
                yield i
        finally:
            log.append(("finally start", current_time()))
            await sleep(0)  # allowed: it runs as a task on the loop
            await sleep(1)
            log.append(("finally end", current_time()))

    async def main() -> None:
        async for x in numbers():
            if x == 2:
                break
        log.append(("after break", current_time()))

    hooks = sys.get_asyncgen_hooks()
    vrun(main)
    assert log == [("after break", 0.0), ("finally start", 0.0), ("finally end", 1.0)]
    assert sys.get_asyncgen_hooks() == hooks


def test_async_generator_still_alive_at_the_end_is_closed_before_run_returns() -> None:
    log = []
    keep = []

    async def numbers() -> Any:
        try:
            yield 1
            yield 2
        finally:
            await sleep(1)
            log.append(current_time())

    async def main() -> None:
        agen = numbers()
        assert await agen.__anext__() == 1
        keep.append(agen)

    hooks = sys.get_asyncgen_hooks()
    vrun(main)
    assert log == [1.0]
    assert keep[0].ag_frame is None  # finished
    assert sys.get_asyncgen_hooks() == hooks


def test_asyncgen_hooks_restored_after_a_failing_run() -> None:
    async def main() -> None:
        async def agen() -> Any:
            yield 1

        async for _ in agen():
            raise ValueError("stop")

    hooks = sys.get_asyncgen_hooks()
    with pytest.raises(ValueError, match="stop"):
        yieldloop.run(main)
    assert sys.get_asyncgen_hooks() == hooks


def test_error_in_async_generator_finalizer_does_not_fail_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def numbers() -> Any:
        try:
            yield 1
            yield 2
        finally:
            raise RuntimeError("finalizer broke")

    async def main() -> str:
        async for _ in numbers():
            break
        await sleep(1)
        return "done"

    assert vrun(main) == "done"
    assert "finalizer broke" in caplog.text


# ============================================= outside run, and between runs


def test_current_time_and_current_task_outside_run() -> None:
    with pytest.raises(RuntimeError, match="inside yieldloop.run"):
        current_time()
    with pytest.raises(RuntimeError, match="inside yieldloop.run"):
        current_task()
    with pytest.raises(RuntimeError, match="inside yieldloop.run"):
        yieldloop.lowlevel.current_kernel()


def test_current_task_inside_run() -> None:
    async def main() -> Any:
        return current_task()

    task = yieldloop.run(main)
    assert task.name.endswith("main")
    assert task.done()
    assert task.result() is task


def test_task_from_a_finished_run() -> None:
    saved: dict[str, Any] = {}

    async def main() -> None:
        async with TaskGroup() as tg:
            saved["task"] = tg.spawn(add, 1, 2)
            saved["group"] = tg

    vrun(main)
    task = saved["task"]
    assert task.done()
    assert task.result() == 3
    task.cancel()  # done: nothing happens, no error
    assert not task.cancelled()
    assert task.result() == 3

    async def second_run() -> None:
        coro = add(4, 5)
        with pytest.raises(RuntimeError, match="already finished"):
            saved["group"].spawn(coro)
        assert is_closed(coro)
        task.cancel()  # still a no-op

    with no_unawaited_warnings():
        vrun(second_run)


def test_task_awaited_or_cancelled_from_another_run_is_refused() -> None:
    started = threading.Event()
    release = threading.Event()
    box: dict[str, Any] = {}

    async def wait_for_release() -> None:
        while not release.is_set():
            await sleep(0.01)

    async def owner_main() -> None:
        async with TaskGroup() as tg:
            box["task"] = tg.spawn(wait_for_release)
            started.set()
            await wait_for_release()

    owner = threading.Thread(target=yieldloop.run, args=(owner_main,))
    owner.start()
    try:
        assert started.wait(10)
        task = box["task"]

        async def other_main() -> None:
            with pytest.raises(RunFinishedError):
                await task
            with pytest.raises(RunFinishedError):
                task.cancel()

        assert not task.done()
        yieldloop.run(other_main)
    finally:
        release.set()
        owner.join(10)
    assert not owner.is_alive()
    assert box["task"].done()


def test_task_cannot_await_itself() -> None:
    async def main() -> None:
        me = current_task()
        with pytest.raises(RuntimeError, match="itself"):
            await me

    yieldloop.run(main)


def test_spawn_into_a_closed_group_closes_the_coroutine() -> None:
    box: dict[str, Any] = {}

    async def main() -> None:
        async with TaskGroup() as tg:
            box["tg"] = tg
        coro = add(1, 2)
        with pytest.raises(RuntimeError, match="already finished"):
            tg.spawn(coro)
        assert is_closed(coro)
        gen = gen_add(1, 2)
        with pytest.raises(RuntimeError, match="already finished"):
            tg.spawn(gen)
        assert is_closed(gen)

    with no_unawaited_warnings():
        vrun(main)


def test_spawn_into_an_unentered_group_closes_the_coroutine() -> None:
    async def main() -> None:
        tg = TaskGroup()
        coro = add(1, 2)
        with pytest.raises(RuntimeError, match="not been entered"):
            tg.spawn(coro)
        assert is_closed(coro)

    with no_unawaited_warnings():
        yieldloop.run(main)


def test_kernel_refuses_threadsafe_calls_after_the_run() -> None:
    box = {}

    async def main() -> None:
        box["kernel"] = yieldloop.lowlevel.current_kernel()

    yieldloop.run(main)
    with pytest.raises(RuntimeError, match="finished"):
        box["kernel"].call_soon_threadsafe(print, "late")
