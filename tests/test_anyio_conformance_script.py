"""scripts/anyio_conformance.py without the network: the comparison, the
report, the dependency list, the conftest patch, and one pytest run over a
small stand-in for anyio's test tree."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "anyio_conformance.py"


@pytest.fixture(scope="module")
def conf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("anyio_conformance", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def rec(test: str, backend: str | None, outcome: str, message: str = "") -> dict[str, object]:
    file = test.split("::")[0]
    if backend is None:
        nodeid = test
    elif "[" in test:
        nodeid = test.replace("[", f"[{backend}-")
    else:
        nodeid = f"{test}[{backend}]"
    return {
        "nodeid": nodeid,
        "file": file,
        "test": test,
        "backend": backend,
        "outcome": outcome,
        "message": message,
    }


RECORDS = [
    rec("tests/test_a.py::test_ok", "asyncio", "passed"),
    rec("tests/test_a.py::test_ok", "yieldloop", "passed"),
    rec("tests/test_a.py::test_broken", "asyncio", "passed"),
    rec("tests/test_a.py::test_broken", "yieldloop", "failed", "NotImplementedError: x | y"),
    rec("tests/test_a.py::test_skip", "asyncio", "passed"),
    rec("tests/test_a.py::test_skip", "yieldloop", "skipped", "asyncio only"),
    rec("tests/test_a.py::test_sync", None, "passed"),
    rec("tests/test_b.py::test_x[p1]", "asyncio", "failed", "boom"),
    rec("tests/test_b.py::test_x[p1]", "yieldloop", "passed"),
    rec("tests/test_b.py::test_hang", "asyncio", "xfailed", "known"),
    rec("tests/test_b.py::test_hang", "yieldloop", "not-run", "killed after 5 s"),
    rec("tests/test_b.py::test_asyncio_only", "asyncio", "passed"),
]


def test_compare_counts_and_differences(conf: ModuleType) -> None:
    comp = conf.compare(RECORDS, ["asyncio", "yieldloop"])
    assert comp.reference == "asyncio" and comp.target == "yieldloop"
    assert comp.counts["tests/test_a.py"]["asyncio"]["passed"] == 3
    assert comp.counts["tests/test_a.py"]["yieldloop"]["failed"] == 1
    assert comp.independent["tests/test_a.py"]["passed"] == 1
    diffs = {(d.test, d.outcome) for d in comp.differences}
    assert diffs == {
        ("tests/test_a.py::test_broken", "failed"),
        ("tests/test_a.py::test_skip", "skipped"),
        ("tests/test_b.py::test_hang", "not-run"),
    }
    assert {d.test for d in comp.regressions} == {
        "tests/test_a.py::test_broken",
        "tests/test_b.py::test_hang",
    }
    assert [g.test for g in comp.gains] == ["tests/test_b.py::test_x[p1]"]


def test_compare_without_yieldloop_uses_the_last_backend(conf: ModuleType) -> None:
    records = [{**r, "backend": "trio"} if r["backend"] == "yieldloop" else r for r in RECORDS]
    comp = conf.compare(records, ["asyncio", "trio"])
    assert comp.target == "trio"
    assert len(comp.regressions) == 2
    assert conf.compare(RECORDS, ["asyncio"]).target is None


def test_markdown_report(conf: ModuleType) -> None:
    comp = conf.compare(RECORDS, ["asyncio", "yieldloop"])
    text = conf.render_markdown(
        comp,
        anyio="4.16.0",
        command="python scripts/anyio_conformance.py -k x",
        deps=[{"requirement": "truststore", "status": "unavailable", "detail": "no"}],
        collect_errors=[{"nodeid": "tests/test_c.py", "message": "ImportError: nope"}],
        runs=[{"file": "tests/test_b.py", "note": "killed after 5 s"}],
    )
    lines = text.splitlines()
    assert lines[0] == "# anyio 4.16.0 test suite on asyncio, yieldloop"
    assert "`python scripts/anyio_conformance.py -k x`" in text
    header = "| file | asyncio | yieldloop | asyncio passes, yieldloop not | no backend |"
    assert header in lines
    assert "| `tests/test_a.py` | 3 / 0 / 0 | 1 / 1 / 1 | 2 (1 failing) | 1 / 0 / 0 |" in lines
    assert "| `tests/test_b.py` | 2 / 1 / 0 | 1 / 1 / 0 | 1 (1 failing) | - |" in lines
    assert "| **total** | 5 / 1 / 0 | 2 / 2 / 1 | 3 (2 failing) | 1 / 0 / 0 |" in lines
    # failing differences first; the pipe in the message is escaped
    rows = [ln for ln in lines if ln.startswith("| `tests/test_")]
    diff_rows = [ln for ln in rows if "|" in ln and ("failed" in ln or "not-run" in ln)]
    assert diff_rows[0].startswith("| `tests/test_a.py::test_broken` | failed |")
    assert "NotImplementedError: x \\| y" in diff_rows[0]
    assert "| `tests/test_a.py::test_skip` | skipped | asyncio only |" in lines
    assert "| 1 | failed | NotImplementedError: x \\| y | `tests/test_a.py::test_broken` |" in lines
    assert "- `tests/test_c.py`: ImportError: nope" in lines
    assert "- `tests/test_b.py`: killed after 5 s" in lines
    assert "- `truststore`: unavailable (no)" in lines


def test_error_shape(conf: ModuleType) -> None:
    shape = conf.error_shape('TypeError: no  weakref to "Task" at 0x7f12, line 12 took 3.5s')
    assert shape == 'TypeError: no weakref to "…" at 0x…, line N took Ns'
    diffs = [conf.Difference("f", f"t{i}", f"t{i}", "failed", f"E: 'x{i}'") for i in range(3)]
    diffs.append(conf.Difference("f", "u", "u", "error", "E: 'y'"))
    groups = conf.error_groups(diffs)
    assert [(key, len(g)) for key, g in groups] == [
        (("failed", "E: '…'"), 3),
        (("error", "E: '…'"), 1),
    ]


def test_requirements_of_tests(conf: ModuleType) -> None:
    pyproject = {
        "dependency-groups": {
            "base": ["pytest >= 9.0"],
            "test": [
                {"include-group": "base"},
                "uvloop >= 0.22.1; platform_python_implementation == 'CPython'\n    and x",
            ],
        },
        "project": {"optional-dependencies": {"test": ["unused"]}},
    }
    reqs = conf.requirements_of_tests(pyproject)
    assert reqs == [
        "pytest >= 9.0",
        "uvloop >= 0.22.1; platform_python_implementation == 'CPython' and x",
    ]
    assert conf.requirements_of_tests({"project": {"optional-dependencies": {"test": ["a"]}}}) == [
        "a"
    ]


def test_select_files(conf: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "tests" / "streams").mkdir(parents=True)
    for name in ("tests/test_a.py", "tests/streams/test_b.py"):
        (tmp_path / name).write_text("")
    assert conf.select_files(tmp_path, []) == ["tests/streams/test_b.py", "tests/test_a.py"]
    assert conf.select_files(tmp_path, ["test_a.py::test_x", "tests/streams/test_b.py"]) == [
        "tests/test_a.py::test_x",
        "tests/streams/test_b.py",
    ]
    with pytest.raises(SystemExit):
        conf.select_files(tmp_path, ["tests/test_missing.py"])


FAKE_CONFTEST = """\
import pytest

backend_params = [
    pytest.param(("asyncio", {"debug": True}), id="asyncio"),
    pytest.param("trio"),
]


@pytest.fixture(params=backend_params)
def anyio_backend(request):
    return request.param
"""

FAKE_TESTS = """\
import pytest


@pytest.mark.anyio
async def test_pass():
    pass


@pytest.mark.anyio
@pytest.mark.parametrize("n", [1, 2])
async def test_param(n, anyio_backend_name):
    assert anyio_backend_name == "asyncio" or n == 1, "only n=1 off asyncio"


@pytest.mark.anyio
async def test_skip(anyio_backend_name):
    if anyio_backend_name != "asyncio":
        pytest.skip("asyncio only here")


def test_sync():
    pass
"""


def make_tree(root: Path) -> Path:
    (root / "tests").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "tests" / "__init__.py").write_text("")
    (root / "tests" / "conftest.py").write_text(FAKE_CONFTEST)
    (root / "tests" / "test_fake.py").write_text(FAKE_TESTS)
    return root


def test_conftest_patch_is_idempotent(conf: ModuleType, tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    conf.write_support_files(tree)
    conf.write_support_files(tree)
    text = (tree / "tests" / "conftest.py").read_text()
    assert text.count("select_backend_params(backend_params)") == 1
    assert (tree / "tests" / "conftest.py.orig").read_text() == FAKE_CONFTEST
    assert (tree / f"{conf.PLUGIN_NAME}.py").exists()
    (tree / "tests" / "conftest.py.orig").write_text("import pytest\n")
    with pytest.raises(SystemExit):
        conf.write_support_files(tree)


def test_run_over_a_small_tree(conf: ModuleType, tmp_path: Path) -> None:
    pytest.importorskip("anyio")
    pytest.importorskip("trio")
    tree = make_tree(tmp_path / "tree")
    conf.write_support_files(tree)
    results = tmp_path / "results.jsonl"
    run = conf.run_file(
        tree,
        "tests/test_fake.py",
        ["asyncio", "trio"],
        results,
        tmp_path,
        timeout=30,
        file_timeout=120,
        keyword=None,
        extra=[],
    )
    assert run.returncode == 1, Path(run.log).read_text()
    records, errors = conf.load_records(results, [run])
    assert errors == []
    got = {(r["test"], r["backend"]): (r["outcome"], r.get("message", "")) for r in records}
    base = "tests/test_fake.py::"
    assert got[(base + "test_pass", "asyncio")][0] == "passed"
    assert got[(base + "test_pass", "trio")][0] == "passed"
    assert got[(base + "test_param[2]", "trio")][0] == "failed"
    assert "only n=1 off asyncio" in got[(base + "test_param[2]", "trio")][1]
    assert got[(base + "test_skip", "trio")] == ("skipped", "asyncio only here")
    assert got[(base + "test_sync", None)][0] == "passed"
    assert len(records) == 9
    comp = conf.compare(records, ["asyncio", "trio"])
    assert [(d.test, d.outcome) for d in comp.differences] == [
        (base + "test_param[2]", "failed"),
        (base + "test_skip", "skipped"),
    ]
    # a backend not asked for is not run at all
    results2 = tmp_path / "results2.jsonl"
    run = conf.run_file(
        tree,
        "tests/test_fake.py",
        ["asyncio"],
        results2,
        tmp_path,
        timeout=30,
        file_timeout=120,
        keyword="pass",
        extra=[],
    )
    assert run.returncode == 0, Path(run.log).read_text()
    records, _ = conf.load_records(results2, [run])
    assert [(r["test"], r["backend"], r["outcome"]) for r in records] == [
        (base + "test_pass", "asyncio", "passed")
    ]
    data = {"anyio_version": "0", "backends": ["asyncio"], "results": records}
    (tmp_path / "raw.json").write_text(json.dumps(data))
    md = tmp_path / "out.md"
    assert conf.main(["--from-json", str(tmp_path / "raw.json"), "--markdown", str(md)]) == 0
    assert "| `tests/test_fake.py` | 1 / 0 / 0 | - |" in md.read_text()


FAKE_HANGS = """\
import time

import pytest


@pytest.mark.anyio
@pytest.mark.parametrize("n", [1, 2, 3])
async def test_hang(n, anyio_backend_name):
    if anyio_backend_name == "trio":
        time.sleep(10)
"""


def test_gives_up_after_timeouts(conf: ModuleType, tmp_path: Path) -> None:
    pytest.importorskip("anyio")
    pytest.importorskip("trio")
    tree = make_tree(tmp_path / "tree")
    (tree / "tests" / "test_hangs.py").write_text(FAKE_HANGS)
    conf.write_support_files(tree)
    results = tmp_path / "results.jsonl"
    run = conf.run_file(
        tree,
        "tests/test_hangs.py",
        ["asyncio", "trio"],
        results,
        tmp_path,
        timeout=1,
        file_timeout=120,
        keyword=None,
        extra=[],
        max_timeouts=1,
    )
    assert run.returncode == 1, Path(run.log).read_text()
    records, _ = conf.load_records(results, [run])
    got = {(r["test"], r["backend"]): r for r in records}
    base = "tests/test_hangs.py::test_hang"
    assert [got[base + f"[{n}]", "asyncio"]["outcome"] for n in (1, 2, 3)] == ["passed"] * 3
    first = got[base + "[1]", "trio"]
    assert (first["outcome"], first["message"]) == (
        "failed",
        "Failed: Timeout (>1.0s) from pytest-timeout.",
    )
    for n in (2, 3):
        rec = got[base + f"[{n}]", "trio"]
        assert rec["outcome"] == "not-run"
        assert rec["message"] == "not run: gave up after 1 timeouts on trio in this file"


FAKE_STUCK = """\
import signal
import time

import pytest


@pytest.mark.anyio
@pytest.mark.parametrize("n", [1, 2, 3])
async def test_stuck(n, anyio_backend_name):
    if anyio_backend_name == "trio" and n == 1:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(60)
    if anyio_backend_name == "trio" and n == 2:
        raise KeyboardInterrupt
"""


def test_a_hang_is_killed_and_the_run_resumed(conf: ModuleType, tmp_path: Path) -> None:
    pytest.importorskip("anyio")
    pytest.importorskip("trio")
    tree = make_tree(tmp_path / "tree")
    (tree / "tests" / "test_stuck.py").write_text(FAKE_STUCK)
    conf.write_support_files(tree)
    results = tmp_path / "results.jsonl"
    run = conf.run_file(
        tree,
        "tests/test_stuck.py",
        ["asyncio", "trio"],
        results,
        tmp_path,
        timeout=1,
        file_timeout=120,
        keyword=None,
        extra=[],
        stall_timeout=4,
    )
    log = Path(run.log).read_text()
    assert run.returncode == 0, log
    assert run.note == (
        "tests/test_stuck.py::test_stuck[trio-1] hung; resumed after it; "
        "tests/test_stuck.py::test_stuck[trio-2] ended the run (exit 2); resumed after it"
    )
    assert log.count("== attempt") == 3
    records, _ = conf.load_records(results, [run])
    got = {r["nodeid"]: r for r in records}
    assert len(got) == 6
    hung = got["tests/test_stuck.py::test_stuck[trio-1]"]
    assert hung["outcome"] == "failed" and hung["hung"]
    assert hung["message"].startswith("hung: no progress for 4 s")
    assert "test_stuck.py" in hung["longrepr"]  # the stack dump
    interrupted = got["tests/test_stuck.py::test_stuck[trio-2]"]
    assert interrupted["outcome"] == "failed"
    assert interrupted["message"] == "ended the pytest run (exit 2): KeyboardInterrupt"
    others = [
        r["outcome"] for n, r in got.items() if n not in (hung["nodeid"], interrupted["nodeid"])
    ]
    assert others == ["passed"] * 4


def test_missing_addopts_plugins_are_dropped(conf: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pytest]\naddopts = ["-rsfE", "-p", "anyio", "-p", "pytest_mock", '
        '"-p", "no:trio", "-ptimeout"]\n'
    )
    setup = conf.pytest_setup(tmp_path, importable=lambda name: name != "pytest_mock")
    assert setup.missing == ["pytest_mock"]
    assert setup.args == ["-o", "addopts=-rsfE -p anyio -p no:trio -ptimeout"]
    assert setup.skip_fixtures["mocker"] == "the pytest plugin pytest_mock is not installed"
    assert conf.pytest_setup(tmp_path, importable=lambda name: True).args == []


def test_tests_needing_a_missing_plugin_are_skipped(conf: ModuleType, tmp_path: Path) -> None:
    pytest.importorskip("anyio")
    tree = make_tree(tmp_path / "tree")
    (tree / "pytest.ini").write_text("[pytest]\naddopts = -p not_installed_plugin_xyz\n")
    (tree / "tests" / "test_fixture.py").write_text(
        "import pytest\n\n\n@pytest.mark.anyio\nasync def test_uses(mocker):\n    pass\n"
    )
    conf.write_support_files(tree)
    setup = conf.PytestSetup(
        args=["-o", "addopts="], skip_fixtures={"mocker": "pytest-mock is missing"}
    )
    results = tmp_path / "results.jsonl"
    run = conf.run_file(
        tree,
        "tests/test_fixture.py",
        ["asyncio"],
        results,
        tmp_path,
        timeout=30,
        file_timeout=120,
        keyword=None,
        extra=[],
        setup=setup,
    )
    assert run.returncode == 0, Path(run.log).read_text()
    records, _ = conf.load_records(results, [run])
    assert [(r["outcome"], r["message"]) for r in records] == [
        ("skipped", "pytest-mock is missing")
    ]
