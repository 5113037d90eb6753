"""The command line: ``python -m yieldloop <command> [options]``.

Layer 5 (tools). Each command is a module with ``add_arguments(parser)`` and
``main(args) -> int`` (the exit status); to add one, write that module and
list it in :data:`COMMANDS`. ``python -m yieldloop`` alone prints the help.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import __version__, _demo, _tools
from ._tools import _ps

__all__ = ["COMMANDS", "Command", "build_parser", "main"]

PROG = "python -m yieldloop"


@dataclass(frozen=True)
class Command:
    """One subcommand of ``python -m yieldloop``."""

    name: str
    help: str  # one line, shown in the command list
    description: str  # shown by ``python -m yieldloop <name> --help``
    add_arguments: Callable[[argparse.ArgumentParser], None]
    main: Callable[[argparse.Namespace], int]


COMMANDS: tuple[Command, ...] = (
    Command(
        name="demo",
        help="watch three workers go from blocking calls to yield to async/await",
        description=(
            "Run the same three workers (download a page, connect to a db, write "
            "to it) three ways - blocking, generator coroutines, async/await - and "
            "draw a timeline of each, so you can see the waits overlap."
        ),
        add_arguments=_demo.add_arguments,
        main=_demo.main,
    ),
    Command(
        name="trace",
        help="draw a trace file (run(main, trace=FILE)) as a timeline: terminal or HTML",
        description=(
            "Draw a trace written by yieldloop.run(main, trace=FILE) or "
            "YIELDLOOP_TRACE=FILE: a row per task, grouped by task group, showing "
            "when each task ran, waited for the CPU, slept, or waited on I/O, a "
            "primitive or a child. --summary prints per-task totals instead; "
            "--html OUT writes a self-contained web page with wake-up arrows."
        ),
        add_arguments=_tools.add_arguments,
        main=_tools.main,
    ),
    Command(
        name="ps",
        help="list the tasks of a running program (run(main, monitor=True))",
        description=(
            "Ask a running yieldloop program (started with run(main, monitor=True) "
            "or YIELDLOOP_MONITOR=1) for its tasks: name, state, what each waits "
            "on (a lock and its holder, a queue, an fd, a deadline) and its group. "
            "It answers even while the program's loop is stuck in a blocking call."
        ),
        add_arguments=_ps.add_arguments,
        main=_ps.main,
    ),
    Command(
        name="pstree",
        help="the tasks of a running program as a tree of task groups, with stacks",
        description=(
            "Like ps, as a tree: each task under the task that opened its group, "
            "with the stack each one is waiting in."
        ),
        add_arguments=_ps.add_arguments,
        main=_ps.main_tree,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command in :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="yieldloop: a small, structured async runtime in pure Python.",
        epilog=f"Run '{PROG} <command> --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"yieldloop {__version__}")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="<command>")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.description)
        command.add_arguments(p)
        p.set_defaults(_command=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return
    the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command | None = getattr(args, "_command", None)
    if command is None:
        parser.print_help()
        return 0
    try:
        return command.main(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``... | head``): stop quietly, and keep the
        # interpreter from complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
