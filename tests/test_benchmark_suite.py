"""The benchmark suite's own machinery: markdown sections, series, the new
workloads at their ``--quick`` sizes on yieldloop and asyncio (both always
installed), and the report built from runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import _child, runtimes, workloads  # noqa: F401  (fill the registries)
from benchmarks.mdsection import update_section
from benchmarks.registry import SERIES, WORKLOADS, Workload
from benchmarks.report import main_rows, markdown, series_tables, summarize, text_table
from benchmarks.runner import Run
from benchmarks.workloads.async_tree import tasks_in_tree

KEY = "python -m benchmarks"


def test_section_created_replaced_and_others_kept(tmp_path: Path) -> None:
    path = tmp_path / "b.md"
    assert update_section(path, KEY, "one") == "created"
    assert update_section(path, "python -m benchmarks.memory", "## Memory\n\nm") == "appended"
    assert update_section(path, KEY, "two\nlines") == "replaced"
    text = path.read_text()
    assert "one" not in text
    assert "two\nlines" in text
    assert text.index("two") < text.index("## Memory")
    assert update_section(path, "python -m benchmarks.memory", "## Memory\n\nm2") == "replaced"
    text = path.read_text()
    assert text.count("## Memory") == 1
    assert "m2" in text
    assert "two\nlines" in text


def test_section_appended_to_a_file_without_markers(tmp_path: Path) -> None:
    path = tmp_path / "b.md"
    path.write_text("# hand written\n\nkeep me")
    assert update_section(path, KEY, "generated") == "appended"
    text = path.read_text()
    assert text.startswith("# hand written\n\nkeep me\n\n<!-- python -m benchmarks: begin")
    assert text.endswith("<!-- python -m benchmarks: end -->\n")


def test_broken_markers_leave_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "b.md"
    broken = "<!-- python -m benchmarks: begin -->\nno end\n"
    path.write_text(broken)
    with pytest.raises(ValueError, match="markers"):
        update_section(path, KEY, "x")
    assert path.read_text() == broken
    with pytest.raises(ValueError, match="bad section key"):
        update_section(path, "a --> b", "x")


def test_series_points_and_quick() -> None:
    timer = [w for w in WORKLOADS.values() if w.series is SERIES["timer_scaling"]]
    assert [w.x for w in timer] == [10, 100, 1_000, 10_000]
    assert [w.in_quick for w in timer] == [True, True, False, False]
    for name in ("live_sleep0", "live_switch"):
        live = [w for w in WORKLOADS.values() if w.series is SERIES[name]]
        assert [w.x for w in live] == [1_000, 10_000, 100_000]
        assert [w.in_quick for w in live] == [True, False, False]
        assert all(w.self_timed for w in live)
    with pytest.raises(ValueError, match="not part of --quick"):
        WORKLOADS["timer_scaling_10000"].params(quick=True)
    assert tasks_in_tree(6, 6) == 55_986


def test_workload_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="both series and x"):
        Workload("w", "d", {"n": 1}, {"n": 1}, ops=lambda p: 1, x=3)
    with pytest.raises(ValueError, match="different parameters"):
        Workload("w", "d", {"n": 1}, {"m": 1}, ops=lambda p: 1)


NEW = (
    "async_tree_none",
    "async_tree_io",
    "async_tree_memoization",
    "async_tree_none_tg",
    "timer_scaling_10",
    "live_sleep0_1000",
    "live_switch_1000",
)


@pytest.mark.parametrize("runtime", ["yieldloop", "asyncio"])
@pytest.mark.parametrize("name", NEW)
def test_new_workloads_run_and_count(name: str, runtime: str) -> None:
    params = WORKLOADS[name].params(quick=False)
    if name.startswith("async_tree"):
        params["levels"] = 3
    elif name.startswith("timer_scaling"):
        params["rounds"] = 3  # the sleeps dominate; a few are enough here
    else:
        params["rounds"] = 500
    record = _child.measure(name, runtime, params)
    assert record["status"] == "ok"
    assert record["ops"] == WORKLOADS[name].ops(params)
    assert isinstance(record["seconds"], float) and record["seconds"] > 0


def _run(workload: str, runtime: str, rate: float, rep: int = 1) -> Run:
    params = WORKLOADS[workload].params(quick=False)
    ops = WORKLOADS[workload].ops(params)
    return Run(workload, runtime, rep, "ok", params, ops / rate, ops / rate / 2, ops, rate)


def test_report_splits_series_from_the_main_table(tmp_path: Path) -> None:
    from benchmarks.registry import RUNTIMES

    names = ["async_tree_none", "live_sleep0_1000", "live_sleep0_100000"]
    wls = [WORKLOADS[n] for n in names]
    rts = [RUNTIMES["yieldloop"], RUNTIMES["asyncio"]]
    runs = [
        _run("async_tree_none", "yieldloop", 200_000.0),
        _run("async_tree_none", "asyncio", 50_000.0),
        _run("live_sleep0_1000", "yieldloop", 2_000_000.0),
        _run("live_sleep0_100000", "yieldloop", 1_000_000.0),
        _run("live_sleep0_1000", "asyncio", 400_000.0),
        _run("live_sleep0_100000", "asyncio", 400_000.0),
    ]
    rows = summarize(runs, wls, rts)
    assert [r.workload for r in main_rows(rows)] == ["async_tree_none"] * 2
    assert main_rows(rows)[0].vs_asyncio == pytest.approx(4.0)
    (table,) = series_tables(rows, rts)
    rates = table.parts[0][2]
    assert rates[0] == ["yieldloop", "2,000,000", "1,000,000", "0.50"]
    assert rates[1] == ["asyncio", "400,000", "400,000", "1.00"]
    text = text_table(rows, rts)
    assert "live_sleep0" in text and "4.00x" in text
    meta = {
        "command": "x",
        "date": "d",
        "python": "p",
        "cpu": "c",
        "nproc": 2,
        "versions": {},
        "reps": 1,
        "params": {w.name: w.params(False) for w in wls},
    }
    md = markdown(rows, rts, wls, meta, chart="benchmarks.png")
    assert "![" in md and "(benchmarks.png)" in md
    assert "### live_sleep0" in md
