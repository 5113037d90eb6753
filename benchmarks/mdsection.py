"""Writing a generated section into a markdown file without touching the rest.

Several tools write into ``docs/benchmarks.md``: ``python -m benchmarks``
(the suite), ``python -m benchmarks.waiters`` and ``python -m
benchmarks.memory``. Each owns one section, kept between two HTML comments
(invisible when the markdown is rendered)::

    <!-- python -m benchmarks: begin (generated; edits inside are overwritten) -->
    ...
    <!-- python -m benchmarks: end -->

:func:`update_section` replaces what is between a tool's markers and leaves
everything else in the file as it was; a file without the markers gets the
section appended, a missing file is created.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["update_section"]


def _begin(key: str) -> str:
    return f"<!-- {key}: begin"


def _end(key: str) -> str:
    return f"<!-- {key}: end -->"


def update_section(path: str | Path, key: str, text: str) -> str:
    """Put ``text`` between ``key``'s markers in the markdown file ``path``.

    Returns what was done: ``"created"`` (no such file), ``"replaced"`` (the
    markers were there) or ``"appended"`` (a file without them). Raises
    :class:`ValueError` if the markers are there but broken (an end before
    the begin, a begin without an end, or a pair twice), leaving the file
    alone rather than guessing what to overwrite.
    """
    if not key or "-->" in key or "\n" in key:
        raise ValueError(f"bad section key {key!r}")
    path = Path(path)
    block = (
        f"{_begin(key)} (generated; edits inside are overwritten) -->\n"
        f"{text.rstrip()}\n"
        f"{_end(key)}\n"
    )
    try:
        old = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        path.write_text(block, encoding="utf-8")
        return "created"
    begin, end = _begin(key), _end(key)
    n_begin, n_end = old.count(begin), old.count(end)
    if n_begin == 0 and n_end == 0:
        if not old or old.endswith("\n\n"):
            sep = ""
        else:
            sep = "\n" if old.endswith("\n") else "\n\n"
        path.write_text(old + sep + block, encoding="utf-8")
        return "appended"
    if n_begin != 1 or n_end != 1:
        raise ValueError(
            f"{path}: expected one pair of {begin!r} ... {end!r} markers, "
            f"found {n_begin} begin and {n_end} end; fix the file by hand"
        )
    start = old.index(begin)
    stop = old.index(end)
    if stop < start:
        raise ValueError(f"{path}: the end marker of {key!r} comes before its begin marker")
    stop += len(end)
    if old[stop : stop + 1] == "\n":
        stop += 1
    path.write_text(old[:start] + block + old[stop:], encoding="utf-8")
    return "replaced"
