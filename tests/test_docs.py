"""The documentation's code runs, so the docs cannot drift from the code.

The pages are the Markdown files under ``docs/`` (``docs/_build`` aside).
Each fenced block of a page is one of:

* ``python``: executed. The blocks of a page run in order, in one namespace;
  the pages of ``docs/tutorial/`` form one lesson and share one namespace,
  in the order of their file names.
* ``text``: the expected standard output of the nearest ``python`` block
  before it (with only prose in between). ``...`` in it matches anything;
  trailing spaces do not count.
* ``console``: a shell session, shown and not run (keep these few).
* ``toml``: must parse.
* ``{code-block}`` with a ``:caption:`` naming a file of the repository: a
  quotation of that file. Each of its lines, stripped, must be a line of
  the file, in the same order (a line ``...`` marks a cut).
* ``{eval-rst}`` (the reference's autodoc directives), ``{toctree}``,
  ``{include}`` and the other directives of the site: not code.

Any other fence is an error, so no example escapes the tests. A ``python``
block right after the comment ``<!-- test: pytest -->`` is a test module:
besides running, it is saved to a file and run by pytest, which must pass.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import pathlib
import re
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.relative_to(DOCS).parts)
TUTORIAL = [p for p in PAGES if p.parent == DOCS / "tutorial"]
#: What runs as one unit: a page, or the whole tutorial.
UNITS = [[p] for p in PAGES if p not in TUTORIAL] + ([TUTORIAL] if TUTORIAL else [])

#: Directives whose body is not code.
NOT_CODE = {
    "{toctree}",
    "{include}",
    "{eval-rst}",
    "{note}",
    "{tip}",
    "{warning}",
    "{seealso}",
    "{image}",
    "{figure}",
    "{contents}",
}
PYTEST_MARK = "<!-- test: pytest -->"

_OPEN = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass
class Block:
    page: pathlib.Path
    line: int  # of the opening fence, 1-based
    info: str  # what follows the fence: "python", "{code-block} python", ...
    body: str
    before: str  # the prose between the previous block and this one

    @property
    def kind(self) -> str:
        return self.info.split()[0] if self.info else ""

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(DOCS)}:{self.line}"


def parse(page: pathlib.Path) -> list[Block]:
    """The fenced blocks of a Markdown page, in order."""
    lines = page.read_text().splitlines()
    blocks: list[Block] = []
    i = prose = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if m is None:
            i += 1
            continue
        fence = m["fence"]
        close = re.compile(rf"^{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        assert j < len(lines), f"{page.name}:{i + 1}: unclosed code fence"
        body = "\n".join(lines[i + 1 : j])
        blocks.append(
            Block(
                page,
                i + 1,
                m["info"].strip(),
                body + "\n" if body else "",
                "\n".join(lines[prose:i]),
            )
        )
        i = prose = j + 1
    return blocks


def directive_options(body: str) -> tuple[dict[str, str], str]:
    """Split a MyST directive's ``:name: value`` option lines from its content."""
    options: dict[str, str] = {}
    lines = body.splitlines(keepends=True)
    n = 0
    for line in lines:
        m = re.match(r"^:([\w-]+):\s*(.*)$", line.rstrip("\n"))
        if m is None:
            break
        options[m[1]] = m[2].strip()
        n += 1
    return options, "".join(lines[n:])


def output_matches(expected: str, actual: str) -> bool:
    """Compare outputs line by line (trailing spaces ignored); ``...`` in
    ``expected`` matches any text, also across lines."""
    expected = "\n".join(line.rstrip() for line in expected.strip("\n").splitlines())
    actual = "\n".join(line.rstrip() for line in actual.strip("\n").splitlines())
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual, re.S) is not None


ALL_BLOCKS = [block for page in PAGES for block in parse(page)]


def test_there_are_pages():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    for expected in ("index.md", "howto-find-a-race.md", "benchmarks.md", "kernel.md"):
        assert expected in names
    assert len(TUTORIAL) >= 3


def test_every_block_is_of_a_known_kind():
    known = {"python", "text", "console", "toml", "{code-block}"} | NOT_CODE
    unknown = [f"{b.where}: ```{b.info}" for b in ALL_BLOCKS if b.kind not in known]
    assert not unknown, "code blocks the tests cannot check:\n" + "\n".join(unknown)
    # Code hidden inside a directive (a note, say) would not be run.
    hidden = [b.where for b in ALL_BLOCKS if b.kind in NOT_CODE and "```python" in b.body]
    assert not hidden, f"python blocks nested in directives: {hidden}"


def test_every_text_block_is_an_output():
    blocks_by_page: dict[pathlib.Path, list[Block]] = {}
    for b in ALL_BLOCKS:
        blocks_by_page.setdefault(b.page, []).append(b)
    orphans = []
    for blocks in blocks_by_page.values():
        for prev, b in zip([None, *blocks], blocks):
            if b.kind == "text" and (prev is None or prev.kind != "python"):
                orphans.append(b.where)
    assert not orphans, f"text blocks that follow no python block: {orphans}"


@pytest.mark.parametrize(
    "pages", UNITS, ids=lambda ps: "tutorial" if len(ps) > 1 else ps[0].relative_to(DOCS).as_posix()
)
def test_code_blocks_run(pages, tmp_path):
    namespace: dict[str, object] = {"__name__": f"docs_{pages[0].stem.replace('-', '_')}"}
    ran = 0
    for page in pages:
        blocks = parse(page)
        for n, block in enumerate(blocks):
            if block.kind != "python":
                continue
            code = compile(block.body, f"docs/{block.where}", "exec")
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(code, namespace)
            ran += 1
            following = blocks[n + 1] if n + 1 < len(blocks) else None
            if following is not None and following.kind == "text":
                assert output_matches(following.body, out.getvalue()), (
                    f"{block.where}: the output differs from the page's "
                    f"({following.where}).\n--- on the page:\n{following.body}"
                    f"--- printed:\n{out.getvalue()}"
                )
            if block.before.rstrip().endswith(PYTEST_MARK):
                run_as_pytest_module(block, tmp_path)
    if pages[0].name.startswith("howto-") or len(pages) > 1:
        assert ran, f"{pages[0].name}: a how-to (or the tutorial) without python code blocks"


def run_as_pytest_module(block: Block, tmp_path: pathlib.Path) -> None:
    path = tmp_path / f"test_docs_{block.page.stem.replace('-', '_')}_{block.line}.py"
    path.write_text(block.body)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, f"{block.where}: pytest failed:\n{proc.stdout}\n{proc.stderr}"


def test_toml_blocks_parse():
    for block in ALL_BLOCKS:
        if block.kind == "toml":
            tomllib.loads(block.body)


def quotations() -> list[Block]:
    return [b for b in ALL_BLOCKS if b.kind == "{code-block}"]


def test_code_blocks_are_quotations():
    for block in quotations():
        options, _ = directive_options(block.body)
        caption = options.get("caption", "")
        assert caption and (ROOT / caption).is_file(), (
            f"{block.where}: a code-block quotes a file: its :caption: must be "
            f"that file's path in the repository, got {caption!r}"
        )


@pytest.mark.parametrize("block", quotations(), ids=lambda b: b.where)
def test_quotations_are_verbatim(block):
    options, content = directive_options(block.body)
    source = [line.strip() for line in (ROOT / options["caption"]).read_text().splitlines()]
    position = 0
    for line in textwrap.dedent(content).splitlines():
        wanted = line.strip()
        if not wanted or wanted == "...":
            continue
        try:
            position = source.index(wanted, position) + 1
        except ValueError:
            pytest.fail(
                f"{block.where}: this line is not in {options['caption']} "
                f"(after line {position}), or no longer in this order:\n    {wanted}"
            )


def test_the_kernel_page_quotes_the_kernel():
    quoted = {
        directive_options(b.body)[0]["caption"] for b in quotations() if b.page.name == "kernel.md"
    }
    assert "yieldloop/_kernel/_kernel.py" in quoted


@pytest.mark.parametrize(
    "module", ["yieldloop", "yieldloop.testing", "yieldloop.lowlevel", "yieldloop.socket"]
)
def test_the_reference_documents_every_public_name(module):
    documented = set()
    for block in ALL_BLOCKS:
        if block.kind == "{eval-rst}":
            documented.update(re.findall(r"^\s*\.\. auto\w+:: (\S+)", block.body, re.M))
    names = importlib.import_module(module).__all__
    missing = [name for name in names if f"{module}.{name}" not in documented]
    assert not missing, f"the reference does not document {module}: {missing}"


def test_output_matching():
    assert output_matches("a\nb  \n", "a\nb\n")
    assert output_matches("port ...\nend", "port 4711\nend\n")
    assert output_matches("start\n...\nend", "start\nx\ny\nend")
    assert not output_matches("a\nb", "a\nc")
