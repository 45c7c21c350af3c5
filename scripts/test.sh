#!/usr/bin/env bash
# Install everything the tests need (Python env, embedded model, Neovim 0.12/0.11, code-server,
# Chromium, the extension's npm packages), then run the linters, type checkers and all tests.
#
#   scripts/test.sh                # everything, as CI runs it
#   scripts/test.sh tests/unit     # arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n== %s\n' "$*"; }

step "Python environment and embedded model"
scripts/setup.sh --dev
step "Neovim 0.12 (Debian sid) for the editor tests"
scripts/install-neovim.sh
step "code-server, Chromium and the VS Code extension's packages"
scripts/install-vscode-e2e.sh

step "ruff (lint and format) and mypy over server/"
.venv/bin/ruff check server tests
.venv/bin/ruff format --check server tests
.venv/bin/mypy
step "tsc and eslint over vscode-client/"
npm --prefix vscode-client run --silent compile
npm --prefix vscode-client run --silent lint

step "pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
