#!/usr/bin/env bash
# Set up tactful (venv, CPU torch, embedded model) and run a real LSP session over a sample file.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/tactful demo "$@"
