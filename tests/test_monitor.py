"""The live task monitor (``_kernel/_monitor.py``) and its client (``_tools/_ps.py``).

The big test runs a real yieldloop TCP server in a child process with a
monitor, holds 100 real connections open from here, and asks the child over
its Unix socket what its tasks do - also while the child's loop is stuck in
a blocking step.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import yieldloop as yl
from yieldloop._kernel._monitor import ENV_DIR, Monitor, build_tree, monitor_dir, socket_paths
from yieldloop._tools._ps import (
    NoMonitorError,
    add_arguments,
    format_ps,
    format_tree,
    main,
    main_tree,
    ps_main,
    query,
)
from yieldloop.lowlevel import current_kernel

pytestmark = pytest.mark.timeout(120)

HERE = os.path.abspath(__file__)


def line_of(marker: str, text: str | None = None) -> int:
    """The number of the line that ends with ``marker`` (in this file by default)."""
    if text is None:
        text = Path(HERE).read_text()
    hits = [i for i, line in enumerate(text.splitlines(), 1) if line.rstrip().endswith(marker)]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


def raw_command(path: str, command: bytes) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(path)
        s.sendall(command)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data)


def short(name: str) -> str:
    """A task name without the ``test_x.<locals>.`` of a function defined in a test."""
    return name.rpartition("<locals>.")[2]


def by_name(snap: dict) -> dict[str, dict]:
    return {short(t["name"]): t for t in snap["tasks"]}


# ====================================================================== child


CHILD = r'''
import functools
import os
import sys
import time

import yieldloop as yl
from yieldloop._kernel._monitor import Monitor

RELEASE = sys.argv[1]
stop = None


async def handler(stream):
    while True:
        data = await stream.receive_some()  # HANDLER WAIT
        if not data:
            return
        if data.startswith(b"block"):
            print("blocking", flush=True)
            while not os.path.exists(RELEASE):
                time.sleep(0.05)  # BLOCKED HERE
            print("released", flush=True)
        elif data.startswith(b"quit"):
            stop.cancel()


async def main():
    global stop
    async with yl.TaskGroup() as tg:
        stop = tg.cancel_scope
        listeners = await tg.start(
            functools.partial(yl.serve_tcp, handler, 0, host="127.0.0.1"), name="server"
        )
        print("port", listeners[0].socket.getsockname()[1], flush=True)


yl.run(main, instruments=[Monitor()])
print("exited", flush=True)
'''


def wait_for(predicate, what: str, timeout: float = 60.0):
    """Poll ``predicate`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def find_node(nodes: list[dict], name: str) -> dict | None:
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if node["name"] == name:
            return node
        for g in node["groups"]:
            stack.extend(g["tasks"])
    return None


def test_ps_and_pstree_of_a_child_server_with_100_connections(tmp_path):
    script = tmp_path / "child_server.py"
    script.write_text(CHILD)
    release = tmp_path / "release"
    wait_line = line_of("# HANDLER WAIT", CHILD)
    blocked_line = line_of("# BLOCKED HERE", CHILD)
    env = {k: v for k, v in os.environ.items() if k != ENV_DIR}  # the default place
    proc = subprocess.Popen(
        [sys.executable, str(script), str(release)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    conns: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("port "), first
        port = int(first.split()[1])
        # The monitor starts with the run, before the server listens.
        [path] = socket_paths(proc.pid)
        assert os.path.dirname(path) == monitor_dir()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700

        for _ in range(100):
            conns.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        peers = {f"handler for ('127.0.0.1', {c.getsockname()[1]})": c for c in conns}

        def all_handlers_waiting():
            [snap] = query(proc.pid, "ps")
            handlers = [t for t in snap["tasks"] if t["name"] in peers]
            if len(handlers) == 100 and all(t["state"] == "waiting" for t in handlers):
                return snap
            return None

        snap = wait_for(all_handlers_waiting, "100 handler tasks waiting on their sockets")
        tasks = by_name(snap)
        server = tasks["server"]
        assert server["state"] == "waiting"
        assert tasks["main"]["parent"] is None
        assert server["parent"] == tasks["main"]["id"]
        handlers = [t for t in snap["tasks"] if t["name"] in peers]
        fds = set()
        for t in handlers:
            m = re.fullmatch(r"waiting for fd (\d+) to be readable", t["wait"])
            assert m, t["wait"]
            assert t["fd"] == int(m.group(1))
            fds.add(t["fd"])
            assert t["parent"] == server["id"]  # in the server's own group
            assert t["deadline"] is None and t["cancelled"] is False
            # The await chain: _run_handler -> handler at its receive_some line -> ...
            files_lines = [(f["file"], f["line"], f["function"]) for f in t["stack"]]
            assert (str(script), wait_line, "handler") in files_lines, files_lines
            assert t["stack"][0]["function"] == "_run_handler"
        assert len(fds) == 100
        assert len({t["group"]["id"] for t in handlers}) == 1
        accept = [t for t in snap["tasks"] if t["name"].startswith("accept on")]
        assert len(accept) == 1 and accept[0]["wait"].startswith("waiting for fd ")
        # Nothing to do: the loop waits in epoll, and the monitor answers.
        [snap] = query(proc.pid, "ps")
        assert snap["loop"] == {"state": "idle", "task": None, "thread": "MainThread"}

        # The table.
        out, err = io.StringIO(), io.StringIO()
        assert ps_main(proc.pid, out=out, err=err) == 0, err.getvalue()
        table = out.getvalue().splitlines()
        assert table[0].startswith(f"process {proc.pid}: ")
        rows = [line for line in table if "handler for" in line]
        assert len(rows) == 100
        assert all(re.search(r"waiting\s.*waiting for fd \d+ to be readable$", r) for r in rows)

        # The tree: every handler nests under the server, in one group.
        [tree_snap] = query(proc.pid, "pstree")
        assert "tasks" not in tree_snap
        roots = tree_snap["tree"]
        assert [r["name"] for r in roots] == ["main"]
        server_node = find_node(roots, "server")
        assert server_node is not None
        assert find_node(roots[0]["groups"][0]["tasks"], "server") is server_node
        [group] = server_node["groups"]
        assert group["kind"] == "TaskGroup"
        names = [n["name"] for n in group["tasks"]]
        assert sorted(n for n in names if n in peers) == sorted(peers)
        assert len(names) == 101  # the handlers and the accept loop
        out = io.StringIO()
        assert ps_main(proc.pid, tree=True, out=out) == 0
        text = out.getvalue().splitlines()
        head = f"[{server['id']}] server"
        server_line = next(line for line in text if line.lstrip().startswith(head))
        indent = len(server_line) - len(server_line.lstrip())
        handler_lines = [line for line in text if "] handler for" in line]
        assert len(handler_lines) == 100
        assert all(len(h) - len(h.lstrip()) > indent for h in handler_lines)
        assert any(f"{script}:{wait_line} in handler" in line for line in text)  # stacks

        # Block the child's loop in a step; ps still answers, and shows where.
        blocker = conns[0]
        blocker.sendall(b"block")
        assert proc.stdout.readline() == "blocking\n"
        [snap] = query(proc.pid, "ps")
        tasks = by_name(snap)
        me = tasks[f"handler for ('127.0.0.1', {blocker.getsockname()[1]})"]
        assert snap["loop"]["state"] == "running"
        assert snap["loop"]["task"] == me["id"]
        assert me["state"] == "running" and me["wait"] == "running"
        assert me["stack"][-1] == {"file": str(script), "line": blocked_line,
                                   "function": "handler"}
        assert sum(1 for t in snap["tasks"] if t["name"] in peers) == 100
        out = io.StringIO()
        assert ps_main(proc.pid, stacks=True, out=out) == 0
        assert f"{script}:{blocked_line} in handler" in out.getvalue()
        release.touch()
        assert proc.stdout.readline() == "released\n"

        def unblocked():
            [snap] = query(proc.pid, "ps")
            return by_name(snap)[me["name"]]["state"] == "waiting"

        wait_for(unblocked, "the blocked handler to wait again")

        # Stop the server from a connection; the run ends; the socket goes.
        conns[1].sendall(b"quit")
        assert proc.stdout.readline() == "exited\n"
        assert proc.wait(timeout=60) == 0
        assert not os.path.exists(path)
        assert socket_paths(proc.pid) == []
        err = io.StringIO()
        assert ps_main(proc.pid, err=err) == 1
        assert f"no process with pid {proc.pid}" in err.getvalue()
    finally:
        for c in conns:
            c.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


# ================================================================== in-process


async def _holder(lock: yl.Lock) -> None:
    async with lock:
        await yl.sleep_forever()


async def _waiter(lock: yl.Lock) -> None:
    with yl.move_on_after(300):
        async with lock:  # ALICE WAITS
            pass


@yl.coroutine
def _gen_getter(q: yl.Queue):
    item = yield from q.get()  # GEN WAITS
    return item


def test_snapshot_in_process_names_locks_queues_deadlines_and_stacks(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "mon"))
    monitor = Monitor()
    seen: dict = {}

    async def main() -> None:
        lock = yl.Lock()
        q: yl.Queue = yl.Queue()
        async with yl.TaskGroup() as tg:
            tg.spawn(_holder, lock, name="bob")
            await yl.sleep(0)
            tg.spawn(_waiter, lock, name="alice")
            tg.spawn(_gen_getter, q, name="gen")
            tg.spawn(yl.sleep, 100, name="napper")
            await yl.sleep(0.01)
            path = monitor.path
            seen["path"] = path
            seen["mode"] = stat.S_IMODE(os.stat(path).st_mode)
            seen["ps"] = (await yl.to_thread(query, os.getpid(), "ps"))[0]
            seen["tree"] = (await yl.to_thread(query, os.getpid(), "pstree"))[0]
            seen["bogus"] = await yl.to_thread(raw_command, path, b"bogus\n")
            tg.cancel_scope.cancel()

    yl.run(main, instruments=[monitor])
    assert [t for t in threading.enumerate() if t.name.startswith("yieldloop-monitor")] == []
    assert seen["path"] == str(tmp_path / "mon" / f"{os.getpid()}.sock")
    assert seen["mode"] == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "mon").st_mode) == 0o700
    assert not os.path.exists(seen["path"])  # removed at the end of the run
    assert monitor.path is None
    snap = seen["ps"]
    assert snap["version"] == 1 and snap["pid"] == os.getpid()
    tasks = by_name(snap)
    assert set(tasks) == {"main", "bob", "alice", "gen", "napper"}
    assert [t["id"] for t in snap["tasks"]] == sorted(t["id"] for t in snap["tasks"])
    assert tasks["bob"]["state"] == "sleeping"
    assert tasks["bob"]["wait"] == "sleeping forever"
    alice = tasks["alice"]
    assert alice["state"] == "waiting"
    assert re.match(r"waiting on <Lock held by 'bob', 1 waiting", alice["wait"])
    assert 0 < alice["deadline"]["in"] <= 300
    assert alice["deadline"]["at"] == pytest.approx(snap["time"] + alice["deadline"]["in"])
    assert {"file": HERE, "line": line_of("# ALICE WAITS"), "function": "_waiter"} in alice[
        "stack"
    ]
    gen = tasks["gen"]
    assert gen["wait"].startswith("waiting on <Queue")
    assert gen["stack"][0] == {"file": HERE, "line": line_of("# GEN WAITS"),
                               "function": "_gen_getter"}
    assert gen["stack"][-1]["function"] == "Queue.get"
    assert tasks["napper"]["state"] == "sleeping"
    assert tasks["napper"]["wait"].startswith("sleeping (")
    for name in ("bob", "alice", "gen", "napper"):
        assert tasks[name]["parent"] == tasks["main"]["id"]
        assert tasks[name]["group"]["kind"] == "TaskGroup"
    assert tasks["main"]["group"]["kind"] == "run"
    [root] = seen["tree"]["tree"]
    assert short(root["name"]) == "main"
    [group] = root["groups"]
    assert [n["name"] for n in group["tasks"]] == ["bob", "alice", "gen", "napper"]
    assert "unknown command 'bogus'" in seen["bogus"]["error"]
    # The renderers take both shapes.
    assert "alice" in format_ps(snap) and "Lock held by 'bob'" in format_ps(snap)
    # (main's own line differs: it was running, then waiting for the thread.)
    flat = format_tree(snap, stacks=False).splitlines()[2:]
    assert flat == format_tree(seen["tree"], stacks=False).splitlines()[2:]
    assert flat[0] == "  TaskGroup (4):"


def test_monitor_added_during_a_run_lists_the_tasks_already_there(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    got: dict = {}

    async def main() -> None:
        async with yl.TaskGroup() as tg:
            for i in range(3):
                tg.spawn(yl.sleep_forever, name=f"early {i}")
            await yl.sleep(0)
            monitor = Monitor()
            current_kernel().add_instrument(monitor)
            assert monitor.start() == str(tmp_path / f"{os.getpid()}.sock")
            tg.spawn(yl.sleep_forever, name="late")
            await yl.sleep(0)
            got["snap"] = (await yl.to_thread(query, os.getpid()))[0]
            tg.cancel_scope.cancel()

    yl.run(main)
    names = [short(t["name"]) for t in got["snap"]["tasks"]]
    assert sorted(names) == ["early 0", "early 1", "early 2", "late", "main"]
    assert socket_paths(os.getpid()) == []


def test_snapshots_from_other_threads_while_tasks_come_and_go(monkeypatch, tmp_path):
    # A loop that spawns and finishes tasks all the time, taking locks and
    # sleeping, while two threads take snapshots as fast as they can: no
    # snapshot may fail, and none may disturb the run.
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    monitor = Monitor()
    errors: list[BaseException] = []
    counts: list[int] = []
    stop = threading.Event()

    def hammer(use_socket: bool) -> None:
        try:
            while not stop.is_set():
                if use_socket:
                    path = monitor.path
                    if path is None:
                        time.sleep(0.001)
                        continue
                    try:
                        snap = raw_command(path, b"pstree\n")
                    except (FileNotFoundError, ConnectionRefusedError):
                        continue  # the run ended meanwhile
                    assert "error" not in snap, snap
                    tasks = snap["tree"]
                else:
                    snap = monitor.snapshot()
                    tasks = snap["tasks"]
                    for t in tasks:
                        assert t["state"] in ("running", "ready", "waiting", "sleeping"), t
                        assert isinstance(t["stack"], list)
                    build_tree(tasks)
                counts.append(len(tasks))
        except BaseException as exc:
            errors.append(exc)

    async def worker(lock: yl.Lock, i: int) -> None:
        async with lock:
            await yl.sleep(0)
        with yl.move_on_after(0.001 * (i % 3)):
            await yl.sleep(0.002)
        await yl.sleep(0)

    async def main() -> None:
        lock = yl.Lock()
        threads = [threading.Thread(target=hammer, args=(s,)) for s in (False, True)]
        for t in threads:
            t.start()
        try:
            for round_ in range(60):
                async with yl.TaskGroup() as tg:
                    for i in range(50):
                        tg.spawn(worker, lock, i)
                if len(counts) > 200 and round_ > 20:
                    break
        finally:
            stop.set()
            await yl.to_thread(lambda: [t.join() for t in threads])

    yl.run(main, instruments=[monitor])
    assert not errors, errors
    assert counts and max(counts) > 1


def test_command_line_entry_points(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    pid = str(os.getpid())
    results = {}

    async def napper() -> None:
        await yl.sleep_forever()  # NAPPER

    async def program() -> None:
        async with yl.TaskGroup() as tg:
            tg.spawn(napper, name="napper")
            await yl.sleep(0)
            for key, fn, argv in [
                ("ps", main, [pid]),
                ("ps --stacks", main, [pid, "--stacks"]),
                ("json", main, [pid, "--json"]),
                ("tree", main_tree, [pid]),
                ("tree --no-stacks", main_tree, [pid, "--no-stacks", "--timeout", "5"]),
            ]:
                args = parser.parse_args(argv)
                buf = io.StringIO()
                status = await yl.to_thread(
                    lambda: ps_main(args.pid, tree=fn is main_tree, json_out=args.json,
                                    stacks=args.stacks, timeout=args.timeout, out=buf)
                )
                assert status == 0
                results[key] = buf.getvalue()
            # main() itself prints to sys.stdout.
            assert await yl.to_thread(main, parser.parse_args([pid])) == 0
            tg.cancel_scope.cancel()

    yl.run(program, instruments=[Monitor()])
    napper_line = f"{HERE}:{line_of('# NAPPER')} in "
    assert "napper" in results["ps"] and napper_line not in results["ps"]
    assert napper_line in results["ps --stacks"]
    assert [short(t["name"]) for t in json.loads(results["json"])["tasks"]] == [
        "program", "napper"
    ]
    assert napper_line in results["tree"]
    assert "napper" in results["tree --no-stacks"]
    assert napper_line not in results["tree --no-stacks"]
    assert "napper" in capsys.readouterr().out


def test_no_monitor_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    err = io.StringIO()
    assert ps_main(os.getpid(), err=err) == 1
    assert f"no yieldloop monitor runs in process {os.getpid()}" in err.getvalue()
    assert str(tmp_path) in err.getvalue()
    with pytest.raises(NoMonitorError, match="no yieldloop monitor"):
        query(os.getpid())
    # A socket file nobody serves any more (a run killed with SIGKILL).
    dead = tmp_path / f"{os.getpid()}.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(dead))
    s.close()
    err = io.StringIO()
    assert ps_main(os.getpid(), tree=True, err=err) == 1
    assert "nothing answers" in err.getvalue()
    with pytest.raises(ValueError, match="positive"):
        ps_main(0)
    with pytest.raises(TypeError, match="pid must be an int"):
        ps_main("123")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'ps' or 'pstree'"):
        query(os.getpid(), "top")


def test_stale_sockets_of_dead_processes_are_removed(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead_pid = int(child.stdout)  # exited and reaped: no such process now
    stale = [tmp_path / f"{dead_pid}.sock", tmp_path / f"{dead_pid}-2.sock"]
    for p in stale:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(p))
        s.close()
    alive = tmp_path / "1.sock"  # pid 1 always exists: not ours to remove
    alive.touch()
    other = tmp_path / "notes.txt"
    other.touch()
    seen = {}

    async def main() -> None:
        seen["files"] = sorted(os.listdir(tmp_path))

    yl.run(main, instruments=[Monitor()])
    assert seen["files"] == sorted(["1.sock", "notes.txt", f"{os.getpid()}.sock"])
    assert sorted(os.listdir(tmp_path)) == ["1.sock", "notes.txt"]


def test_two_monitors_in_one_process_get_two_sockets(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    a, b = Monitor(), Monitor()
    got = {}

    async def main() -> None:
        got["paths"] = (a.path, b.path)
        got["replies"] = await yl.to_thread(query, os.getpid())

    yl.run(main, instruments=[a, b])
    assert got["paths"] == (str(tmp_path / f"{os.getpid()}.sock"),
                            str(tmp_path / f"{os.getpid()}-2.sock"))
    assert len(got["replies"]) == 2
    assert os.listdir(tmp_path) == []


def test_a_directory_others_can_write_is_refused(monkeypatch, tmp_path, caplog):
    bad = tmp_path / "open"
    bad.mkdir()
    bad.chmod(0o777)
    monkeypatch.setenv(ENV_DIR, str(bad))

    async def explicit() -> None:
        with pytest.raises(RuntimeError, match="writable by others"):
            Monitor().start()

    yl.run(explicit)
    # Installed as an instrument, it logs and the program runs on.
    monitor = Monitor()
    with caplog.at_level("ERROR", logger="yieldloop"):
        result = yl.run(_answer_after_checkpoint, instruments=[monitor])
    assert result == 42
    assert "monitor could not start" in caplog.text and "writable by others" in caplog.text
    assert os.listdir(bad) == []


async def _answer_after_checkpoint() -> int:
    await yl.sleep(0)
    return 42


def test_monitor_rejects_bad_arguments_and_use_outside_a_run():
    with pytest.raises(TypeError, match="Kernel"):
        Monitor(kernel="nope")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="inside yieldloop.run"):
        Monitor().start()
    snap = Monitor().snapshot()
    assert snap["tasks"] == [] and snap["loop"]["state"] == "finished"
