#!/usr/bin/env bash
# The documentation site: makes .venv (if needed), installs the docs
# dependencies into it (Sphinx, furo, myst-parser: pip install -e '.[docs]'),
# then builds docs/ into docs/_build/html with warnings as errors.
# Usage: bash scripts/docs.sh [extra sphinx-build args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c 'import sphinx, furo, myst_parser, yieldloop' >/dev/null 2>&1; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[docs]'
fi
# -E: read every page again, so that a warning is reported on every build,
# not only on the build after its page changed.
.venv/bin/python -m sphinx -E -W --keep-going -b html "$@" docs docs/_build/html
echo "docs: open docs/_build/html/index.html"
