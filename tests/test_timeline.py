"""``python -m yieldloop trace``: the terminal chart, the summary, the HTML
page (rendered by headless Chromium), and the demo's ``--trace``.

Traces come from real runs (``yieldloop.run(main, trace=path)``) or, where
exact cells are checked, from small hand-written trace files of the same
format. Nothing asserts how long anything took: only what overlaps what.
"""

from __future__ import annotations

import collections
import fcntl
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import Any

import pytest

import yieldloop as yl
from yieldloop._tools import (
    ChartStyle,
    TraceError,
    load_trace,
    parse_trace,
    render_chart,
    render_html,
    render_summary,
)
from yieldloop._tools._html import COLOURS
from yieldloop._tools._model import IO, READY, RUNNING, SLEEP, WAIT
from yieldloop._tools._timeline import bucket_states
from yieldloop._tools._units import short_name, shorten, ticks

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(120)

SLEEP_S = 0.05


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ)
    for name in ("NO_COLOR", "COLUMNS", "YIELDLOOP_TRACE"):
        environ.pop(name, None)
    environ["PYTHONIOENCODING"] = "utf-8"
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "yieldloop", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=90,
    )


async def three_workers() -> None:
    async def worker(i: int) -> None:
        for _ in range(2):
            await yl.sleep(SLEEP_S)

    async with yl.TaskGroup() as tg:
        for i in range(3):
            tg.spawn(worker, i, name=f"worker {i}")


@pytest.fixture(scope="module")
def workers_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trace") / "workers.json"
    yl.run(three_workers, trace=path)
    return path


def chart_rows(text: str, border: str = "│") -> dict[str, str]:
    """Row label -> the cells after the border."""
    rows = {}
    for line in text.splitlines():
        m = re.match(rf"^  (\S.*?) *{re.escape(border)}(.*)$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


# ================================================================ the chart


def test_chart_shows_three_workers_sleeping_at_once(workers_trace: Path) -> None:
    proc = run_cli("trace", str(workers_trace), "--width", "90", "--color", "never")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout
    assert "\x1b" not in out
    lines = out.splitlines()
    assert all(len(line) <= 90 for line in lines), max(lines, key=len)
    assert lines[0].startswith("workers.json: 4 tasks in 2 groups")
    # The workers are listed under their group, after main's group.
    assert "yieldloop run (1 task)" in lines
    group = lines.index("tasks of three_workers (3 tasks)")
    assert [line.split("│")[0].strip() for line in lines[group + 1 : group + 4]] == [
        "worker 0", "worker 1", "worker 2"
    ]
    rows = chart_rows(out)
    assert set(rows) == {"three_workers", "worker 0", "worker 1", "worker 2"}
    workers = [rows[f"worker {i}"] for i in range(3)]
    # Sleeping is drawn with "·"; the three rows sleep in the same columns.
    together = [c for c in range(min(map(len, workers))) if all(w[c] == "·" for w in workers)]
    assert len(together) >= len(workers[0]) // 2, workers
    # main waits on its task group meanwhile ("░": a primitive or a child).
    assert rows["three_workers"].count("░") >= len(workers[0]) // 2
    # An axis with units, and the legend.
    assert re.search(r"^ +ms 0 +\d+ +\d+", out, flags=re.M), out
    assert re.search(r"^ +└[─┴]+$", out, flags=re.M)
    for text in ("█ running", "▒ ready (waiting for the CPU)", "· sleeping", "≈ waiting on I/O",
                 "░ waiting on a primitive or a child"):
        assert text in out


def test_chart_default_width_is_the_terminals_or_100(workers_trace: Path) -> None:
    proc = run_cli("trace", str(workers_trace))  # stdout is a pipe: 100 columns
    assert proc.returncode == 0, proc.stderr
    assert max(len(line) for line in proc.stdout.splitlines()) == 100
    proc = run_cli("trace", str(workers_trace), COLUMNS="60")
    assert max(len(line) for line in proc.stdout.splitlines()) == 60


def run_in_terminal(args: list[str], columns: int) -> str:
    """Run the CLI with its stdout a pseudo-terminal ``columns`` wide."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    environ = {k: v for k, v in os.environ.items()
               if k not in ("NO_COLOR", "COLUMNS", "LINES", "YIELDLOOP_TRACE")}
    environ.update(TERM="xterm-256color", PYTHONIOENCODING="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "yieldloop", *args], cwd=ROOT, env=environ,
        stdin=subprocess.DEVNULL, stdout=follower, stderr=subprocess.PIPE,
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            proc.kill()
            raise AssertionError("the trace command wrote nothing for 60 s")
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    return b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


def test_chart_in_a_terminal_is_coloured_and_fits(workers_trace: Path) -> None:
    out = run_in_terminal(["trace", str(workers_trace)], columns=72)
    assert "\x1b[34m" in out  # sleeping, in blue
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert max(len(line) for line in plain.splitlines()) == 72


def test_chart_colour_can_be_forced_or_refused(workers_trace: Path) -> None:
    proc = run_cli("trace", str(workers_trace), "--color", "always", "--width", "80")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[34m·" in proc.stdout
    proc = run_cli("trace", str(workers_trace), "--width", "80", NO_COLOR="1")
    assert "\x1b" not in proc.stdout


def test_chart_falls_back_to_ascii(workers_trace: Path) -> None:
    proc = run_cli("trace", str(workers_trace), "--width", "80", PYTHONIOENCODING="ascii")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.isascii()
    rows = chart_rows(out, border="|")
    workers = [rows[f"worker {i}"] for i in range(3)]
    together = [c for c in range(min(map(len, workers))) if all(w[c] == "." for w in workers)]
    assert len(together) >= len(workers[0]) // 2
    assert re.search(r"^ +\+[-+]+$", out, flags=re.M)
    for text in ("# running", "+ ready", ". sleeping", "~ waiting on I/O", "= waiting on"):
        assert text in out


def hand_trace(*slices: tuple[str, str, float, float], end: float = 100.0) -> dict[str, Any]:
    """A trace of one task "main": (cat, name, start, end) slices."""
    events: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": "run"}},
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 1, "args": {"name": "main"}},
        {"ph": "B", "name": "main", "cat": "task", "ts": 0, "pid": 1, "tid": 1},
        {"ph": "E", "name": "main", "cat": "task", "ts": end, "pid": 1, "tid": 1},
    ]
    for cat, name, a, b in slices:
        events.append({"ph": "X", "cat": cat, "name": name, "ts": a, "dur": b - a, "pid": 1,
                       "tid": 1})
    return {"traceEvents": events}


def test_each_cell_shows_what_the_task_did_most() -> None:
    data = hand_trace(
        ("step", "run", 0, 10),
        ("wait", "sleep", 10, 60),
        ("wait", "wait readable fd 7", 60, 80),
        ("wait", "Lock", 80, 90),
        ("wait", "ready", 90, 95),
        ("step", "run", 95, 100),
    )
    trace = parse_trace(data, "hand.json")
    # Label column of 8, border, 40 cells: 2.5 µs a cell.
    lines = render_chart(trace, width=49, style=ChartStyle(colour=False, unicode=True))
    assert chart_rows("\n".join(lines))["main"] == "████" + "·" * 20 + "≈" * 8 + "░" * 4 + "▒▒██"
    # Coarser, 10 µs a bucket: the last bucket holds 5 µs ready and 5 µs
    # running, a tie, which goes to running.
    trace = parse_trace(hand_trace(
        ("step", "run", 0, 4), ("wait", "sleep", 4, 60), ("wait", "Event", 60, 90),
        ("wait", "ready", 90, 95), ("step", "run", 95, 100)), "hand.json")
    (task,) = trace.tasks
    assert bucket_states(task, 0.0, 10.0, 10) == [SLEEP] * 6 + [WAIT] * 3 + [RUNNING]
    # Before the task began and after it ended: nothing (None).
    # Buckets of 25 µs from -50: 0-25 is mostly sleep, 50-75 and 75-100
    # mostly the Event.
    assert bucket_states(task, -50.0, 25.0, 8) == [None, None, SLEEP, SLEEP, WAIT, WAIT, None,
                                                  None]


def test_summary_numbers_match_the_trace(workers_trace: Path) -> None:
    data = json.loads(workers_trace.read_text())
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in data["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name"}
    expected: dict[str, dict[str, Any]] = collections.defaultdict(
        lambda: {"steps": 0, "running": 0.0, "sleep": 0.0, "woken": 0}
    )
    for e in data["traceEvents"]:
        if e["ph"] == "X":
            row = expected[names[(e["pid"], e["tid"])]]
            if e["cat"] == "step":
                row["steps"] += 1
                row["running"] += e["dur"]
            elif e["name"] == "sleep":
                row["sleep"] += e["dur"]
        elif e["ph"] == "f":
            expected[names[(e["pid"], e["tid"])]]["woken"] += 1

    trace = load_trace(workers_trace)
    for task in trace.tasks:
        totals = task.totals()
        want = expected[task.name]
        assert totals.steps == want["steps"] > 0
        assert totals.woken == want["woken"]
        assert totals.time[RUNNING] == pytest.approx(want["running"])
        assert totals.time[SLEEP] == pytest.approx(want["sleep"])
        if task.name.startswith("worker"):
            assert totals.steps == 3  # start, after each of its two sleeps
            # Two sleeps: at least their length (they never end early).
            assert totals.time[SLEEP] >= 2 * SLEEP_S * 1e6 * 0.9
        # The states fill the task's life but for instants between slices.
        assert sum(totals.time.values()) <= (task.end - task.begin) + 1e-6

    proc = run_cli("trace", str(workers_trace), "--summary", "--width", "100")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    header = next(line for line in out.splitlines() if line.startswith("task"))
    assert header.split() == ["task", "lifetime", "running", "ready", "sleep", "I/O", "wait",
                              "steps", "woken"]
    for name, want in expected.items():
        m = re.search(rf"^  {re.escape(name)} .* (\d+) +(\d+)$", out, flags=re.M)
        assert m, (name, out)
        assert (int(m.group(1)), int(m.group(2))) == (want["steps"], want["woken"])
        if name.startswith("worker"):
            line = m.group(0)
            assert " ms " in line  # sleeping: milliseconds
    steps = sum(w["steps"] for w in expected.values())
    assert re.search(rf"^all 4 tasks .* {steps} +\d+$", out, flags=re.M)
    assert "of one CPU" in out


# ============================================================== bad input


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"hello, world", "is not JSON: Expecting value at line 1 column 1"),
        (b"\xff\xfe\x00garbage", "it is not UTF-8 text"),
        (b"[1, 2]", "event 0 is a number, not an object"),
        (b'"a string"', "expected an object with \"traceEvents\" or a list of events"),
        (b'{"name": "x"}', "it has no \"traceEvents\""),
        (b'{"traceEvents": {}}', "\"traceEvents\" is an object, not a list"),
        (b'{"traceEvents": []}', "holds no task tracks"),
        (b'{"traceEvents": [{"ph": "X", "pid": 1, "tid": 1, "ts": "soon", "dur": 1}]}',
         "event 0 ('X') has no number 'ts'"),
        (b'{"traceEvents": [{"ph": "X", "pid": 1, "tid": 1, "ts": 0, "dur": -5}]}',
         "negative duration"),
        (b'{"traceEvents": [{"ph": "B", "pid": "one", "tid": 1, "ts": 0}]}',
         "'pid' that is not an integer"),
        (b'{"traceEvents": [{"name": "x"}]}', "event 0 has no phase"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(TraceError) as info:
        load_trace(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_bad_input_on_the_command_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    proc = run_cli("trace", str(missing))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == f"python -m yieldloop trace: error: {missing}: no such file\n"

    proc = run_cli("trace", str(tmp_path))
    assert proc.returncode == 1
    assert "is a directory" in proc.stderr and "Traceback" not in proc.stderr

    text = tmp_path / "notes.txt"
    text.write_text("not json at all\n")
    for extra in ([], ["--summary"], ["--html", str(tmp_path / "out.html")]):
        proc = run_cli("trace", str(text), *extra)
        assert proc.returncode == 1
        assert "is not JSON" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.html").exists()

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"results": [1, 2, 3]}))
    proc = run_cli("trace", str(other))
    assert proc.returncode == 1
    assert "is JSON but not a trace" in proc.stderr

    for width in ("10", "wide"):
        proc = run_cli("trace", str(other), "--width", width)
        assert proc.returncode == 2
        assert "--width" in proc.stderr


def test_html_to_an_unwritable_place(workers_trace: Path, tmp_path: Path) -> None:
    proc = run_cli("trace", str(workers_trace), "--html", str(tmp_path / "no" / "such.html"))
    assert proc.returncode == 1
    assert "cannot write" in proc.stderr


def test_a_foreign_trace_with_unknown_events_still_draws() -> None:
    data = hand_trace(("step", "run", 0, 50), ("wait", "sleep", 50, 100))
    data["traceEvents"] += [
        {"ph": "i", "name": "instant", "ts": 3, "pid": 1, "tid": 1},
        {"ph": "C", "name": "counter", "ts": 3, "pid": 1, "args": {"n": 1}},
        {"ph": "X", "cat": "gc", "name": "collect", "ts": 5, "dur": 1, "pid": 1, "tid": 1},
    ]
    trace = parse_trace(data["traceEvents"], "list.json")  # the bare-list form
    (task,) = trace.tasks
    assert [s.state for s in task.slices] == [RUNNING, SLEEP]
    assert task.totals().time[IO] == task.totals().time[WAIT] == 0.0
    assert render_chart(trace, width=40)


# ================================================================== names


def test_names_are_shortened_sensibly() -> None:
    assert short_name("test_x.<locals>.main") == "main"
    assert short_name("Demo.async_await.<locals>.worker") == "worker"
    assert short_name("worker 3") == "worker 3"
    assert shorten("worker 3", 20) == "worker 3"
    assert shorten("a very long task name indeed", 12) == "a very long…"
    assert shorten("package.module.Class.method", 16) == "….Class.method"
    assert len(shorten("package.module.Class.method", 16)) <= 16
    assert shorten("x" * 30, 1) == "…"
    step, n = ticks(47.3, 8)
    assert step == 10 and n == 4
    step, n = ticks(0.003, 5)
    assert step == pytest.approx(0.001) and n == 3


def test_same_names_are_numbered(tmp_path: Path) -> None:
    path = tmp_path / "gather.json"

    async def job() -> None:
        await yl.sleep(0.001)

    async def main() -> None:
        await yl.gather(job(), job())  # two tasks named after job
        async with yl.TaskGroup() as tg:  # a second group of main's
            tg.spawn(job)

    yl.run(main, trace=path)
    lines = render_chart(load_trace(path), width=60)
    rows = chart_rows("\n".join(lines))
    assert {"job #1", "job #2", "job"} <= set(rows)
    groups = [line for line in lines if line.startswith("tasks of")]
    assert len(groups) == 2 and groups[0] != groups[1]


# =================================================================== HTML


def svg_of(page: str) -> ET.Element:
    m = re.search(r"<svg\b.*?</svg>", page, flags=re.S)
    assert m, "no <svg> in the page"
    return ET.fromstring(m.group(0))  # well-formed XML, or this raises


def test_html_page_is_self_contained_and_complete(workers_trace: Path) -> None:
    trace = load_trace(workers_trace)
    page = render_html(trace)
    assert page.startswith("<!DOCTYPE html>")
    # Nothing is fetched: no scripts or styles from elsewhere, no URLs at all.
    assert "http" not in page.lower()
    assert "src=" not in page and "href=" not in page and "@import" not in page
    svg = svg_of(page)
    lanes = svg.findall(".//g[@class='lane']")
    assert len(lanes) == len(trace.tasks) == 4
    # A lane's <text> is its name, then its tooltip.
    texts = ["".join(lane.find("text").itertext()) for lane in lanes]  # type: ignore[union-attr]
    assert texts[0].startswith("three_workers")
    for i in range(3):
        assert texts[i + 1].startswith(f"worker {i}worker {i} (tasks of three_workers)")
    # The sleeping of each worker is a bar in its lane.
    for lane in lanes[1:]:
        fills = [r.get("fill") for r in lane.findall("rect")]
        assert COLOURS[SLEEP] in fills
    flows = svg.findall(".//g[@class='flows']/path")
    assert len(flows) == len(trace.flows) >= 4  # main -> each worker, a worker -> main
    assert all("woke" in "".join(p.itertext()) for p in flows)
    for label in ("running", "ready (waiting for the CPU)", "sleeping", "waiting on I/O",
                  "waiting on a primitive or a child", "wake-up arrows"):
        assert label in page
    assert "Per-task totals" in page and "<table>" in page


def test_html_stays_readable_with_many_tasks(tmp_path: Path) -> None:
    path = tmp_path / "many.json"

    async def main() -> None:
        lock = yl.Lock()

        async def worker() -> None:
            for _ in range(3):
                async with lock:
                    await yl.checkpoint()

        async with yl.TaskGroup() as tg:
            for i in range(200):
                tg.spawn(worker, name=f"worker {i:03}")

    yl.run(main, trace=path)
    trace = load_trace(path)
    page = render_html(trace)
    svg = svg_of(page)
    assert len(svg.findall(".//g[@class='lane']")) == 201
    height = float(svg.get("height", "0"))
    assert 201 * 12 < height < 201 * 20  # lanes get lower, but not unreadably so
    assert "worker 199" in page
    assert len(page) < 8_000_000


# ---------------------------------------------------------- headless Chromium


def decode_png(data: bytes) -> tuple[int, int, list[bytes], int]:
    """(width, height, rows of pixels, bytes per pixel) of an 8-bit RGB(A) PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = bpp = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    i = 0
    for _ in range(height):
        kind = raw[i]
        line = bytearray(raw[i + 1 : i + 1 + stride])
        i += 1 + stride
        if kind == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif kind == 3:
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + (left + prev[x]) // 2) & 255
        elif kind == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b = prev[x]
                c = prev[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


@pytest.mark.timeout(240)
def test_html_screenshot_in_headless_chromium(workers_trace: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium): the HTML page "
                    "is not rendered")
    page = tmp_path / "timeline.html"
    proc = run_cli("trace", str(workers_trace), "--html", str(page))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {page} (4 tasks")
    shot = tmp_path / "timeline.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", "--window-size=1400,900", page.as_uri()],
        capture_output=True, timeout=180, check=False,
    )
    assert shot.exists(), "chromium wrote no screenshot"
    data = shot.read_bytes()
    assert len(data) > 20_000  # a page with a chart, not a blank one
    width, height, rows, bpp = decode_png(data)
    assert (width, height) == (1400, 900)
    colours: collections.Counter[bytes] = collections.Counter()
    for row in rows:
        colours.update(row[x : x + 3] for x in range(0, len(row), bpp))
    assert len(colours) > 50  # text, bars, arrows: many colours
    # Every state's colour is on screen (the legend has them all) ...
    for state in (RUNNING, READY, SLEEP, IO, WAIT):
        assert colours[bytes.fromhex(COLOURS[state][1:])] > 50, state
    # ... and three long sleeping bars, one below the other: the workers.
    sleep = bytes.fromhex(COLOURS[SLEEP][1:])
    bar_rows = []
    for y, row in enumerate(rows):
        longest = run = 0
        for x in range(0, len(row), bpp):
            run = run + 1 if row[x : x + 3] == sleep else 0
            longest = max(longest, run)
        if longest > width // 4:  # a worker's bar, split where it ran
            bar_rows.append(y)
    bars = [y for i, y in enumerate(bar_rows) if i == 0 or bar_rows[i - 1] != y - 1]
    assert len(bars) == 3, bar_rows


# =================================================================== demo


def test_demo_records_a_trace(tmp_path: Path) -> None:
    path = tmp_path / "demo.json"
    proc = run_cli("demo", "--scale", "0.02", "--skip-blocking", "--trace", str(path),
                   "--color", "never")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert f"python -m yieldloop trace {path}\n" in proc.stdout
    assert f"--html {tmp_path / 'demo.html'}" in proc.stdout
    data = json.loads(path.read_text())
    events = data["traceEvents"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "thread_name"}
    workers = sorted(k for k, n in names.items() if n.endswith("worker"))
    assert len(workers) == 3  # only the async/await run is traced
    (main,) = [k for k in names if k not in workers]

    def track(key: tuple[int, int], ph: str) -> list[dict[str, Any]]:
        return [e for e in events if (e["pid"], e["tid"]) == key and e["ph"] == ph]

    # The three workers are alive at once, and their first sleeps overlap.
    lives = [(track(k, "B")[0]["ts"], track(k, "E")[0]["ts"]) for k in workers]
    assert max(b for b, _ in lives) < min(e for _, e in lives)
    sleeps = [next(e for e in track(k, "X") if e["name"] == "sleep") for k in workers]
    assert max(s["ts"] for s in sleeps) < min(s["ts"] + s["dur"] for s in sleeps)
    # Flows: from the waker, after a step of its, to the start of a step of
    # the woken task.
    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    ends = {e["id"]: e for e in events if e["ph"] == "f"}
    assert starts and set(starts) == set(ends)
    pairs = set()
    for fid, s in starts.items():
        f = ends[fid]
        waker, woken = (s["pid"], s["tid"]), (f["pid"], f["tid"])
        assert any(x["cat"] == "step" and x["ts"] <= s["ts"] for x in track(waker, "X")), s
        assert any(x["cat"] == "step" and x["ts"] == f["ts"] for x in track(woken, "X")), f
        assert f["ts"] >= s["ts"]
        pairs.add((waker, woken))
    assert {(main, w) for w in workers} <= pairs  # main spawned each worker
    assert any(woken == main and waker in workers for waker, woken in pairs)  # the last one done
    # The trace command draws it.
    trace = load_trace(path)
    rows = chart_rows("\n".join(render_chart(trace, width=80)))
    assert {"worker #1", "worker #2", "worker #3"} <= set(rows)
    assert "\n".join(render_summary(trace))


def test_a_flow_starts_inside_the_wakers_step() -> None:
    from yieldloop.lowlevel import TraceRecorder

    async def child() -> None:
        pass

    async def main() -> None:
        async with yl.TaskGroup() as tg:
            tg.spawn(child)

    recorder = TraceRecorder(None)
    yl.run(main, instruments=[recorder])
    steps = [e for e in recorder.events if e["ph"] == "X" and e["cat"] == "step"]
    flows = [e for e in recorder.events if e["ph"] == "s"]
    assert flows
    for s in flows:
        assert any((x["pid"], x["tid"]) == (s["pid"], s["tid"])
                   and x["ts"] <= s["ts"] <= x["ts"] + x["dur"] for x in steps), s


def test_demo_rejects_a_bad_trace_path(tmp_path: Path) -> None:
    proc = run_cli("demo", "--scale", "0.01", "--skip-blocking", "--trace",
                   str(tmp_path / "no" / "such" / "dir.json"))
    assert proc.returncode == 2
    assert "--trace" in proc.stderr and "no such directory" in proc.stderr
    proc = run_cli("demo", "--trace", str(tmp_path))
    assert proc.returncode == 2
    assert "is a directory" in proc.stderr


# ================================================================= layers


def test_lower_layers_never_import_the_tools() -> None:
    package = ROOT / "yieldloop"
    for path in package.rglob("*.py"):
        rel = path.relative_to(package)
        if rel.parts[0] == "_tools" or rel.name in ("__main__.py",):
            continue
        assert "_tools" not in path.read_text(encoding="utf-8"), rel
