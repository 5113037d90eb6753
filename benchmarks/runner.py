"""Running the measurements: one child process per (repetition, workload, runtime).

The order is interleaved: repetition 1 runs every workload on every runtime,
then repetition 2 does the same, and so on, so a slow spell of the machine
hits all runtimes alike instead of all the repetitions of one. Within a
repetition the runtime order is rotated by one each time, so no runtime is
always the one that runs right after another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .registry import Runtime, Workload

#: The folder that holds the ``benchmarks`` package; children run from here.
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    """The outcome of one measurement (or of one that was not made)."""

    workload: str
    runtime: str
    rep: int
    #: "ok", "error", "timeout", "skipped" (runtime not installed) or
    #: "n/a" (the workload has no implementation for the runtime).
    status: str
    params: dict[str, Any]
    seconds: float | None = None
    #: CPU time of the process over the same span as ``seconds``.
    cpu_seconds: float | None = None
    ops: int | None = None
    ops_per_sec: float | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The run as a JSON-ready dict (what ``--json`` writes)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        """The inverse of :meth:`to_json`; unknown keys are an error."""
        return cls(**data)


def schedule(
    workloads: Sequence[Workload], runtimes: Sequence[Runtime], reps: int
) -> Iterator[tuple[int, Workload, Runtime]]:
    """Yield ``(rep, workload, runtime)`` in the interleaved, rotated order."""
    n = len(runtimes)
    for rep in range(1, reps + 1):
        shift = (rep - 1) % n if n else 0
        order = list(runtimes[shift:]) + list(runtimes[:shift])
        for workload in workloads:
            for runtime in order:
                yield rep, workload, runtime


def run_child(
    workload: Workload,
    runtime: Runtime,
    rep: int,
    params: dict[str, Any],
    timeout: float,
    python_flags: Sequence[str] = (),
) -> Run:
    """Measure ``workload`` on ``runtime`` once, in a fresh interpreter."""
    cmd = [
        sys.executable,
        *python_flags,
        "-m",
        "benchmarks._child",
        workload.name,
        runtime.name,
        json.dumps(params),
    ]
    run = Run(workload.name, runtime.name, rep, "error", params)
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        run.status = "timeout"
        run.detail = f"no result after {timeout:g} s"
        return run
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        run.detail = f"exit status {proc.returncode}: {tail}"
        return run
    try:
        record = json.loads(lines[-1])
    except json.JSONDecodeError:
        run.detail = f"unreadable output: {lines[-1][:200]}"
        return run
    run.status = record["status"]
    run.detail = record.get("reason", "")
    if run.status == "ok":
        run.seconds = record["seconds"]
        run.cpu_seconds = record.get("cpu_seconds")
        run.ops = record["ops"]
        run.ops_per_sec = record["ops_per_sec"]
    return run


def run_suite(
    workloads: Sequence[Workload],
    runtimes: Sequence[Runtime],
    reps: int,
    *,
    quick: bool,
    timeout: float,
    python_flags: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> list[Run]:
    """Run every measurement and return them all, the ones not made included."""
    runs: list[Run] = []
    available: list[Runtime] = []
    for runtime in runtimes:
        missing = runtime.missing()
        if missing is None:
            available.append(runtime)
            continue
        for workload in workloads:
            runs.append(
                Run(
                    workload.name,
                    runtime.name,
                    0,
                    "skipped",
                    workload.params(quick),
                    detail=f"{missing} is not installed",
                )
            )
    for workload in workloads:
        for runtime in available:
            if runtime.flavor not in workload.impls:
                runs.append(
                    Run(
                        workload.name,
                        runtime.name,
                        0,
                        "n/a",
                        workload.params(quick),
                        detail=f"no {runtime.flavor!r} implementation",
                    )
                )

    todo = [
        (rep, w, r) for rep, w, r in schedule(workloads, available, reps) if r.flavor in w.impls
    ]
    width_w = max((len(w.name) for w in workloads), default=0)
    width_r = max((len(r.name) for r in available), default=0)
    for i, (rep, workload, runtime) in enumerate(todo, 1):
        run = run_child(workload, runtime, rep, workload.params(quick), timeout, python_flags)
        runs.append(run)
        if progress is not None:
            if run.status == "ok":
                assert run.ops_per_sec is not None and run.seconds is not None
                what = f"{run.ops_per_sec:>14,.0f} ops/s  {run.seconds:8.3f} s"
            else:
                what = f"{run.status.upper()}: {run.detail}"
            progress(
                f"[{i:>{len(str(len(todo)))}}/{len(todo)}] rep {rep}/{reps}  "
                f"{workload.name:<{width_w}}  {runtime.name:<{width_r}}  {what}"
            )
    return runs


def child_env_note() -> str:
    """Environment variables that change what the children measure, if set."""
    risky = ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE", "PYTHONMALLOC", "PYTHONTRACEMALLOC")
    found = [f"{k}={os.environ[k]}" for k in risky if os.environ.get(k)]
    return ", ".join(found)
