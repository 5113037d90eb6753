"""Sphinx configuration of the yieldloop documentation.

Build it with ``bash scripts/docs.sh`` (warnings are errors); the pages are
Markdown (MyST), the reference is generated from the docstrings.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yieldloop  # noqa: E402

project = "yieldloop"
author = "yieldloop"
copyright = "yieldloop"
release = yieldloop.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Markdown: links such as [text](page.md#a-heading) reach headings down to ###.
myst_heading_anchors = 3

# The reference: signatures as written, type hints in the signature,
# members in the order of the source.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True}
add_module_names = False
python_display_short_literal_types = True

html_theme = "furo"
html_title = f"yieldloop {release}"
html_static_path: list[str] = []
