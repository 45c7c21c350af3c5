#!/usr/bin/env bash
# Regenerate the documentation's pictures in docs/images/ (run it when the editors' UI changes):
#
#   vscode-ghost-text.png   VS Code (code-server in headless Chromium): ghost text from the
#                           embedded model, the tactful status bar item
#   flag-quick-fix.png      VS Code: a flagged line in the Problems panel (the message shows the
#                           model's line) and the quick fix menu on it
#   neovim-ghost-text.png   Neovim 0.12 in tmux (256 colours): ghost text in TactfulGhostText,
#                           the status line with tactful's state; the terminal's colours drawn
#                           into a PNG by headless Chromium
#
# The pictures are taken by the editor end-to-end tests themselves (TACTFUL_SCREENSHOTS=DIR):
# tests/editors/test_vscode.py (vscode-client/e2e/scenario.js) and the terminal test of
# tests/editors/test_neovim.py, so they show what those tests check. Needs what the tests need
# (scripts/install-vscode-e2e.sh and scripts/install-neovim.sh, run by the tests when missing)
# and the converted model. Takes a few minutes (the whole VS Code scenario runs).
# Then shrinks the PNGs with pngquant (installed through apt when missing).
#
# Usage: scripts/screenshots.sh [OUT_DIR]    (default docs/images)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=$(realpath -m "${1:-docs/images}")
PY=${PYTHON:-$ROOT/.venv/bin/python}
mkdir -p "$OUT"

if ! command -v pngquant >/dev/null; then
    command -v apt-get >/dev/null || { echo "screenshots.sh: needs pngquant" >&2; exit 1; }
    SUDO=()
    [[ $(id -u) -ne 0 ]] && SUDO=(sudo)
    "${SUDO[@]}" apt-get install -y -qq pngquant >/dev/null 2>&1 || {
        "${SUDO[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq pngquant >/dev/null
    }
fi

PICTURES=(vscode-ghost-text.png flag-quick-fix.png neovim-ghost-text.png)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The tests write into WORK; the pictures go to OUT only when both tests passed (a failed run's
# pictures may show the failure), so OUT keeps the last good set otherwise.
status=0
TACTFUL_SCREENSHOTS=$WORK "$PY" -m pytest -q -p no:cacheprovider \
    "tests/editors/test_neovim.py::test_ghost_text_on_screen_and_tab_in_terminal_012[screen-256color]" \
    "tests/editors/test_vscode.py::test_vscode_end_to_end" || status=$?
if ((status != 0)); then
    echo "screenshots.sh: the editor tests failed (exit $status); $OUT left as it was" >&2
    exit "$status"
fi
for name in "${PICTURES[@]}"; do
    [[ -s "$WORK/$name" ]] || { echo "screenshots.sh: $name was not taken" >&2; exit 1; }
done
for name in "${PICTURES[@]}"; do
    # pngquant exits 98/99 when the result would be larger or worse: keep the original then.
    pngquant --force --skip-if-larger --quality 70-95 --strip --output "$WORK/$name.q" "$WORK/$name" \
        && mv "$WORK/$name.q" "$WORK/$name" || true
    cp "$WORK/$name" "$OUT/$name"
    echo "$OUT/$name: $(($(stat -c %s "$OUT/$name") / 1024)) KB"
done
