"""Every ``python`` code block of the how-to pages runs (in order, one
namespace per page), so the docs cannot drift from the code."""

from __future__ import annotations

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("howto-*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_there_are_pages():
    assert PAGES


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_code_blocks_run(page, capsys):
    blocks = BLOCK.findall(page.read_text())
    assert blocks, f"{page.name} has no python code blocks"
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(blocks):
        code = compile(block, f"{page.name} (block {i + 1})", "exec")
        exec(code, namespace)
    out = capsys.readouterr().out
    if page.name == "howto-find-a-race.md":
        assert "AssertionError under schedule yl1:" in out
        assert "ExploreResult(runs=1000" in out
