"""One measurement, in a process of its own.

    python -m benchmarks._child WORKLOAD RUNTIME PARAMS_JSON

Imports the runtime, builds the workload's ``main`` (both outside the timed
region), collects garbage, then times the runtime's runner call with
``time.perf_counter`` - loop start, the run and teardown - the same way for
every runtime. Prints one JSON line on stdout:

    {"status": "ok", "seconds": ..., "ops": ..., "ops_per_sec": ...}

or ``{"status": "skipped", "reason": ...}`` when the runtime cannot be
imported. A wrong result or an exception ends with a traceback on stderr and
exit status 1.
"""

from __future__ import annotations

import gc
import json
import sys
import time

from .registry import RUNTIMES, WORKLOADS


def measure(workload_name: str, runtime_name: str, params: dict[str, object]) -> dict[str, object]:
    from . import runtimes, workloads  # noqa: F401  (fill the registries)

    workload = WORKLOADS[workload_name]
    runtime = RUNTIMES[runtime_name]
    try:
        runner = runtime.load()
    except ImportError as exc:
        return {"status": "skipped", "reason": f"cannot import: {exc}"}
    factory = workload.impls.get(runtime.flavor)
    if factory is None:
        return {"status": "n/a", "reason": f"no {runtime.flavor!r} implementation"}
    main = factory(params)
    ops = workload.ops(params)

    gc.collect()
    cpu_start = time.process_time()
    start = time.perf_counter()
    result = runner(main)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start

    if workload.self_timed:
        if not (isinstance(result, tuple) and len(result) == 3):
            raise AssertionError(
                f"{workload_name} on {runtime_name}: a self-timed main must return "
                f"(ops, seconds, cpu_seconds), not {result!r}"
            )
        result, seconds, cpu_seconds = result
        if not seconds > 0:
            raise AssertionError(f"{workload_name} on {runtime_name}: timed {seconds!r} s")
    if result != ops:
        raise AssertionError(
            f"{workload_name} on {runtime_name}: main returned {result!r}, expected {ops}"
        )
    return {
        "status": "ok",
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "ops": ops,
        "ops_per_sec": ops / seconds,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    workload_name, runtime_name, params_json = argv
    record = measure(workload_name, runtime_name, json.loads(params_json))
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
