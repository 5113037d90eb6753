"""yieldloop.testing: virtual time, deadlock reports, schedulers, explore,
replay, shrinking and cancellation injection."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import yieldloop as yl
from yieldloop.testing import (
    Deadlock,
    ExploreResult,
    PCTScheduler,
    RandomScheduler,
    RecordingScheduler,
    ReplayScheduler,
    ScheduleFailure,
    Scheduler,
    TooManySteps,
    VirtualClock,
    decode_token,
    encode_token,
    explore,
    explore_cancellation,
    replay,
)

pytestmark = pytest.mark.timeout(60)


# ------------------------------------------------------------ programs under test


def make_counter_test(locked: bool, late_start: int = 3):
    """Two tasks each do ``x = counter; await checkpoint(); counter = x + 1``.
    One starts ``late_start`` checkpoints late, so plain FIFO does not
    interleave them: only some schedules lose an update."""

    async def test() -> None:
        state = {"n": 0}
        lock = yl.Lock()

        async def inc(delay: int) -> None:
            for _ in range(delay):
                await yl.checkpoint()
            if locked:
                async with lock:
                    x = state["n"]
                    await yl.checkpoint()
                    state["n"] = x + 1
            else:
                x = state["n"]
                await yl.checkpoint()
                state["n"] = x + 1

        async with yl.TaskGroup() as tg:
            tg.spawn(inc, 0, name="early")
            tg.spawn(inc, late_start, name="late")
        assert state["n"] == 2, f"lost update: counter is {state['n']}"

    return test


def test_fifo_does_not_show_the_race():
    yl.run(make_counter_test(locked=False), clock=VirtualClock())


@pytest.mark.parametrize("strategy", ["pct", "random", "exhaustive"])
def test_explore_finds_the_lost_update_and_the_token_replays_it(strategy):
    test = make_counter_test(locked=False)
    with pytest.raises(ScheduleFailure) as info:
        explore(test, runs=100, strategy=strategy, seed=1)
    failure = info.value
    assert failure.runs <= 100
    assert isinstance(failure.__cause__, AssertionError)
    assert "lost update" in str(failure.__cause__)
    assert failure.token in str(failure)
    # Shrunk to the minimum: the late task must be picked over the early one
    # at the three decision points before the early one writes back.
    assert failure.deviations == 3
    assert failure.token.startswith("yl1:")
    for _ in range(10):
        with pytest.raises(AssertionError, match="lost update"):
            replay(test, failure.token)


@pytest.mark.parametrize("strategy", ["pct", "random"])
def test_locked_version_passes_a_thousand_runs(strategy):
    result = explore(make_counter_test(locked=True), runs=1000, strategy=strategy, seed=3)
    assert isinstance(result, ExploreResult)
    assert result.runs == 1000
    assert result.distinct_schedules > 1
    assert not result.complete


def test_exhaustive_covers_the_tree():
    result = explore(make_counter_test(locked=True, late_start=1), runs=10_000,
                     strategy="exhaustive", depth=2)
    assert result.complete
    assert result.distinct_schedules == result.runs - 1  # the FIFO run is counted twice


def test_shrinking_removes_irrelevant_deviations():
    test = make_counter_test(locked=False, late_start=5)
    # A schedule with many needless deviations that still fails...
    noisy = None
    for seed in range(2000):
        sched = RandomScheduler(seed)
        try:
            yl.run(test, clock=VirtualClock(), scheduler=sched)
        except AssertionError:
            if sum(1 for d in sched.decisions if d) >= 7:
                noisy = sched
                break
    assert noisy is not None
    # ...while explore's report (shrunk) keeps only what the race needs: the
    # late task passing its five checkpoints before the early task writes.
    with pytest.raises(ScheduleFailure) as info:
        explore(test, runs=200, strategy="random", seed=0)
    assert info.value.deviations <= 5
    with pytest.raises(AssertionError, match="lost update"):
        replay(test, info.value.token)


def test_explore_without_shrinking_reports_the_raw_schedule():
    with pytest.raises(ScheduleFailure) as info:
        explore(make_counter_test(locked=False), runs=200, strategy="random", shrink=False)
    assert info.value.deviations >= 3
    with pytest.raises(AssertionError):
        replay(make_counter_test(locked=False), info.value.token)


def test_explore_reports_a_fifo_failure_in_run_one():
    async def broken() -> None:
        raise ValueError("always")

    with pytest.raises(ScheduleFailure) as info:
        explore(broken, runs=10)
    assert info.value.runs == 1
    assert info.value.token == "yl1:"
    assert isinstance(info.value.__cause__, ValueError)


def test_explore_bad_arguments():
    test = make_counter_test(locked=True)
    with pytest.raises(ValueError, match="strategy"):
        explore(test, strategy="bogus")
    with pytest.raises(ValueError, match="runs"):
        explore(test, runs=0)
    with pytest.raises(TypeError, match="seed"):
        explore(test, seed="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async function"):
        explore(42)  # type: ignore[arg-type]


# ------------------------------------------------------------ determinism


def _busy_program():
    async def main() -> list[int]:
        out: list[int] = []
        q: yl.Queue[int] = yl.Queue(3)

        async def producer(k: int) -> None:
            for i in range(20):
                await q.put(k * 100 + i)
                if i % 3 == 0:
                    await yl.sleep(0.01 * k)

        async def consumer() -> None:
            for _ in range(60):
                out.append(await q.get())
                await yl.checkpoint()

        async with yl.TaskGroup() as tg:
            for k in range(3):
                tg.spawn(producer, k, name=f"producer {k}")
            tg.spawn(consumer, name="consumer")
        return out

    return main


def test_same_seed_gives_byte_identical_traces():
    traces = []
    results = []
    for _ in range(20):
        sched = RandomScheduler(1234, trace=True)
        results.append(yl.run(_busy_program(), clock=VirtualClock(), scheduler=sched))
        assert sched.trace is not None
        traces.append("\n".join(sched.trace).encode())
    assert len(set(traces)) == 1
    assert len(traces[0]) > 1000
    assert all(r == results[0] for r in results)
    # And another seed gives another interleaving.
    other = RandomScheduler(4321, trace=True)
    yl.run(_busy_program(), clock=VirtualClock(), scheduler=other)
    assert "\n".join(other.trace or []).encode() != traces[0]


def test_replay_of_a_recorded_schedule_gives_the_same_trace():
    sched = RandomScheduler(99, trace=True)
    first = yl.run(_busy_program(), clock=VirtualClock(), scheduler=sched)
    trace: list[str] = []
    again = replay(_busy_program(), sched.token(), trace=trace)
    assert again == first
    assert trace == sched.trace


def test_base_scheduler_runs_exactly_like_the_default_loop():
    # The scheduled loop and the fast loop must agree step for step.
    plain = yl.run(_busy_program(), clock=VirtualClock())
    assert yl.run(_busy_program(), clock=VirtualClock(), scheduler=Scheduler()) == plain
    fifo = RecordingScheduler()
    assert yl.run(_busy_program(), clock=VirtualClock(), scheduler=fifo) == plain
    assert fifo.decisions and not any(fifo.decisions)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["ckpt", "sleep", "event", "spawn"]), max_size=6),
                min_size=1, max_size=5))
def test_property_fifo_scheduler_matches_default_loop(programs):
    def make():
        async def main() -> list[str]:
            log: list[str] = []
            ev = yl.Event()

            async def worker(k: int, ops: list[str]) -> None:
                for j, op in enumerate(ops):
                    log.append(f"{k}.{j}")
                    if op == "ckpt":
                        await yl.checkpoint()
                    elif op == "sleep":
                        await yl.sleep(0.001 * (k + 1))
                    elif op == "event":
                        ev.set()
                        await ev.wait()
                    else:
                        async with yl.TaskGroup() as tg:
                            tg.spawn(yl.checkpoint)

            async with yl.TaskGroup() as tg:
                for k, ops in enumerate(programs):
                    tg.spawn(worker, k, ops)
            return log

        return main

    plain = yl.run(make(), clock=VirtualClock())
    assert yl.run(make(), clock=VirtualClock(), scheduler=Scheduler()) == plain


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 6))
def test_property_random_schedules_replay_exactly(seed, n):
    def make():
        async def main() -> list[int]:
            order: list[int] = []

            async def worker(k: int) -> None:
                for _ in range(3):
                    order.append(k)
                    await yl.checkpoint()

            async with yl.TaskGroup() as tg:
                for k in range(n):
                    tg.spawn(worker, k)
            return order

        return main

    sched = RandomScheduler(seed)
    first = yl.run(make(), clock=VirtualClock(), scheduler=sched)
    assert sorted(first) == sorted(list(range(n)) * 3)
    assert replay(make(), sched.token()) == first


# ------------------------------------------------------------ tokens and schedulers


def test_token_round_trip():
    for decisions in ([], [0, 0, 1], [2, 0, 0, 0, 5, 1], [1] * 500, [0] * 1000 + [3]):
        token = encode_token(decisions)
        back = decode_token(token)
        assert back == [d for d in decisions][: len(back)]
        assert not any(decisions[len(back):])
    assert len(encode_token([1, 0] * 2000)) < 200  # long ones are zipped
    assert encode_token([0, 0, 1, 2, 0, 1]) == "yl1:2=1,0=2,1=1"


@pytest.mark.parametrize("bad", ["", "xyz", "yl1:1", "yl1:a=1", "yl1:3=0", "yl1:-1=1", "yl1z:!!"])
def test_bad_tokens_are_rejected(bad):
    with pytest.raises(ValueError, match="token"):
        decode_token(bad)


def test_scheduler_argument_is_checked():
    async def main() -> None:
        pass

    with pytest.raises(TypeError, match="Scheduler"):
        yl.run(main, scheduler=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed"):
        RandomScheduler("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="depth"):
        PCTScheduler(1, depth=0)
    with pytest.raises(ValueError, match="max_steps"):
        RecordingScheduler(max_steps=0)


def test_replay_scheduler_clamps_and_falls_back_to_fifo():
    async def main() -> list[int]:
        order: list[int] = []

        async def w(k: int) -> None:
            order.append(k)

        async with yl.TaskGroup() as tg:
            for k in range(3):
                tg.spawn(w, k)
        return order

    # Index 7 does not exist: the last ready task runs instead.
    assert yl.run(main, scheduler=ReplayScheduler([7])) == [2, 0, 1]
    assert yl.run(main, scheduler=ReplayScheduler("yl1:")) == [0, 1, 2]


def test_pct_scheduler_finds_an_ordering_bug():
    # A bug that needs the late task to run all its steps before the early one
    # finishes its first: PCT finds it, with high probability, in few runs.
    with pytest.raises(ScheduleFailure) as info:
        explore(make_counter_test(locked=False, late_start=8), runs=200, strategy="pct", seed=5)
    assert info.value.strategy == "pct"


def test_livelock_is_ended_by_max_steps():
    async def spin() -> None:
        flag = False

        async def waiter() -> None:
            while not flag:
                await yl.checkpoint()

        async with yl.TaskGroup() as tg:
            tg.spawn(waiter)

    with pytest.raises(TooManySteps):
        yl.run(spin, clock=VirtualClock(), scheduler=RecordingScheduler(max_steps=1000))
    with pytest.raises(ScheduleFailure) as info:
        explore(spin, runs=3, max_steps=500)
    assert isinstance(info.value.__cause__, TooManySteps)


# ------------------------------------------------------------ virtual time


def test_a_day_of_sleep_under_a_one_hour_timeout_takes_no_real_time():
    clock = VirtualClock()

    async def main() -> tuple[float, float]:
        start = yl.current_time()
        with yl.move_on_after(86400 * 2):
            await yl.sleep(86400)
        mid = yl.current_time()
        with pytest.raises(TimeoutError), yl.fail_after(3600):
            await yl.sleep(86400)
        return mid - start, yl.current_time() - mid

    t0 = time.monotonic()
    slept, timed_out = yl.run(main, clock=clock)
    assert time.monotonic() - t0 < 30  # generous: only catches a real sleep
    assert slept == 86400
    assert timed_out == 3600
    assert clock.current_time() == 86400 + 3600


def test_manual_clock_jump():
    clock = VirtualClock(autojump_threshold=None)

    async def main() -> list[float]:
        seen: list[float] = []

        async def sleeper() -> None:
            await yl.sleep(10)
            seen.append(yl.current_time())

        async with yl.TaskGroup() as tg:
            tg.spawn(sleeper)
            await yl.checkpoint()
            clock.jump(4)
            await yl.checkpoint()
            assert not seen
            clock.jump(6)
        return seen

    assert yl.run(main, clock=clock) == [10.0]
    with pytest.raises(ValueError):
        clock.jump(-1)


# ------------------------------------------------------------ deadlocks


def test_lock_order_deadlock_is_reported_with_both_holders():
    async def main() -> None:
        a, b = yl.Lock(), yl.Lock()

        async def one(x: yl.Lock, y: yl.Lock) -> None:
            async with x:
                await yl.sleep(1)
                async with y:
                    pass

        async with yl.TaskGroup() as tg:
            tg.spawn(one, a, b, name="alice")
            tg.spawn(one, b, a, name="bob")

    with pytest.raises(Deadlock) as info:
        yl.run(main, clock=VirtualClock())
    text = str(info.value)
    assert "task 'alice': waiting on <Lock held by 'bob'" in text
    assert "task 'bob': waiting on <Lock held by 'alice'" in text
    assert ".main': waiting on <TaskGroup" in text
    assert "at time 1" in text


def test_deadlock_found_by_explore():
    # Deadlocks only in some schedules: each task takes its first lock, and
    # only if the other one also got its first lock before the second.
    async def test() -> None:
        a, b = yl.Lock(), yl.Lock()

        async def one(x: yl.Lock, y: yl.Lock) -> None:
            async with x:
                await yl.checkpoint()
                async with y:
                    pass

        async def two(x: yl.Lock, y: yl.Lock) -> None:
            for _ in range(3):
                await yl.checkpoint()
            await one(x, y)

        async with yl.TaskGroup() as tg:
            tg.spawn(one, a, b, name="first")
            tg.spawn(two, b, a, name="second")

    yl.run(test, clock=VirtualClock())  # FIFO: no deadlock
    with pytest.raises(ScheduleFailure) as info:
        explore(test, runs=200, strategy="random", seed=2)
    assert isinstance(info.value.__cause__, Deadlock)
    assert "held by" in str(info.value.__cause__)


def test_event_never_set_and_child_task_are_described():
    async def main() -> None:
        ev = yl.Event()

        async def waiter() -> None:
            await ev.wait()

        async with yl.TaskGroup() as tg:
            t = tg.spawn(waiter, name="waiter")
            await t

    with pytest.raises(Deadlock) as info:
        yl.run(main, clock=VirtualClock())
    text = str(info.value)
    assert ".main': waiting for task 'waiter' to finish" in text
    assert "task 'waiter': waiting on <Event" in text


def test_deadlock_in_a_gather_says_how_many_of_its_tasks_still_run():
    async def main() -> None:
        ev = yl.Event()

        async def quick() -> None:
            await yl.sleep(1)

        await yl.gather(quick(), ev.wait())

    with pytest.raises(Deadlock) as info:
        yl.run(main, clock=VirtualClock())
    text = str(info.value)
    assert ".main': waiting on <gather, 1 still running>" in text
    assert "waiting on <Event" in text


def test_sleep_forever_alone_is_a_deadlock_on_virtual_time():
    async def main() -> None:
        await yl.sleep_forever()

    with pytest.raises(Deadlock, match="sleeping forever"):
        yl.run(main, clock=VirtualClock())


def test_deadlock_cancels_everything_first_so_finally_blocks_run():
    cleaned: list[str] = []

    async def main() -> None:
        ev = yl.Event()
        try:
            await ev.wait()
        finally:
            cleaned.append("main")

    with pytest.raises(Deadlock):
        yl.run(main, clock=VirtualClock())
    assert cleaned == ["main"]


def test_a_thread_is_not_a_deadlock():
    async def main() -> int:
        return await yl.to_thread(lambda: (time.sleep(0.05), 7)[1])

    assert yl.run(main, clock=VirtualClock()) == 7


def test_queue_wait_is_a_deadlock_with_a_description():
    async def main() -> None:
        q: yl.Queue[int] = yl.Queue()
        await q.get()

    with pytest.raises(Deadlock, match="Queue"):
        yl.run(main, clock=VirtualClock())


# ------------------------------------------------------------ cancellation injection


class Account:
    def __init__(self, balance: int) -> None:
        self.balance = balance
        self.log: list[int] = []

    async def transfer_out_badly(self, amount: int) -> None:
        self.balance -= amount
        await yl.checkpoint()  # e.g. a network call; cancelled here: money gone
        await yl.sleep(1)
        self.log.append(-amount)

    async def transfer_out(self, amount: int) -> None:
        await yl.checkpoint()
        await yl.sleep(1)
        # Commit at the end, with no await in between: all or nothing.
        self.balance -= amount
        self.log.append(-amount)


def _account_test(method: str):
    async def test(region: yl.CancelScope) -> None:
        acct = Account(100)
        with region:
            await getattr(acct, method)(30)
            await yl.checkpoint()
        assert acct.balance == 100 - 30 * len(acct.log), (acct.balance, acct.log)

    return test


def test_cancellation_injection_finds_the_half_done_transfer():
    with pytest.raises(ScheduleFailure) as info:
        explore_cancellation(_account_test("transfer_out_badly"))
    failure = info.value
    assert failure.strategy == "cancel"
    assert failure.token == "yl1-cancel:0"
    assert isinstance(failure.__cause__, AssertionError)
    with pytest.raises(AssertionError):
        replay(_account_test("transfer_out_badly"), failure.token)


def test_cancellation_injection_tries_every_point_of_correct_code():
    result = explore_cancellation(_account_test("transfer_out"))
    assert result.complete
    # Points: checkpoint, sleep, the final checkpoint; then a run with no cancel.
    assert result.runs == 4


def test_cancellation_injection_reaches_child_tasks():
    points: list[int] = []

    async def test(region: yl.CancelScope) -> None:
        done: list[str] = []
        with region:
            async with yl.TaskGroup() as tg:
                for k in range(2):
                    tg.spawn(lambda k=k: _child(k, done))
        points.append(len(done))

    async def _child(k: int, done: list[str]) -> None:
        await yl.checkpoint()
        await yl.checkpoint()
        done.append(str(k))

    result = explore_cancellation(test)
    assert result.complete
    assert points[0] == 0 and points[-1] == 2
    assert result.runs >= 5
