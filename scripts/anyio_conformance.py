"""Run anyio's own test suite against yieldloop's anyio backend.

The script checks that the installed anyio is a version this check supports
(``SUPPORTED``), fetches that version's source distribution with
``pip download anyio==X --no-binary :all: --no-deps`` into a cache directory
(default ``.cache/anyio-conformance/``), extracts it once, and installs the
test dependencies anyio declares (its ``test`` dependency group) into the
current environment, skipping those already present. A dependency that cannot
be installed is reported; the tests needing it are then skipped or fail alike
on every backend.

It then runs anyio's tests with ``yieldloop`` added to the ``anyio_backend``
fixture's parameters: the cached copy of ``tests/conftest.py`` is patched to
pass its backend list through a small pytest plugin that the script writes
next to the tests. The plugin imports ``yieldloop`` (which makes
``anyio._backends._yieldloop`` importable), keeps only the backends asked for,
and records one JSON line per test: its node id, backend, outcome and the first
line of its error. pytest runs once per test file, one test at a time, with
``-p no:cacheprovider`` and pytest-timeout's per-test limit (``--timeout``).
After ``--max-timeouts`` timeouts of one backend in a file, that backend's
remaining tests there are not run. A run that makes no progress for
``--stall-timeout`` seconds (a hang that pytest-timeout cannot break) is
killed after a stack dump, and so is resumed a run that a test ends early (a
KeyboardInterrupt escaping the backend): the test is recorded as failed and
pytest starts again on the tests not yet run. A plugin of anyio's addopts that
cannot be imported is left out, and the tests using its fixtures skipped. The
installed anyio is never modified; runs and their logs are kept under the
cache directory's ``runs/``.

Finally it prints, per test file, the tests passing on each backend and the
differences: every test that passes on the reference backend (the first one
given, ``asyncio`` by default) but not on the compared one (``yieldloop``),
with its outcome and first error line, also grouped by error. Without
``yieldloop`` among the backends, the last one is compared instead. The exit
code is 0 when there is no such test that failed, errored or did not run, 1
otherwise (skips are listed but do not count); 2 for a setup error.

Usage::

    .venv/bin/python scripts/anyio_conformance.py
    .venv/bin/python scripts/anyio_conformance.py --backends asyncio,yieldloop,trio \\
        --markdown anyio-conformance.md --json anyio-conformance.json
    .venv/bin/python scripts/anyio_conformance.py --files tests/test_taskgroups.py -k cancel
    .venv/bin/python scripts/anyio_conformance.py --from-json anyio-conformance.json

Backend names are the parameter ids of anyio's ``anyio_backend`` fixture
(``asyncio``, ``asyncio+uvloop``, ``asyncio+eager``, ``trio``) and
``yieldloop``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

#: anyio versions whose test suite this script knows how to run.
SUPPORTED = ">=4.16,<4.17"

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = ROOT / ".cache" / "anyio-conformance"
PLUGIN_NAME = "_anyio_conformance_plugin"
TARGET = "yieldloop"
#: The anyio_backend ids of anyio's conftest (asyncio+eager: Python 3.12+) and ours.
KNOWN_BACKENDS = ("asyncio", "asyncio+uvloop", "asyncio+eager", "trio", TARGET)
PASSING = frozenset({"passed", "xfailed"})
#: Outcomes of the compared backend that make the exit code 1.
BAD = frozenset({"failed", "error", "not-run"})

#: The line of anyio's tests/conftest.py that the patch goes in front of.
CONFTEST_ANCHOR = "@pytest.fixture(params=backend_params)\ndef anyio_backend("
CONFTEST_PATCH = (
    "# Added by yieldloop's scripts/anyio_conformance.py: the backends asked for,\n"
    "# yieldloop among them.\n"
    f"import {PLUGIN_NAME} as _conformance  # noqa: E402\n"
    "\n"
    "backend_params = _conformance.select_backend_params(backend_params)\n"
    "\n\n"
)

#: The pytest plugin written next to anyio's tests (loaded with ``-p``).
PLUGIN_SOURCE = '''\
"""Records anyio test outcomes per backend (written by anyio_conformance.py)."""

from __future__ import annotations

import json
import os
import re
from typing import Any, NoReturn

import pytest

SELECTED = [b for b in os.environ.get("ANYIO_CONFORMANCE_BACKENDS", "").split(",") if b]
RESULTS = os.environ.get("ANYIO_CONFORMANCE_RESULTS", "")

try:
    import yieldloop  # noqa: F401  (makes anyio._backends._yieldloop importable)
    from anyio._core._eventloop import get_async_backend

    get_async_backend("yieldloop")
except Exception as exc:  # reported as the skip reason of every yieldloop test
    YIELDLOOP_MISSING: str | None = f"{type(exc).__name__}: {exc}".splitlines()[0]
else:
    YIELDLOOP_MISSING = None

MAX_TIMEOUTS = int(os.environ.get("ANYIO_CONFORMANCE_MAX_TIMEOUTS", "0") or 0)
SKIP_FIXTURES = json.loads(os.environ.get("ANYIO_CONFORMANCE_SKIP_FIXTURES", "{}"))
GAVE_UP = "not run: gave up after"

_IDS: list[tuple[object, str]] = []
_timeouts: dict[str | None, int] = {}
_earlier: list[dict[str, Any]] = []  # results of an earlier, killed run of this file

if os.environ.get("ANYIO_CONFORMANCE_DUMP"):
    import faulthandler
    import signal

    _dump = open(os.environ["ANYIO_CONFORMANCE_DUMP"], "w")  # noqa: SIM115
    faulthandler.register(signal.SIGUSR1, file=_dump, all_threads=True)

if RESULTS and os.path.exists(RESULTS):
    with open(RESULTS, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                if rec.get("kind") == "result":
                    _earlier.append(rec)


def _is_timeout(rec: dict[str, Any]) -> bool:
    return rec.get("hung", False) or "Timeout (>" in rec.get("message", "")
_reports: dict[str, dict[str, Any]] = {}


def select_backend_params(params: list[Any]) -> list[Any]:
    """anyio's backend params plus yieldloop, only those in SELECTED."""
    marks = []
    if YIELDLOOP_MISSING is not None:
        marks.append(pytest.mark.skip(reason=f"not run: no yieldloop backend: {YIELDLOOP_MISSING}"))
    extended = [*params, pytest.param("yieldloop", id="yieldloop", marks=marks)]
    chosen = []
    for p in extended:
        ident = p.id if p.id is not None else str(p.values[0])
        _IDS.append((p.values[0], ident))
        if not SELECTED or ident in SELECTED:
            chosen.append(p)
    return chosen


def backend_id(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None or "anyio_backend" not in callspec.params:
        return None
    value = callspec.params["anyio_backend"]
    for known, ident in _IDS:
        if known is value:
            return ident
    if isinstance(value, str):
        return value
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        factory = value[1].get("loop_factory")
        if factory is None:
            return str(value[0])
        module = getattr(factory, "__module__", "") or ""
        if module.split(".")[0] in ("uvloop", "winloop"):
            return f"{value[0]}+{module.split('.')[0]}"
        name = getattr(factory, "__name__", "loop")
        return f"{value[0]}+{'eager' if 'eager' in name else name}"
    return repr(value)


def strip_backend(item: pytest.Item, backend: str | None) -> str:
    """The node id without the backend part of its parameter id."""
    nodeid = item.nodeid
    callspec = getattr(item, "callspec", None)
    if backend is None or callspec is None or "[" not in nodeid:
        return nodeid
    base = nodeid[: nodeid.index("[")]
    ids = list(getattr(callspec, "_idlist", None) or callspec.id.split("-"))
    if backend in ids:
        ids.remove(backend)
    return f"{base}[{'-'.join(ids)}]" if ids else base


def _write(record: dict[str, Any]) -> None:
    if not RESULTS:
        return
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\\n")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        backend = backend_id(item)
        if SELECTED and backend is not None and backend not in SELECTED:
            drop.append(item)
        else:
            keep.append(item)
    files = {item.nodeid.split("::")[0] for item in keep}
    done = set()
    for rec in _earlier:  # resuming: what ran already is not run again
        if rec["file"] in files:
            done.add(rec["nodeid"])
            if _is_timeout(rec):
                _timeouts[rec["backend"]] = _timeouts.get(rec["backend"], 0) + 1
    if done:
        drop += [item for item in keep if item.nodeid in done]
        keep = [item for item in keep if item.nodeid not in done]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            if fixture in SKIP_FIXTURES:
                item.add_marker(pytest.mark.skip(reason=SKIP_FIXTURES[fixture]))
                break
        backend = backend_id(item)
        _reports[item.nodeid] = {
            "nodeid": item.nodeid,
            "file": item.nodeid.split("::")[0],
            "test": strip_backend(item, backend),
            "backend": backend,
        }
        _write({"kind": "collected", **_reports[item.nodeid]})


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _write({
            "kind": "collect-error",
            "file": report.nodeid.split("::")[0],
            "nodeid": report.nodeid,
            "message": _first_line(report),
            "longrepr": _tail(report),
        })


def _first_line(report: Any) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        text = str(longrepr[2])
        if text.startswith("Skipped: "):
            text = text[len("Skipped: "):]
        return text.splitlines()[0] if text else ""
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and crash.message:
        return crash.message.strip().splitlines()[0]
    lines = [ln for ln in str(longrepr).splitlines() if ln.startswith("E ")]
    if lines:
        return lines[0][1:].strip()
    text = str(longrepr).strip()
    return text.splitlines()[-1] if text else ""


def _tail(report: Any, limit: int = 4000) -> str:
    text = getattr(report, "longreprtext", "") or ""
    return text[-limit:]


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    _write({"kind": "started", "nodeid": nodeid})


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    backend = backend_id(item)
    if backend is not None and MAX_TIMEOUTS and _timeouts.get(backend, 0) >= MAX_TIMEOUTS:
        pytest.skip(f"{GAVE_UP} {MAX_TIMEOUTS} timeouts on {backend} in this file")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    rec = _reports.setdefault(report.nodeid, {
        "nodeid": report.nodeid, "file": report.nodeid.split("::")[0],
        "test": report.nodeid, "backend": None,
    })
    rec["duration"] = rec.get("duration", 0.0) + report.duration
    if "outcome" not in rec:
        outcome = None
        if report.when == "call" or report.failed or report.skipped:
            if hasattr(report, "wasxfail"):
                outcome = "xfailed" if report.skipped else "xpassed"
            elif report.failed:
                outcome = "failed" if report.when == "call" else "error"
            elif report.skipped:
                outcome = "skipped"
            else:
                outcome = "passed"
        if outcome is not None:
            rec["outcome"] = outcome
            rec["when"] = report.when
            if outcome not in ("passed", "xpassed"):
                rec["message"] = _first_line(report)
                rec["longrepr"] = _tail(report)
            if outcome == "skipped" and rec["message"].startswith("not run:"):
                rec["outcome"] = "not-run"
            if outcome == "failed" and _is_timeout(rec):
                _timeouts[rec["backend"]] = _timeouts.get(rec["backend"], 0) + 1
    elif report.when == "teardown" and report.failed and rec["outcome"] == "passed":
        rec["outcome"] = "error"
        rec["when"] = "teardown"
        rec["message"] = _first_line(report)
        rec["longrepr"] = _tail(report)
    if report.when == "teardown":
        _write({"kind": "result", **rec})
'''


# --------------------------------------------------------------------------- setup


def fail(message: str) -> NoReturn:
    """Print an error and exit with status 2."""
    print(f"anyio_conformance: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def anyio_version() -> str:
    """The installed anyio's version, checked against SUPPORTED."""
    try:
        version = importlib.metadata.version("anyio")
    except importlib.metadata.PackageNotFoundError:
        fail("anyio is not installed in this environment")
    if version not in SpecifierSet(SUPPORTED, prereleases=True):
        fail(
            f"installed anyio {version} is outside the supported range {SUPPORTED!r}; "
            "check that its tests/conftest.py still parametrizes anyio_backend the same "
            "way, then widen SUPPORTED in scripts/anyio_conformance.py"
        )
    return version


def fetch_sdist(version: str, cache: Path) -> Path:
    """Download (once) and extract (once) anyio's sdist; return the source tree."""
    cache.mkdir(parents=True, exist_ok=True)
    tree = cache / f"anyio-{version}"
    if (tree / ".extracted").exists():
        return tree
    archives = sorted(cache.glob(f"anyio-{version}.tar.gz"))
    if not archives:
        print(f"== fetching the anyio {version} sdist into {cache}")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"anyio=={version}",
            "--no-binary",
            ":all:",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "-d",
            str(cache),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        archives = sorted(cache.glob(f"anyio-{version}.tar.gz"))
        if proc.returncode != 0 or not archives:
            fail(f"pip download failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    if tree.exists():
        shutil.rmtree(tree)
    with tarfile.open(archives[0]) as tar:
        tar.extractall(cache, filter="data")
    if not (tree / "tests" / "conftest.py").exists():
        fail(f"{archives[0]} has no tests/conftest.py")
    (tree / ".extracted").write_text("")
    return tree


@dataclass
class Dependency:
    """One test dependency of anyio and what became of it."""

    requirement: str
    status: str  # "present", "installed", "not needed", "unavailable"
    detail: str = ""


def _flatten_group(groups: dict[str, Any], name: str, seen: set[str]) -> list[str]:
    out: list[str] = []
    if name in seen:
        return out
    seen.add(name)
    for entry in groups.get(name, []):
        if isinstance(entry, str):
            out.append(" ".join(entry.split()))
        elif isinstance(entry, dict) and "include-group" in entry:
            out += _flatten_group(groups, entry["include-group"], seen)
    return out


def requirements_of_tests(pyproject: dict[str, Any]) -> list[str]:
    """The requirement strings of anyio's test dependencies (group or extra)."""
    groups = pyproject.get("dependency-groups", {})
    if "test" in groups:
        return _flatten_group(groups, "test", set())
    extras = pyproject.get("project", {}).get("optional-dependencies", {})
    return [" ".join(r.split()) for r in extras.get("test", [])]


def _installed(req: Requirement) -> str | None:
    try:
        version = importlib.metadata.version(req.name)
    except importlib.metadata.PackageNotFoundError:
        return None
    return version if req.specifier.contains(version, prereleases=True) else None


def install_test_deps(tree: Path, *, install: bool = True) -> list[Dependency]:
    """Install anyio's test dependencies that are missing, one by one."""
    data = tomllib.loads((tree / "pyproject.toml").read_text(encoding="utf-8"))
    deps: list[Dependency] = []
    for text in requirements_of_tests(data):
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            deps.append(Dependency(text, "not needed", "marker is false here"))
            continue
        if (version := _installed(req)) is not None:
            deps.append(Dependency(text, "present", version))
            continue
        if not install:
            deps.append(Dependency(text, "unavailable", "missing (--no-install)"))
            continue
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        spec = f"{req.name}{extras}{req.specifier}"
        print(f"== installing {spec}")
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", spec],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0 and (version := _installed(req)) is not None:
            deps.append(Dependency(text, "installed", version))
        else:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            deps.append(Dependency(text, "unavailable", lines[-1] if lines else "pip failed"))
    return deps


#: Fixtures that a pytest plugin named in anyio's addopts provides.
PLUGIN_FIXTURES = {
    "pytest_mock": (
        "mocker",
        "class_mocker",
        "module_mocker",
        "package_mocker",
        "session_mocker",
    ),
}


@dataclass
class PytestSetup:
    """What the pytest command line needs to work around missing plugins."""

    args: list[str] = field(default_factory=list)
    skip_fixtures: dict[str, str] = field(default_factory=dict)  # fixture -> reason
    missing: list[str] = field(default_factory=list)


def pytest_setup(tree: Path, importable: Any = None) -> PytestSetup:
    """anyio's addopts load plugins with ``-p NAME``; those that cannot be
    imported here are dropped (``-o addopts=...``) and the tests using their
    fixtures skipped, instead of pytest refusing to start."""
    if importable is None:

        def importable(name: str) -> bool:
            return importlib.util.find_spec(name) is not None

    pyproject = tree / "pyproject.toml"
    setup = PytestSetup()
    if not pyproject.exists():
        return setup
    tool = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {})
    config = tool.get("pytest", {})
    config = config.get("ini_options", config)
    addopts = config.get("addopts", [])
    opts = shlex.split(addopts) if isinstance(addopts, str) else list(addopts)
    kept: list[str] = []
    i = 0
    while i < len(opts):
        opt = opts[i]
        name = opts[i + 1] if opt == "-p" and i + 1 < len(opts) else None
        if opt.startswith("-p") and len(opt) > 2:
            name = opt[2:]
        step = 2 if opt == "-p" else 1
        if name is not None and not name.startswith("no:") and not importable(name):
            setup.missing.append(name)
            for fixture in PLUGIN_FIXTURES.get(name, ()):
                setup.skip_fixtures[fixture] = f"the pytest plugin {name} is not installed"
        else:
            kept += opts[i : i + step]
        i += step
    if setup.missing:
        setup.args = ["-o", f"addopts={shlex.join(kept)}"]
    return setup


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_support_files(tree: Path) -> None:
    """Write the plugin and patch the cached conftest.py (from its pristine copy)."""
    _write_atomically(tree / f"{PLUGIN_NAME}.py", PLUGIN_SOURCE)
    conftest = tree / "tests" / "conftest.py"
    pristine = tree / "tests" / "conftest.py.orig"
    if not pristine.exists():
        shutil.copy2(conftest, pristine)
    text = pristine.read_text(encoding="utf-8")
    if text.count(CONFTEST_ANCHOR) != 1:
        fail(
            f"{pristine} does not define anyio_backend as expected "
            f"({CONFTEST_ANCHOR.splitlines()[0]!r}); the patch needs updating"
        )
    _write_atomically(conftest, text.replace(CONFTEST_ANCHOR, CONFTEST_PATCH + CONFTEST_ANCHOR))


def select_files(tree: Path, wanted: Sequence[str]) -> list[str]:
    """The test files (relative to the sdist) to run, in order."""
    if not wanted:
        found = sorted((tree / "tests").rglob("test_*.py"))
        return [p.relative_to(tree).as_posix() for p in found]
    out: list[str] = []
    for arg in wanted:
        path = arg.split("::")[0]
        candidates = [path, f"tests/{path}", f"tests/{path}.py", f"tests/test_{path}.py"]
        for cand in candidates:
            if (tree / cand).is_file():
                out.append(cand + arg[len(path) :])
                break
        else:
            fail(f"no test file {arg!r} in {tree / 'tests'}")
    return out


# --------------------------------------------------------------------------- running


@dataclass
class FileRun:
    """One pytest run over one test file."""

    file: str
    returncode: int | None
    seconds: float
    log: str
    note: str = ""


def run_file(
    tree: Path,
    target: str,
    backends: Sequence[str],
    results: Path,
    logs: Path,
    *,
    timeout: float,
    file_timeout: float,
    keyword: str | None,
    extra: Sequence[str],
    max_timeouts: int = 0,
    stall_timeout: float | None = None,
    max_restarts: int = 20,
    setup: PytestSetup | None = None,
) -> FileRun:
    """Run pytest on one file; results are appended to ``results`` (JSON lines).

    A run that stops making progress for ``stall_timeout`` seconds (default:
    the per-test timeout plus 30 s) is killed after a stack dump; the test
    it was in is recorded as failed ("hung") and pytest is started again on
    the tests not yet run. So is a run that a test ended early (a
    KeyboardInterrupt that escaped the backend, say)."""
    if stall_timeout is None:
        stall_timeout = timeout + 30
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        target,
        "-p",
        PLUGIN_NAME,
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-p",
        "no:xdist",
        "-p",
        "no:yieldloop",
        "-o",
        f"timeout={timeout:g}",
        "-q",
        "--no-header",
        "-rN",
        "--color=no",
    ]
    if keyword:
        cmd += ["-k", keyword]
    if setup is not None:
        cmd += setup.args
    cmd += list(extra)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    env["ANYIO_CONFORMANCE_BACKENDS"] = ",".join(backends)
    env["ANYIO_CONFORMANCE_RESULTS"] = str(results)
    env["ANYIO_CONFORMANCE_MAX_TIMEOUTS"] = str(max_timeouts)
    env["ANYIO_CONFORMANCE_SKIP_FIXTURES"] = json.dumps(setup.skip_fixtures if setup else {})
    env.pop("PYTEST_ADDOPTS", None)
    file = target.split("::", maxsplit=1)[0]
    log = logs / (file.replace("/", "__") + ".log")
    dump = logs / (file.replace("/", "__") + ".stacks")
    env["ANYIO_CONFORMANCE_DUMP"] = str(dump)
    start = time.monotonic()
    notes: list[str] = []
    rc: int | None = None
    log.write_text("")
    for attempt in range(1, max_restarts + 2):
        with log.open("a", encoding="utf-8") as out:
            out.write(f"\n== attempt {attempt}: {shlex.join(cmd)}\n\n")
            out.flush()
            offset = results.stat().st_size if results.exists() else 0
            proc = subprocess.Popen(
                cmd,
                cwd=tree,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                rc, stalled = _watch(
                    proc, results, stall_timeout, file_timeout - (time.monotonic() - start)
                )
            except BaseException:  # interrupted or terminated: take the run down too
                _kill(proc)
                raise
        if rc is None and not stalled:
            notes.append(f"killed after {file_timeout:g} s")
            break
        if rc in (0, 1, 5):
            break
        if stalled:
            stacks = dump.read_text(encoding="utf-8", errors="replace") if dump.exists() else ""
            message = (
                f"hung: no progress for {stall_timeout:g} s and pytest-timeout did not "
                "end it; the run was killed and resumed after it"
            )
            what, failure = "hung", {"hung": True, "longrepr": stacks[-6000:]}
        else:
            text = log.read_text(encoding="utf-8", errors="replace")
            text = text[text.rindex("== attempt") :]
            bang = [ln.strip("! ") for ln in text.splitlines() if ln.startswith("!")]
            message = f"ended the pytest run (exit {rc})" + (f": {bang[-1]}" if bang else "")
            what, failure = f"ended the run (exit {rc})", {"longrepr": text[-4000:]}
        stuck = _record_stuck(results, offset, message, failure)
        if stuck is None:
            if stalled:
                notes.append(f"stalled for {stall_timeout:g} s outside a test; killed")
            else:
                tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
                notes.append(f"pytest exit {rc}: {tail[-1] if tail else ''}")
            break
        notes.append(f"{stuck} {what}; resumed after it")
    else:
        notes.append(f"gave up after {max_restarts} restarts")
    note = "; ".join(notes)
    return FileRun(file, rc, time.monotonic() - start, str(log), note)


Record = dict[str, Any]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _watch(
    proc: subprocess.Popen[bytes], results: Path, stall_timeout: float, budget: float
) -> tuple[int | None, bool]:
    """Wait for pytest; kill it when the results file has not grown for
    ``stall_timeout`` seconds (returns (None, True)) or ``budget`` is spent
    (returns (None, False)). Before a stall kill, Python stacks are dumped."""
    deadline = time.monotonic() + budget
    size = results.stat().st_size if results.exists() else 0
    changed = time.monotonic()
    while True:
        try:
            return proc.wait(timeout=0.5), False
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        new_size = results.stat().st_size if results.exists() else 0
        if new_size != size:
            size, changed = new_size, now
        if now - changed > stall_timeout:
            try:
                os.kill(proc.pid, signal.SIGUSR1)  # faulthandler: dump every thread
                time.sleep(1.0)
            except ProcessLookupError:
                pass
            _kill(proc)
            return None, True
        if now > deadline:
            _kill(proc)
            return None, False


def _lines_with_offsets(data: bytes) -> Iterable[tuple[int, bytes]]:
    pos = 0
    for line in data.splitlines(keepends=True):
        if line.strip():
            yield pos, line
        pos += len(line)


def _record_stuck(results: Path, offset: int, message: str, extra: dict[str, Any]) -> str | None:
    """Write a "failed" result for the test that was running when pytest
    stopped early (killed for a stall, or interrupted by the test); return
    its node id (None if no test was running)."""
    collected: dict[str, Record] = {}
    finished: set[str] = set()
    started: list[str] = []
    for pos, line in _lines_with_offsets(results.read_bytes()):
        rec = json.loads(line)
        kind = rec.get("kind")
        if kind == "collected":
            collected[rec["nodeid"]] = rec
        elif kind == "result":
            finished.add(rec["nodeid"])
        elif kind == "started" and pos >= offset:
            started.append(rec["nodeid"])
    running = [n for n in started if n not in finished]
    if not running:
        return None
    nodeid = running[-1]
    base = collected.get(
        nodeid, {"nodeid": nodeid, "file": nodeid.split("::")[0], "test": nodeid, "backend": None}
    )
    rec = {
        "kind": "result",
        **{k: base[k] for k in ("nodeid", "file", "test", "backend")},
        "outcome": "failed",
        "when": "call",
        "message": message,
        **extra,
    }
    with results.open("a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
    return nodeid


def load_records(results: Path, runs: Sequence[FileRun]) -> tuple[list[Record], list[Record]]:
    """Per-test results (a collected test without a result is "not-run") and
    collection errors."""
    collected: dict[str, dict[str, Any]] = {}
    finished: dict[str, dict[str, Any]] = {}
    errors: list[dict[str, Any]] = []
    if results.exists():
        for line in results.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            kind = rec.pop("kind", "result")
            if kind == "collected":
                collected.setdefault(rec["nodeid"], rec)
            elif kind == "collect-error":
                errors.append(rec)
            elif kind == "result":
                finished[rec["nodeid"]] = rec
    notes = {run.file: run.note for run in runs}
    records = []
    for nodeid, rec in collected.items():
        if nodeid in finished:
            records.append(finished[nodeid])
        else:
            why = notes.get(rec["file"]) or "the pytest run ended before this test"
            records.append({**rec, "outcome": "not-run", "message": why})
    records += [r for n, r in finished.items() if n not in collected]
    return records, errors


# --------------------------------------------------------------------------- report


@dataclass
class Difference:
    """A test passing on the reference backend and not on the compared one."""

    file: str
    test: str
    nodeid: str
    outcome: str
    message: str


@dataclass
class Comparison:
    """Counts per file and backend, and the differences."""

    reference: str
    target: str | None
    backends: list[str]
    counts: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)
    independent: dict[str, Counter[str]] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    gains: list[Difference] = field(default_factory=list)

    @property
    def regressions(self) -> list[Difference]:
        """Differences where the compared backend failed, errored or did not run."""
        return [d for d in self.differences if d.outcome in BAD]


def compare(
    records: Iterable[dict[str, Any]], backends: Sequence[str], target: str | None = None
) -> Comparison:
    """Count outcomes per file and backend and list the differences between
    the reference backend (the first) and ``target``."""
    backends = list(backends)
    reference = backends[0]
    if target is None:
        target = TARGET if TARGET in backends else (backends[-1] if len(backends) > 1 else None)
    comp = Comparison(reference, target, backends)
    by_test: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for rec in records:
        file = rec["file"]
        backend = rec.get("backend")
        if backend is None:
            comp.independent.setdefault(file, Counter())[rec["outcome"]] += 1
            continue
        comp.counts.setdefault(file, {}).setdefault(backend, Counter())[rec["outcome"]] += 1
        by_test[rec["test"]][backend] = rec
    if target is not None:
        for test in sorted(by_test):
            per = by_test[test]
            ref, tgt = per.get(reference), per.get(target)
            if ref is None or tgt is None:
                continue
            ref_ok, tgt_ok = ref["outcome"] in PASSING, tgt["outcome"] in PASSING
            if ref_ok and not tgt_ok:
                comp.differences.append(
                    Difference(
                        tgt["file"], test, tgt["nodeid"], tgt["outcome"], tgt.get("message", "")
                    )
                )
            elif tgt_ok and not ref_ok:
                comp.gains.append(
                    Difference(
                        ref["file"], test, ref["nodeid"], ref["outcome"], ref.get("message", "")
                    )
                )
    for file in comp.independent:
        comp.counts.setdefault(file, {})
    return comp


_SHAPES = [
    (re.compile(r"0x[0-9a-fA-F]+"), "0x…"),
    (re.compile(r"'[^']*'"), "'…'"),
    (re.compile(r"\"[^\"]*\""), '"…"'),
    (re.compile(r"(?<!\w)\d+(?:\.\d+)?(?![\dx])"), "N"),
]


def error_shape(message: str) -> str:
    """A message with its variable parts made generic, for grouping."""
    shape = " ".join(message.split())
    for pattern, repl in _SHAPES:
        shape = pattern.sub(repl, shape)
    return shape[:200]


def error_groups(diffs: Sequence[Difference]) -> list[tuple[tuple[str, str], list[Difference]]]:
    """Differences grouped by (outcome, error shape), biggest group first."""
    groups: dict[tuple[str, str], list[Difference]] = defaultdict(list)
    for d in diffs:
        groups[d.outcome, error_shape(d.message)].append(d)
    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))


def _cell(counter: Counter[str] | None) -> str:
    if not counter:
        return "-"
    passed = counter["passed"] + counter["xfailed"]
    failed = counter["failed"] + counter["error"] + counter["xpassed"] + counter["not-run"]
    return f"{passed} / {failed} / {counter['skipped']}"


def _md_escape(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|").replace("`", "'")


def file_table(comp: Comparison) -> list[str]:
    """The per-file Markdown table (pass / fail / skip per backend)."""
    header = ["file", *comp.backends]
    if comp.target is not None:
        header += [f"{comp.reference} passes, {comp.target} not"]
    header.append("no backend")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    diff_count = Counter(d.file for d in comp.differences)
    bad_count = Counter(d.file for d in comp.regressions)
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    total_indep: Counter[str] = Counter()
    for file in sorted(comp.counts):
        row = [f"`{file}`"]
        for backend in comp.backends:
            counter = comp.counts[file].get(backend)
            row.append(_cell(counter))
            totals[backend].update(counter or {})
        if comp.target is not None:
            n, bad = diff_count[file], bad_count[file]
            row.append(f"{n} ({bad} failing)" if n else "0")
        indep = comp.independent.get(file)
        total_indep.update(indep or {})
        row.append(_cell(indep))
        lines.append("| " + " | ".join(row) + " |")
    row = ["**total**", *(_cell(totals[b]) for b in comp.backends)]
    if comp.target is not None:
        row.append(f"{len(comp.differences)} ({len(comp.regressions)} failing)")
    row.append(_cell(total_indep))
    lines.append("| " + " | ".join(row) + " |")
    return lines


def render_markdown(
    comp: Comparison,
    *,
    anyio: str,
    command: str,
    deps: Sequence[dict[str, str]] = (),
    collect_errors: Sequence[dict[str, Any]] = (),
    runs: Sequence[dict[str, Any]] = (),
) -> str:
    """The whole report as Markdown."""
    out = [
        f"# anyio {anyio} test suite on {', '.join(comp.backends)}",
        "",
        f"Command: `{command}`",
        "",
        f"Python {sys.version.split()[0]}; cells are passed / failed+errors / skipped "
        '(xfail counts as passed). "no backend" tests do not use the anyio_backend '
        "fixture and run once.",
        "",
        *file_table(comp),
        "",
    ]
    if comp.target is not None:
        out += [
            f"## Passing on {comp.reference}, not on {comp.target}: "
            f"{len(comp.differences)} ({len(comp.regressions)} failing, errored or not run)",
            "",
        ]
        if comp.differences:
            out += [
                "Grouped by error line (numbers, addresses and quoted names made generic):",
                "",
                "| tests | outcome | error | e.g. |",
                "|---|---|---|---|",
            ]
            for (outcome, shape), group in error_groups(comp.differences):
                out.append(
                    f"| {len(group)} | {outcome} | {_md_escape(shape, 120)} | `{group[0].test}` |"
                )
            out += ["", "Every test:", ""]
            out += ["| test | outcome | first error line |", "|---|---|---|"]
            out += [
                f"| `{d.test}` | {d.outcome} | {_md_escape(d.message)} |"
                for d in sorted(comp.differences, key=lambda d: (d.outcome not in BAD, d.test))
            ]
            out.append("")
        if comp.gains:
            out += [
                f"{len(comp.gains)} tests pass on {comp.target} and not on {comp.reference}:",
                "",
                *(
                    f"- `{g.test}` ({comp.reference}: {g.outcome}: {_md_escape(g.message, 100)})"
                    for g in comp.gains
                ),
                "",
            ]
    if collect_errors:
        out += ["## Collection errors", ""]
        out += [f"- `{e['nodeid']}`: {_md_escape(e.get('message', ''))}" for e in collect_errors]
        out.append("")
    noted = [r for r in runs if r.get("note")]
    if noted:
        out += ["## Test files whose run did not finish normally", ""]
        out += [f"- `{r['file']}`: {r['note']}" for r in noted]
        out.append("")
    if deps:
        out += ["## Test dependencies", ""]
        out += [
            f"- `{d['requirement']}`: {d['status']}"
            + (f" ({_md_escape(d['detail'], 200)})" if d.get("detail") else "")
            for d in deps
        ]
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        description="Run anyio's test suite on yieldloop and compare it with asyncio.",
    )
    p.add_argument(
        "--backends",
        default=f"asyncio,{TARGET}",
        help="comma-separated anyio_backend ids; the first is the reference "
        "(default: %(default)s; others: asyncio+uvloop, asyncio+eager, trio)",
    )
    p.add_argument(
        "--files",
        nargs="+",
        default=[],
        metavar="FILE",
        help="test files (or node ids) of anyio's sdist to run (default: all)",
    )
    p.add_argument("-k", dest="keyword", metavar="EXPR", help="pytest -k expression")
    p.add_argument("--markdown", type=Path, metavar="PATH", help="write the report here")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the raw outcomes here")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help="where the sdist is kept (default: .cache/anyio-conformance)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="pytest-timeout limit per test, in seconds (default: 30)",
    )
    p.add_argument(
        "--file-timeout",
        type=float,
        default=1200.0,
        help="limit for one test file's pytest run, in seconds (default: 1200)",
    )
    p.add_argument(
        "--stall-timeout",
        type=float,
        metavar="S",
        help="kill a test file's pytest run that makes no progress for S seconds "
        "(pytest-timeout could not end a hang), record the test as hung and resume "
        "(default: --timeout plus 30)",
    )
    p.add_argument(
        "--max-timeouts",
        type=int,
        default=3,
        metavar="N",
        help="after N tests of one backend time out in a test file, the rest of that "
        'file\'s tests on that backend are not run (reported as "not-run"); 0: no limit '
        "(default: %(default)s)",
    )
    p.add_argument(
        "--no-install", action="store_true", help="do not pip install missing test dependencies"
    )
    p.add_argument(
        "--from-json",
        type=Path,
        metavar="PATH",
        help="do not run anything: report from a file written by --json",
    )
    p.add_argument(
        "--pytest-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for pytest (repeatable)",
    )
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not args.backends:
        p.error("--backends needs at least one backend")
    unknown = [b for b in args.backends if b not in KNOWN_BACKENDS]
    if unknown and args.from_json is None:
        p.error(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(KNOWN_BACKENDS)}")
    return args


def report(data: dict[str, Any], markdown: Path | None, command: str) -> Comparison:
    """Compare, print the report and write the Markdown file."""
    comp = compare(data["results"], data["backends"])
    text = render_markdown(
        comp,
        anyio=data["anyio_version"],
        command=command,
        deps=data.get("dependencies", []),
        collect_errors=data.get("collect_errors", []),
        runs=data.get("file_runs", []),
    )
    print()
    print(text)
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(text + "\n", encoding="utf-8")
    return comp


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    command = shlex.join(
        ["python", "scripts/anyio_conformance.py", *(sys.argv[1:] if argv is None else argv)]
    )
    if args.from_json is not None:
        data = json.loads(args.from_json.read_text(encoding="utf-8"))
        comp = report(data, args.markdown, data.get("command", command))
        return 1 if comp.regressions else 0

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return run_suite(args, command)
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_suite(args: argparse.Namespace, command: str) -> int:
    """Fetch, install, run every file, report; returns the exit code."""
    version = anyio_version()
    cache = args.cache_dir.resolve()
    tree = fetch_sdist(version, cache)
    deps = install_test_deps(tree, install=not args.no_install)
    for dep in deps:
        print(f"   {dep.requirement}: {dep.status} {dep.detail}".rstrip())
    write_support_files(tree)
    setup = pytest_setup(tree)
    for name in setup.missing:
        print(f"   pytest plugin {name} cannot be imported: dropped from addopts")
        deps.append(
            Dependency(f"pytest plugin {name}", "unavailable", "tests using its fixtures skipped")
        )
    if importlib.util.find_spec("pytest_timeout") is None:
        fail("pytest-timeout is needed (a hang must fail one test, not the run)")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = cache / "runs" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    results = run_dir / "results.jsonl"
    runs: list[FileRun] = []
    targets = select_files(tree, args.files)
    print(
        f"== running {len(targets)} test file(s) of anyio {version} on "
        f"{', '.join(args.backends)} (logs: {run_dir})"
    )
    for target in targets:
        run = run_file(
            tree,
            target,
            args.backends,
            results,
            run_dir,
            timeout=args.timeout,
            max_timeouts=args.max_timeouts,
            stall_timeout=args.stall_timeout,
            setup=setup,
            file_timeout=args.file_timeout,
            keyword=args.keyword,
            extra=args.pytest_arg,
        )
        runs.append(run)
        print(
            f"   {target}: exit {run.returncode} in {run.seconds:.1f} s"
            + (f" ({run.note})" if run.note else ""),
            flush=True,
        )
    records, collect_errors = load_records(results, runs)
    data = {
        "anyio_version": version,
        "command": command,
        "backends": args.backends,
        "dependencies": [vars(d) for d in deps],
        "file_runs": [vars(r) for r in runs],
        "collect_errors": collect_errors,
        "results": records,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    comp = report(data, args.markdown, command)
    return 1 if comp.regressions else 0


if __name__ == "__main__":
    sys.exit(main())
