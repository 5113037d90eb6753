"""Run several commands at once, a few at a time, and report each as it ends.

A small ``xargs -P``: each command runs as a subprocess with its output
captured; at most ``--jobs`` run at the same time; the whole batch must be
done within ``--timeout`` seconds, or the commands still running are stopped
(SIGTERM, then SIGKILL) and reaped. Results are printed in the order the
commands finish, with how long each took::

    python examples/parallel_fetch.py                       # a few Python snippets
    python examples/parallel_fetch.py --jobs 2 \\
        --cmd 'curl -sI https://example.org' --cmd 'sleep 1' --cmd 'uname -a'
    python examples/parallel_fetch.py --timeout 1 --cmd 'sleep 5'   # times out

The first line printed says how many commands will run; the exit status is 0
when every command exited with status 0, 1 otherwise. Ctrl-C stops the
commands still running and exits.

What it shows: ``run_process(..., capture_stdout=True)`` in a task per
command, a ``CapacityLimiter`` to cap how many run at once, and
``fail_after`` around the task group as an overall deadline - cancelling a
``run_process`` stops its child, so a timeout leaves nothing running.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass

import yieldloop

#: Seconds a stopped command gets between SIGTERM and SIGKILL.
KILL_GRACE = 2.0

#: Lines of a command's output shown under its result.
SHOWN_LINES = 5

#: The commands run when no ``--cmd`` is given: small Python programs.
DEFAULT_SNIPPETS = [
    "import time; time.sleep(0.8); print('slept 0.8 s')",
    "import platform; print('Python', platform.python_version(), 'on', platform.system())",
    "import time; time.sleep(0.3); print('slept 0.3 s')",
    "import hashlib; print('sha256 of 20 MB:', hashlib.sha256(bytes(2 * 10**7)).hexdigest())",
    "import os; print(len(os.listdir('.')), 'entries in', os.getcwd())",
    "import time; time.sleep(0.5); print('slept 0.5 s')",
]


@dataclass
class Job:
    """One command, and what became of it."""

    argv: list[str]
    label: str
    ok: bool = False
    finished: bool = False


def shown(output: bytes) -> str:
    """The first lines of ``output``, indented, for the report."""
    lines = output.decode(errors="replace").splitlines()
    text = "".join(f"    {line}\n" for line in lines[:SHOWN_LINES])
    if len(lines) > SHOWN_LINES:
        text += f"    ... ({len(lines) - SHOWN_LINES} more lines)\n"
    return text


async def run_job(job: Job, limiter: yieldloop.CapacityLimiter, started: float) -> None:
    """Wait for a free slot, run ``job``, print how it went."""
    async with limiter:  # at most --jobs tasks get past this line at once
        begin = yieldloop.current_time()
        try:
            result = await yieldloop.run_process(
                job.argv,
                capture_stdout=True,
                capture_stderr=True,
                check=False,  # a failing command is a result to report, not an error
                kill_grace=KILL_GRACE,
            )
        except OSError as exc:  # e.g. no such program
            status, output = f"cannot start: {exc}", b""
        else:
            job.ok = result.returncode == 0
            status = "ok" if job.ok else f"exit status {result.returncode}"
            output = result.stdout if job.ok else result.stdout + result.stderr
        end = yieldloop.current_time()
    job.finished = True
    print(
        f"[{end - started:6.2f} s] {job.label}: {status}, took {end - begin:.2f} s\n"
        + shown(output),
        end="",
        flush=True,
    )


async def main(jobs: list[Job], max_jobs: int, timeout: float) -> int:
    """Run every job, ``max_jobs`` at a time, within ``timeout`` seconds.
    Returns the exit status."""
    print(f"running {len(jobs)} commands, at most {max_jobs} at a time", flush=True)
    limiter = yieldloop.CapacityLimiter(max_jobs)
    started = yieldloop.current_time()
    try:
        # fail_after cancels everything inside when the time is up - here the
        # task group, hence every run_process, hence every child - and then
        # raises TimeoutError.
        with yieldloop.fail_after(timeout):
            async with yieldloop.TaskGroup() as tg:
                for job in jobs:
                    tg.spawn(run_job, job, limiter, started, name=job.label)
    except TimeoutError:
        done = sum(job.finished for job in jobs)
        print(
            f"timed out after {timeout} s: {done} of {len(jobs)} commands finished, "
            "the others were stopped",
            flush=True,
        )
        return 1
    failed = sum(not job.ok for job in jobs)
    elapsed = yieldloop.current_time() - started
    print(f"{len(jobs) - failed} of {len(jobs)} commands succeeded in {elapsed:.2f} s", flush=True)
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Run commands in parallel subprocesses with yieldloop."
    )
    parser.add_argument(
        "--cmd",
        action="append",
        metavar="COMMAND",
        help="a command to run (split like a shell does, but not run by a shell); "
        "give it several times. Default: a few Python snippets",
    )
    parser.add_argument("--jobs", type=int, default=3, help="commands running at once (3)")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds for the whole batch (60)"
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if not args.timeout > 0:
        parser.error(f"--timeout must be more than 0, got {args.timeout}")
    if args.cmd is None:
        args.jobs_list = [
            Job([sys.executable, "-c", code], f'python -c "{code}"') for code in DEFAULT_SNIPPETS
        ]
    else:
        args.jobs_list = []
        for command in args.cmd:
            try:
                argv = shlex.split(command)
            except ValueError as exc:
                parser.error(f"cannot split --cmd {command!r}: {exc}")
            if not argv:
                parser.error("--cmd needs a command, got an empty string")
            args.jobs_list.append(Job(argv, command))
    return args


if __name__ == "__main__":
    options = parse_args()
    try:
        status = yieldloop.run(main, options.jobs_list, options.jobs, options.timeout)
    except KeyboardInterrupt:  # Ctrl-C: the running commands were stopped
        status = 0
    sys.exit(status)
