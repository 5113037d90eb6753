"""``python -m yieldloop``: the command line and the ``demo`` command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(60)

SECTIONS = ("blocking", "generators", "async/await")


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ)
    environ.pop("NO_COLOR", None)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "yieldloop", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=50,
    )


def split_sections(out: str) -> dict[str, str]:
    """Map each section's title word to its text (heading to next heading)."""
    parts = re.split(r"^\S{2} \d/\d  ", out, flags=re.M)
    sections = {}
    for part in parts[1:]:
        title = part.split(":", 1)[0]
        sections[title] = part
    return sections


def timeline_rows(section: str) -> list[str]:
    return re.findall(r"^  worker (\d) [│|]", section, flags=re.M)


def elapsed(section: str) -> float:
    m = re.search(r"elapsed: (\d+\.\d+) s", section)
    assert m, section
    return float(m.group(1))


@pytest.fixture(scope="module")
def demo_output() -> str:
    proc = run_cli("demo", "--scale", "0.02")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def test_demo_has_three_sections(demo_output: str) -> None:
    sections = split_sections(demo_output)
    assert list(sections) == list(SECTIONS)
    for text in sections.values():
        assert "downloading page" in text
        assert "connecting to db" in text
        assert "writing page to db" in text


def test_demo_worker_lines_have_id_and_time(demo_output: str) -> None:
    for title, text in split_sections(demo_output).items():
        lines = re.findall(r"^\s+\d+\.\d+ s  worker (\d)  (\w.*)$", text, flags=re.M)
        assert len(lines) == 12, title  # 3 workers x (3 steps + done)
        assert sorted({w for w, _ in lines}) == ["1", "2", "3"]


def test_demo_draws_a_timeline_per_section(demo_output: str) -> None:
    for title, text in split_sections(demo_output).items():
        assert timeline_rows(text) == ["1", "2", "3"], title
        assert "seconds 0" in text
        assert "downloading page   " in text  # the legend


def test_demo_blocking_rows_form_a_staircase(demo_output: str) -> None:
    text = split_sections(demo_output)["blocking"]
    rows = re.findall(r"^  worker \d [│|]( *)\S", text, flags=re.M)
    indents = [len(r) for r in rows]
    assert indents[0] == 0 and indents[0] < indents[1] < indents[2]
    text = split_sections(demo_output)["generators"]
    rows = re.findall(r"^  worker \d [│|]( *)\S", text, flags=re.M)
    assert [len(r) for r in rows] == [0, 0, 0]


def test_demo_concurrent_versions_are_faster(demo_output: str) -> None:
    sections = split_sections(demo_output)
    blocking = elapsed(sections["blocking"])
    assert blocking >= 7.5 * 0.02 * 0.99  # the sleeps alone take that long
    for title in ("generators", "async/await"):
        # About a third of the blocking time; allow a lot for a slow machine.
        assert elapsed(sections[title]) < blocking * 0.8, title
    assert "summary" in demo_output


def test_demo_plain_output_when_not_a_tty(demo_output: str) -> None:
    assert "\x1b" not in demo_output
    for line in demo_output.splitlines():
        assert len(line) <= 80, line


def test_demo_colour_can_be_forced() -> None:
    proc = run_cli("demo", "--scale", "0.01", "--skip-blocking", "--color", "always")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" in proc.stdout


def test_demo_skip_blocking() -> None:
    proc = run_cli("demo", "--scale", "0.01", "--skip-blocking")
    assert proc.returncode == 0, proc.stderr
    assert list(split_sections(proc.stdout)) == ["generators", "async/await"]


def test_demo_rejects_a_bad_scale() -> None:
    for bad in ("0", "-1", "nan", "fast"):
        proc = run_cli("demo", "--scale", bad)
        assert proc.returncode == 2, bad
        assert "--scale" in proc.stderr


def test_help() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    assert "demo" in proc.stdout
    proc = run_cli("demo", "--help")
    assert proc.returncode == 0
    assert "--scale" in proc.stdout and "--skip-blocking" in proc.stdout


def test_no_command_prints_help() -> None:
    proc = run_cli()
    assert proc.returncode == 0
    assert "usage:" in proc.stdout and "demo" in proc.stdout


def test_unknown_command_fails() -> None:
    proc = run_cli("no-such-command")
    assert proc.returncode != 0
    assert "invalid choice" in proc.stderr
    assert "no-such-command" in proc.stderr
