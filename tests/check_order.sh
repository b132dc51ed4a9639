#!/usr/bin/env bash
# Runs the test suite in two orders other than the README's command, so that
# a test whose outcome depends on what earlier tests left in its process shows
# up (docs/contributing.md "Test order"):
#   1. the test files in reverse order, two worker processes;
#   2. every test file in one worker process, one after another.
# Extra arguments go to both pytest runs; `reverse` or `one` as the first
# argument runs only that pass.  Both passes use both cores of a small host.
set -euo pipefail
cd "$(dirname "$0")/.."

only=""
if [[ $# -gt 0 && ( "$1" == reverse || "$1" == one ) ]]; then
    only="$1"
    shift
fi
mapfile -t files < <(ls tests/test_*.py | sort -r)

if [[ -z "$only" || "$only" == reverse ]]; then
    echo "== test files in reverse order, 2 workers"
    python -m pytest "${files[@]}" -q -x -n 2 --dist loadfile -p no:randomly "$@"
fi
if [[ -z "$only" || "$only" == one ]]; then
    echo "== all test files in one worker"
    python -m pytest tests -q -x -n 1 -p no:randomly "$@"
fi
