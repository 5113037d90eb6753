#!/usr/bin/env bash
# The whole test suite: makes .venv (if needed), installs the test
# dependencies into it, then runs ruff, mypy --strict, the docs build
# (scripts/docs.sh) and pytest (warnings are errors).
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
echo "== ruff"
.venv/bin/ruff check yieldloop tests benchmarks examples scripts
echo "== mypy --strict"
.venv/bin/mypy
echo "== docs (sphinx, warnings are errors)"
bash scripts/docs.sh -q
# Headless Chromium renders the HTML timeline in tests/test_timeline.py
# (that test is skipped without it). Install it when missing and possible.
if ! command -v chromium >/dev/null 2>&1; then
    echo "== chromium (for the HTML timeline test)"
    (command -v apt-get >/dev/null 2>&1 \
        && { apt-get install -y -qq chromium >/dev/null 2>&1 \
             || { apt-get update -qq >/dev/null 2>&1 \
                  && apt-get install -y -qq chromium >/dev/null 2>&1; }; }) \
        || echo "chromium is not installed: the HTML screenshot test will be skipped"
fi
echo "== pytest"
.venv/bin/python -m pytest "$@"
