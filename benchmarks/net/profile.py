"""Where a server's time goes: its cProfile stats, summed up.

``python -m benchmarks.net --profile SERVER`` runs each selected case once
with the server under :mod:`cProfile` (``--profile-dir`` keeps the
``.pstats`` files); this module turns the stats into two tables: the
functions with the most *own* time (``tottime``, the time spent in the
function itself, not in what it calls), and the own time summed per source
file - the share of each layer of the runtime. Shares are of the total own
time of the profiled process; the server's profiler times CPU time
(``time.process_time``), so time the process spent preempted by others is
not counted. cProfile slows Python code down more than C
calls, so shares of Python functions come out somewhat higher than they
are without it; compare them with each other, not with wall time.
"""

from __future__ import annotations

import os
import pstats
from dataclasses import dataclass

__all__ = ["ProfileSummary", "summarize_profile", "format_profile"]


@dataclass
class FunctionTime:
    """One function's share of the profile."""

    name: str
    calls: int
    tottime: float
    cumtime: float
    share: float


@dataclass
class ProfileSummary:
    """The top functions and the per-file totals of one profile."""

    total: float
    functions: list[FunctionTime]
    files: list[tuple[str, float, float]]


def _where(filename: str, root: str) -> str:
    if filename == "~":
        return "(C builtins)"
    if filename.startswith(root):
        return os.path.relpath(filename, root)
    parts = filename.split(os.sep)
    for marker in ("site-packages", "lib"):
        if marker in parts:
            i = len(parts) - 1 - parts[::-1].index(marker)
            return os.sep.join(parts[i + 1 :])
    return filename


def summarize_profile(path: str, root: str, top: int = 25) -> ProfileSummary:
    """The ``top`` functions by own time, and own time per file, of the
    stats in ``path``; file names are shown relative to ``root``."""
    stats = pstats.Stats(path)
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values()) or 1e-12
    funcs: list[FunctionTime] = []
    per_file: dict[str, float] = {}
    for (filename, line, name), (_cc, nc, tt, ct, _callers) in raw.items():
        where = _where(filename, root)
        label = name if filename == "~" else f"{where}:{line}({name})"
        funcs.append(FunctionTime(label, nc, tt, ct, tt / total))
        per_file[where] = per_file.get(where, 0.0) + tt
    funcs.sort(key=lambda f: f.tottime, reverse=True)
    files = sorted(((f, t, t / total) for f, t in per_file.items()), key=lambda x: -x[1])
    return ProfileSummary(total, funcs[:top], files)


def format_profile(summary: ProfileSummary, top_files: int = 12) -> str:
    """The two tables of :func:`summarize_profile` as text."""
    out = [f"total own time: {summary.total:.3f} s", ""]
    out.append(f"{'share':>6}  {'own s':>7}  {'cum s':>7}  {'calls':>9}  function")
    for f in summary.functions:
        out.append(
            f"{f.share * 100:5.1f}%  {f.tottime:7.3f}  {f.cumtime:7.3f}  {f.calls:>9,}  {f.name}"
        )
    out += ["", f"{'share':>6}  {'own s':>7}  file"]
    for name, t, share in summary.files[:top_files]:
        out.append(f"{share * 100:5.1f}%  {t:7.3f}  {name}")
    return "\n".join(out)
