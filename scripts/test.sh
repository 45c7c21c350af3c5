#!/usr/bin/env bash
# Install everything the tests need (Python env, embedded model, vLLM for CPUs, Neovim 0.12/0.11,
# code-server, Chromium, the extension's npm packages), then run the linters, type checkers and all tests.
#
#   scripts/test.sh                # everything, as CI runs it
#   scripts/test.sh tests/unit     # arguments go to pytest
#   scripts/test.sh --fast [ARGS]  # the inner loop: Python lint/types and the tests that need
#                                  # neither the model nor an editor (about a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n== %s\n' "$*"; }
FAST=0
if [[ "${1:-}" == "--fast" ]]; then
    FAST=1
    shift
fi

step "Python environment and embedded model"
scripts/setup.sh --dev
if [[ $FAST == 1 ]]; then
    step "ruff (lint and format), mypy and the size limits over server/"
    .venv/bin/ruff check server tests
    .venv/bin/ruff format --check server tests
    .venv/bin/mypy
    .venv/bin/python scripts/check_sizes.py
    step "pytest (no model, no editor)"
    exec .venv/bin/python -m pytest -q -p no:cacheprovider -m "not model and not editor" "$@"
fi
step "vLLM for CPUs (the real inference engine of tests/engine/)"
nice -n 10 scripts/install-vllm.sh || echo "scripts/install-vllm.sh failed: the tests in tests/engine/ will be skipped"
if [[ ( $# -eq 0 || "$*" == *tests/engine* ) && -x .tools/vllm/bin/python && -z "${TACTFUL_TEST_ENGINE_URL:-}" ]]; then
    # vLLM takes minutes to compile its kernels: it starts now, while the editors install and
    # the linters run, and tests/engine/conftest.py adopts it (and stops it after its tests).
    step "starting the test engine (vLLM) in the background"
    export TACTFUL_TEST_ENGINE_STATE
    TACTFUL_TEST_ENGINE_STATE="$(mktemp -t tactful-engine.XXXXXX)"
    trap '.venv/bin/python tests/engine/launch.py --stop "$TACTFUL_TEST_ENGINE_STATE"; rm -f "$TACTFUL_TEST_ENGINE_STATE"' EXIT
    .venv/bin/python tests/engine/launch.py "$TACTFUL_TEST_ENGINE_STATE" || true
fi
step "Neovim 0.12 (Debian sid) for the editor tests"
scripts/install-neovim.sh
step "code-server, Chromium and the VS Code extension's packages"
scripts/install-vscode-e2e.sh

step "ruff (lint and format), mypy and the size limits over server/"
.venv/bin/ruff check server tests
.venv/bin/ruff format --check server tests
.venv/bin/mypy
.venv/bin/python scripts/check_sizes.py
step "tsc and eslint over vscode-client/"
npm --prefix vscode-client run --silent compile
npm --prefix vscode-client run --silent lint
step "the extension's unit tests (node:test)"
npm --prefix vscode-client test --silent

step "pytest"
# -rs: the reason of every skipped test (tests/engine/ without an engine) is printed.
.venv/bin/python -m pytest -q -rs -p no:cacheprovider "$@"
