"""Instruments and the Chrome/Perfetto trace recorder."""

from __future__ import annotations

import functools
import json
import logging
from collections import defaultdict
from typing import Any

import pytest

import yieldloop as yl
from yieldloop.lowlevel import Instrument, TraceRecorder, current_kernel
from yieldloop.testing import VirtualClock

pytestmark = pytest.mark.timeout(60)


class Log(Instrument):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def task_spawned(self, task):
        self.events.append(("spawned", task.name))

    def task_scheduled(self, task):
        self.events.append(("scheduled", task.name))

    def task_woken(self, waker, wakee):
        self.events.append(("woken", waker.name if waker else None, wakee.name))

    def before_task_step(self, task):
        self.events.append(("before", task.name))

    def after_task_step(self, task, request):
        self.events.append(("after", task.name))

    def task_exited(self, task):
        self.events.append(("exited", task.name))

    def before_io_wait(self, timeout):
        self.events.append(("io", timeout))

    def run_finished(self):
        self.events.append(("finished",))


async def _program() -> None:
    ev = yl.Event()

    async def setter() -> None:
        await yl.sleep(0.01)
        ev.set()

    async with yl.TaskGroup() as tg:
        tg.spawn(setter, name="setter")
        await ev.wait()


def test_hooks_see_spawns_steps_wakes_and_exits():
    log = Log()
    yl.run(_program, instruments=[log])
    ev = log.events
    assert ev[0] == ("spawned", "_program")
    assert ("spawned", "setter") in ev
    assert ("woken", "_program", "setter") in ev  # spawned by main
    assert ("woken", "setter", "_program") in ev  # ev.set() woke main
    assert ("woken", None, "setter") in ev  # its timer fired
    assert any(e[0] == "io" for e in ev)
    assert ev.count(("exited", "setter")) == 1
    assert ev.count(("exited", "_program")) == 1
    assert ev[-1] == ("finished",)
    # Every step is bracketed.
    depth: dict[str, int] = defaultdict(int)
    for e in ev:
        if e[0] == "before":
            depth[e[1]] += 1
            assert depth[e[1]] == 1
        elif e[0] == "after":
            depth[e[1]] -= 1
            assert depth[e[1]] == 0


def test_instrument_added_and_removed_during_the_run():
    log = Log()

    async def main() -> int:
        kernel = current_kernel()
        await yl.checkpoint()
        kernel.add_instrument(log)
        for _ in range(3):
            await yl.checkpoint()
        kernel.remove_instrument(log)
        n = len(log.events)
        for _ in range(3):
            await yl.checkpoint()
        assert len(log.events) == n
        with pytest.raises(ValueError):
            kernel.remove_instrument(log)
        return n

    n = yl.run(main)
    assert n > 0
    assert sum(1 for e in log.events if e[0] == "before") >= 3


def test_failing_instrument_is_removed_and_logged(caplog):
    class Broken(Instrument):
        calls = 0

        def before_task_step(self, task):
            Broken.calls += 1
            raise RuntimeError("instrument bug")

    with caplog.at_level(logging.ERROR, logger="yieldloop"):
        yl.run(_program, instruments=[Broken()])
    assert Broken.calls == 1
    assert "instrument bug" in caplog.text or "failed in before_task_step" in caplog.text


def test_bad_instrument_is_a_type_error():
    with pytest.raises(TypeError, match="Instrument"):
        yl.run(_program, instruments=[object()])  # type: ignore[list-item]


def test_instruments_and_a_scheduler_together():
    from yieldloop.testing import RandomScheduler

    log = Log()
    yl.run(_program, clock=VirtualClock(), scheduler=RandomScheduler(3), instruments=[log])
    assert ("exited", "_program") in log.events


# ------------------------------------------------------------ traces


def _check_trace(data: dict[str, Any]) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """Validate the Trace Event Format structure; return slices per track."""
    assert set(data) >= {"traceEvents"}
    tracks: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    names: dict[tuple[int, int], str] = {}
    flows_s: dict[int, dict[str, Any]] = {}
    flows_f: dict[int, dict[str, Any]] = {}
    for e in data["traceEvents"]:
        assert e["ph"] in {"M", "B", "E", "X", "s", "f"}
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] == "M":
            if e["name"] == "thread_name":
                names[(e["pid"], e["tid"])] = e["args"]["name"]
            continue
        assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0
        if e["ph"] == "X":
            assert e["dur"] >= 0
        if e["ph"] == "s":
            flows_s[e["id"]] = e
        elif e["ph"] == "f":
            flows_f[e["id"]] = e
        else:
            tracks[(e["pid"], e["tid"])].append(e)
    assert set(flows_s) == set(flows_f)
    for fid, start in flows_s.items():
        assert flows_f[fid]["ts"] >= start["ts"]
    for key, events in tracks.items():
        assert key in names, f"track {key} has no name"
        begins = [e for e in events if e["ph"] == "B"]
        ends = [e for e in events if e["ph"] == "E"]
        assert len(begins) == 1 and len(ends) == 1
        life = (begins[0]["ts"], ends[0]["ts"])
        slices = sorted((e for e in events if e["ph"] == "X"), key=lambda e: e["ts"])
        last_end = life[0]
        for sl in slices:
            # Strictly nested in the lifetime, never overlapping each other.
            assert sl["ts"] >= last_end - 1e-6, (names[key], sl)
            assert sl["ts"] + sl["dur"] <= life[1] + 1e-6
            last_end = sl["ts"] + sl["dur"]
    return tracks


def test_trace_file_structure_and_overlapping_workers(tmp_path):
    path = tmp_path / "trace.json"

    async def worker(i: int) -> None:
        for _ in range(3):
            await yl.sleep(0.02)

    async def main() -> None:
        async with yl.TaskGroup() as tg:
            for i in range(3):
                tg.spawn(worker, i, name=f"worker {i}")

    yl.run(main, trace=path)
    data = json.loads(path.read_text())
    tracks = _check_trace(data)
    names = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in data["traceEvents"]
        if e["ph"] == "M" and e["name"] == "thread_name"
    }
    lives = {}
    for key, events in tracks.items():
        b = next(e for e in events if e["ph"] == "B")["ts"]
        e_ = next(e for e in events if e["ph"] == "E")["ts"]
        lives[names[key]] = (b, e_)
        waits = [e["name"] for e in events if e["ph"] == "X" and e["cat"] == "wait"]
        if names[key].startswith("worker"):
            assert waits.count("sleep") == 3
    # The three workers are alive at the same time.
    starts = [lives[f"worker {i}"][0] for i in range(3)]
    ends = [lives[f"worker {i}"][1] for i in range(3)]
    assert max(starts) < min(ends)
    # The workers are grouped under their spawner.
    procs = {
        e["pid"]: e["args"]["name"]
        for e in data["traceEvents"]
        if e["ph"] == "M" and e["name"] == "process_name"
    }
    worker_pids = {k[0] for k, n in names.items() if n.startswith("worker")}
    assert len(worker_pids) == 1
    assert procs[worker_pids.pop()].endswith(".main")
    # Flows: main -> each worker (spawn).
    assert sum(1 for e in data["traceEvents"] if e["ph"] == "s") >= 3


def test_trace_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "env.json"
    monkeypatch.setenv("YIELDLOOP_TRACE", str(path))
    yl.run(_program)
    _check_trace(json.loads(path.read_text()))


def test_trace_of_a_failing_run_is_still_written(tmp_path):
    path = tmp_path / "fail.json"

    async def main() -> None:
        async with yl.TaskGroup() as tg:
            tg.spawn(yl.sleep_forever, name="forever")
            await yl.sleep(0.001)
            raise KeyError("boom")

    with pytest.raises(BaseExceptionGroup):
        yl.run(main, trace=path)
    _check_trace(json.loads(path.read_text()))


def test_recorder_in_memory():
    rec = TraceRecorder(None)
    yl.run(_program, instruments=[rec])
    data = rec.to_json()
    _check_trace(data)
    assert any(e["ph"] == "X" and e["name"] == "Event" for e in data["traceEvents"])


# ------------------------------------------------------------ exit report


def test_exit_report_warns_about_what_the_run_left_open(tmp_path):
    import threading
    import time as _time

    from yieldloop import socket as ysocket

    stop = threading.Event()
    kept: list[Any] = []

    async def main() -> None:
        kept.append(ysocket.socket())  # never closed
        closed = ysocket.socket()
        closed.close()
        f = await yl.open_file(tmp_path / "x.txt", "w")  # never closed
        kept.append(f)
        g = await yl.open_file(tmp_path / "y.txt", "w")
        await g.aclose()
        with yl.move_on_after(0.01):
            await yl.to_thread(stop.wait, 30, abandon_on_cancel=True)

    with pytest.warns(ResourceWarning) as record:
        yl.run(main)
    messages = [str(w.message) for w in record]
    stop.set()
    assert any("a socket opened in this yieldloop run was left open" in m for m in messages)
    assert any("a file opened" in m for m in messages)
    assert any("to_thread" in m and "abandoned" in m for m in messages)
    assert len(messages) == 3, messages
    for obj in kept:
        if hasattr(obj, "_file"):
            obj._file.close()
        else:
            obj.close()
    _time.sleep(0.05)


async def _noop(stream: Any) -> None:
    pass


def test_exit_report_is_quiet_when_everything_was_closed(recwarn):
    async def main() -> None:
        async with yl.TaskGroup() as tg:
            listeners = await tg.start(
                functools.partial(yl.serve_tcp, _noop, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            stream = await yl.open_tcp_stream("127.0.0.1", port)
            await stream.aclose()
            result = await yl.run_process(["true"], check=False)
            assert result.returncode == 0
            tg.cancel_scope.cancel()

    yl.run(main)
    assert not [w for w in recwarn if issubclass(w.category, ResourceWarning)]


def test_run_slow_step_reports_a_blocking_call(caplog):
    import time as _time

    async def main() -> None:
        await yl.checkpoint()
        _time.sleep(0.4)  # the blocking call
        await yl.checkpoint()

    with caplog.at_level(logging.WARNING, logger="yieldloop"):
        yl.run(main, slow_step=0.1)
    assert "_time.sleep(0.4)  # the blocking call" in caplog.text


def test_run_monitor_serves_ps(tmp_path, monkeypatch):
    import os

    from yieldloop._tools._ps import query

    monkeypatch.setenv("YIELDLOOP_MONITOR_DIR", str(tmp_path))
    seen: list[Any] = []

    async def main() -> None:
        async def sleeper() -> None:
            await yl.sleep_forever()

        async with yl.TaskGroup() as tg:
            tg.spawn(sleeper, name="sleeper")
            await yl.sleep(0.05)
            seen.append(await yl.to_thread(query, os.getpid(), "ps"))
            tg.cancel_scope.cancel()

    yl.run(main, monitor=True)
    assert seen and seen[0]
    names = {t["name"] for answer in seen[0] for t in answer["tasks"]}
    assert "sleeper" in names
    assert not list(tmp_path.glob("*.sock"))
