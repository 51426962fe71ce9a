#!/usr/bin/env bash
# Runs every test: unit tests of each package, the runtime conformance suites (real runsc and runc), then the
# end-to-end suite against a real daemon, and finally the leak check that fails if anything was left behind.
# Test files run one at a time (--test-concurrency=1): they start real sandboxes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s globstar nullglob
files=(packages/*/dist/test/**/*.test.js e2e/dist/**/*.test.js)
if ((${#files[@]} == 0)); then echo "no compiled tests found: run npm run build first" >&2; exit 1; fi
status=0
node --test --test-concurrency=1 --test-reporter=spec "$@" "${files[@]}" || status=$?
bash scripts/leak-check.sh || status=1
exit $status
