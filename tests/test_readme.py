"""The README's example is a real file, copied verbatim, and it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_embeds_the_example_verbatim() -> None:
    example = (ROOT / "examples" / "readme_example.py").read_text()
    readme = (ROOT / "README.md").read_text()
    assert f"```python\n{example}```" in readme


def test_readme_example_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "readme_example.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip(), "the example prints its results"


def test_readme_lists_every_public_name() -> None:
    import yieldloop

    readme = (ROOT / "README.md").read_text()
    names = [name for name in yieldloop.__all__ if name != "__version__"]
    missing = [name for name in names if f"`{name}" not in readme]
    assert not missing, f"README's API table lacks {missing}"
